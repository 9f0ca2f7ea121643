//! Roles, bindings, SDK keys and the audit log as state transitions.

use std::collections::BTreeSet;

use pulseplane_core::access::{Environments, Permission, SdkKeyRequest};
use pulseplane_core::audit::AuditContext;
use pulseplane_core::command::{Command, CommandEnvelope, CommandError};
use pulseplane_core::diff::ChangeOp;
use pulseplane_core::state::SettingsChange;
use pulseplane_core::{Flag, Outcome, Segment, State};
use serde_json::json;

const T0: i64 = 1_795_000_000_000;

struct Harness {
    state: State,
    seq: u64,
    at_ms: i64,
}

impl Harness {
    fn new() -> Harness {
        let mut h = Harness {
            state: State::new(),
            seq: 0,
            at_ms: T0,
        };
        h.ok(Command::CreateEnvironment {
            key: "prod".into(),
            name: "Production".into(),
        });
        h
    }

    fn envelope(&mut self, command: Command) -> CommandEnvelope {
        self.seq += 1;
        self.at_ms += 1000;
        CommandEnvelope {
            idempotency_key: format!("k{}", self.seq),
            actor: "alice".into(),
            at_ms: self.at_ms,
            command,
            audit: Some(AuditContext {
                permission: "flag.write".into(),
                request_id: format!("req-{}", self.seq),
            }),
        }
    }

    fn run(&mut self, command: Command) -> Result<Outcome, CommandError> {
        let env = self.envelope(command);
        self.state.apply(&env)
    }

    #[track_caller]
    fn ok(&mut self, command: Command) -> Outcome {
        self.run(command).unwrap_or_else(|e| panic!("{e}"))
    }

    fn put_role(&mut self, name: &str, perms: &[Permission], envs: Environments) -> Outcome {
        self.ok(Command::PutRole {
            name: name.into(),
            permissions: perms.iter().copied().collect(),
            environments: envs,
        })
    }
}

fn only(envs: &[&str]) -> Environments {
    Environments::Only(envs.iter().map(|e| e.to_string()).collect())
}

fn roles(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn roles_and_bindings_grant_through_subjects_and_groups() {
    let mut h = Harness::new();
    assert!(
        h.put_role("viewer", &[Permission::FlagRead], only(&["prod"]))
            .created
    );
    h.put_role("admin", &[Permission::ClusterManage], Environments::All);
    h.ok(Command::PutBinding {
        subject: "bob".into(),
        roles: roles(&["viewer"]),
    });
    h.ok(Command::PutBinding {
        subject: "group:ops".into(),
        roles: roles(&["admin"]),
    });
    let access = &h.state.access;
    let of = |sub: &str, groups: &[&str]| -> Vec<String> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        access
            .roles_of(sub, &groups)
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(of("bob", &[]), ["viewer"]);
    assert_eq!(of("bob", &["ops"]), ["admin", "viewer"]);
    assert!(of("carol", &["dev"]).is_empty());

    // A binding must name existing roles; a bound role cannot be deleted.
    match h.run(Command::PutBinding {
        subject: "bob".into(),
        roles: roles(&["nope"]),
    }) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.issues[0].path, "/roles/0"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.run(Command::DeleteRole {
            name: "viewer".into()
        }),
        Err(CommandError::InUse { .. })
    ));
    h.ok(Command::DeleteBinding {
        subject: "bob".into(),
    });
    h.ok(Command::DeleteRole {
        name: "viewer".into(),
    });
    assert!(matches!(
        h.run(Command::DeleteRole {
            name: "viewer".into()
        }),
        Err(CommandError::RoleNotFound { .. })
    ));
    assert!(matches!(
        h.run(Command::DeleteBinding {
            subject: "bob".into()
        }),
        Err(CommandError::BindingNotFound { .. })
    ));
    // Bad names are refused with the field.
    match h.run(Command::PutRole {
        name: "has space".into(),
        permissions: BTreeSet::new(),
        environments: only(&["*"]),
    }) {
        Err(CommandError::Invalid(e)) => {
            let paths: Vec<&str> = e.issues.iter().map(|i| i.path.as_str()).collect();
            assert_eq!(paths, ["/name", "/environments/0"]);
        }
        other => panic!("{other:?}"),
    }
}

fn key_request(env: &str, id: &str) -> SdkKeyRequest {
    SdkKeyRequest {
        env: env.into(),
        id: id.into(),
        name: "web".into(),
        hash: "ab".repeat(32),
    }
}

#[test]
fn sdk_keys_are_created_revoked_and_go_with_their_environment() {
    let mut h = Harness::new();
    h.ok(Command::CreateSdkKey(key_request(
        "prod",
        "0123456789abcdef",
    )));
    let key = &h.state.access.sdk_keys["0123456789abcdef"];
    assert_eq!(key.env, "prod");
    assert!(key.revoked_at_ms.is_none());
    // Unknown environment, bad id, duplicate id.
    assert!(matches!(
        h.run(Command::CreateSdkKey(key_request(
            "dev",
            "1123456789abcdef"
        ))),
        Err(CommandError::EnvironmentNotFound { .. })
    ));
    assert!(matches!(
        h.run(Command::CreateSdkKey(key_request("prod", "XYZ"))),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(
        h.run(Command::CreateSdkKey(key_request(
            "prod",
            "0123456789abcdef"
        ))),
        Err(CommandError::Invalid(_))
    ));
    // Revoked only in its own environment; a second revocation is a no-op.
    assert!(matches!(
        h.run(Command::RevokeSdkKey {
            env: "dev".into(),
            id: "0123456789abcdef".into()
        }),
        Err(CommandError::SdkKeyNotFound { .. })
    ));
    h.ok(Command::RevokeSdkKey {
        env: "prod".into(),
        id: "0123456789abcdef".into(),
    });
    let at = h.state.access.sdk_keys["0123456789abcdef"].revoked_at_ms;
    assert!(at.is_some());
    h.ok(Command::RevokeSdkKey {
        env: "prod".into(),
        id: "0123456789abcdef".into(),
    });
    assert_eq!(
        h.state.access.sdk_keys["0123456789abcdef"].revoked_at_ms,
        at
    );
    // Deleting the environment deletes its keys.
    h.ok(Command::DeleteEnvironment {
        key: "prod".into(),
        force: true,
    });
    assert!(h.state.access.sdk_keys.is_empty());
}

#[test]
fn an_upsert_that_changes_nothing_is_audited_with_equal_digests() {
    let mut h = Harness::new();
    let flag: Flag = serde_json::from_value(json!({
        "key": "checkout", "kind": "boolean", "description": "one",
        "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["NL"]}],
                   "serve": {"variant": "on"}}]
    }))
    .unwrap();
    let put = |h: &mut Harness, flag: &Flag| {
        h.ok(Command::UpsertFlag {
            env: "prod".into(),
            flag: flag.clone(),
            expected_revision: None,
        })
    };
    let first = put(&mut h, &flag);
    // The same content again, with fields the control plane sets filled in
    // differently: nothing is written.
    let mut again = flag.clone();
    again.version = 7;
    let same = put(&mut h, &again);
    assert_eq!(same.revision, first.revision);
    assert!(!same.created);
    let mut changed = flag.clone();
    changed.rules[0].clauses[0].values.push(json!("DE"));
    let edit = put(&mut h, &changed);
    assert_ne!(edit.revision, first.revision);

    let entries: Vec<_> = h.state.audit.entries().collect();
    let (created, unchanged, edited) = (&entries[1], &entries[2], &entries[3]);
    assert_eq!(unchanged.outcome, "ok");
    assert_eq!(unchanged.before, created.after);
    assert_eq!(unchanged.after, unchanged.before);
    assert!(unchanged.diff.is_empty());
    assert_eq!(edited.before, unchanged.after);
    assert_ne!(edited.after, edited.before);
    let paths: Vec<&str> = edited.diff.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/rules/0/clauses/0/values/1"]);
}

#[test]
fn same_content_ignores_only_the_fields_the_control_plane_sets() {
    let flag: Flag = serde_json::from_value(json!({
        "key": "a", "kind": "boolean",
        "rules": [{"clauses": [{"attribute": "plan", "operator": "in", "values": ["pro"]}],
                   "serve": {"variant": "on"}}]
    }))
    .unwrap();
    let mut other = flag.clone();
    other.version = 3;
    other.killed = true;
    assert!(flag.same_content(&other));
    assert_eq!(flag.content() == other.content(), flag.same_content(&other));
    for edit in [
        (|f: &mut Flag| f.key = "b".into()) as fn(&mut Flag),
        |f| f.description = "d".into(),
        |f| f.enabled = false,
        |f| f.off_variant = Some("on".into()),
        |f| {
            f.prerequisites.push(pulseplane_core::model::Prerequisite {
                flag: "b".into(),
                variant: "on".into(),
            })
        },
        |f| f.rules.clear(),
        |f| f.default = Some(f.rules[0].serve.clone()),
    ] {
        let mut changed = flag.clone();
        edit(&mut changed);
        assert!(!flag.same_content(&changed), "{changed:?}");
        assert_eq!(
            flag.content() == changed.content(),
            flag.same_content(&changed)
        );
    }
    let segment: Segment = serde_json::from_value(json!({"key": "s", "included": ["u1"]})).unwrap();
    let mut other = segment.clone();
    other.version = 9;
    assert!(segment.same_content(&other));
    other.excluded.push("u2".into());
    assert!(!segment.same_content(&other));
}

#[test]
fn every_command_leaves_an_audit_entry_with_digests_and_a_diff() {
    let mut h = Harness::new();
    let flag: Flag = serde_json::from_value(json!({"key": "checkout", "kind": "boolean"})).unwrap();
    h.ok(Command::UpsertFlag {
        env: "prod".into(),
        flag: flag.clone(),
        expected_revision: None,
    });
    let mut changed = flag.clone();
    changed.description = "new checkout".into();
    h.ok(Command::UpsertFlag {
        env: "prod".into(),
        flag: changed,
        expected_revision: Some(1),
    });
    // A refusal is recorded with its code and no change.
    let refused = h.run(Command::UpsertFlag {
        env: "prod".into(),
        flag: flag.clone(),
        expected_revision: Some(1),
    });
    assert!(matches!(
        refused,
        Err(CommandError::RevisionConflict { .. })
    ));
    h.ok(Command::Publish {
        env: "prod".into(),
        message: String::new(),
        flags: None,
        segments: None,
    });
    let entries: Vec<_> = h.state.audit.entries().collect();
    assert_eq!(entries.len(), 5);
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    let created = &entries[1];
    assert_eq!(created.action, "upsert_flag");
    assert_eq!(created.target, "flag:checkout");
    assert_eq!(created.env, "prod");
    assert_eq!(created.subject, "alice");
    assert_eq!(created.permission, "flag.write");
    assert_eq!(created.request_id, "req-2");
    assert_eq!(created.outcome, "ok");
    assert!(created.before.is_none());
    assert!(created.after.is_some());

    let edited = &entries[2];
    assert_eq!(edited.before, created.after);
    assert_ne!(edited.after, edited.before);
    assert_eq!(edited.diff.len(), 1);
    assert_eq!(edited.diff[0].path, "/description");
    assert_eq!(edited.diff[0].op, ChangeOp::Add);
    assert_eq!(edited.diff[0].to, Some(json!("new checkout")));

    let refusal = &entries[3];
    assert_eq!(refusal.outcome, "revision_conflict");
    assert_eq!(refusal.before, refusal.after);
    assert!(refusal.diff.is_empty());

    let publish = &entries[4];
    assert_eq!(publish.target, "versions");
    assert_eq!(publish.env_version, Some(1));
    let paths: Vec<&str> = publish.diff.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/flags/checkout", "/version"]);

    // A retry is recorded as replayed and changes nothing else.
    let retry = {
        let mut e = h.envelope(Command::Kill {
            env: "prod".into(),
            flag: "checkout".into(),
            message: String::new(),
        });
        h.state.apply(&e).unwrap();
        e.at_ms += 10;
        e
    };
    assert!(h.state.apply(&retry).unwrap().replayed);
    let last: Vec<_> = h.state.audit.entries().rev().take(2).collect();
    assert_eq!(last[0].outcome, "replayed");
    assert_eq!(last[1].outcome, "ok");
    assert_eq!(last[1].diff[0].path, "/killed");
    // Paging by sequence number.
    assert_eq!(
        h.state.audit.after(5).map(|e| e.seq).collect::<Vec<_>>(),
        [6, 7]
    );
}

#[test]
fn long_diff_values_are_replaced_by_digests_and_long_diffs_cut() {
    let mut h = Harness::new();
    let mut flag: Flag = serde_json::from_value(json!({"key": "big", "kind": "boolean"})).unwrap();
    flag.description = "x".repeat(1000);
    h.ok(Command::UpsertFlag {
        env: "prod".into(),
        flag,
        expected_revision: None,
    });
    let entry = h.state.audit.entries().last().unwrap();
    // Created: one replace of null by the whole (long) flag.
    assert_eq!(entry.diff.len(), 1);
    let to = entry.diff[0].to.as_ref().unwrap().as_str().unwrap();
    assert!(to.starts_with("sha256:"), "{to}");

    for i in 0..30 {
        h.ok(Command::UpsertFlag {
            env: "prod".into(),
            flag: serde_json::from_value(json!({"key": format!("f{i}"), "kind": "boolean"}))
                .unwrap(),
            expected_revision: None,
        });
    }
    h.ok(Command::Publish {
        env: "prod".into(),
        message: String::new(),
        flags: None,
        segments: None,
    });
    let entry = h.state.audit.entries().last().unwrap();
    assert_eq!(entry.diff.len(), 20);
    assert!(entry.diff_truncated);
}

#[test]
fn audit_retention_by_count_and_age() {
    let mut h = Harness::new();
    h.ok(Command::Configure(SettingsChange {
        audit_retention_entries: Some(100),
        ..SettingsChange::default()
    }));
    for i in 0..150 {
        h.ok(Command::UpdateEnvironment {
            key: "prod".into(),
            name: format!("P{i}"),
        });
    }
    assert_eq!(h.state.audit.len(), 100);
    assert_eq!(h.state.audit.entries().next().unwrap().seq, 53);
    // An hour later with a one-hour age limit, all but the newest go.
    h.ok(Command::Configure(SettingsChange {
        audit_retention_ms: Some(3_600_000),
        ..SettingsChange::default()
    }));
    h.at_ms += 3_600_000;
    h.ok(Command::Record {
        action: "add_node".into(),
        target: "node:4".into(),
    });
    let left: Vec<_> = h.state.audit.entries().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].action, "add_node");
    assert_eq!(left[0].target, "node:4");
    // Out-of-range settings are refused, naming the field.
    match h.run(Command::Configure(SettingsChange {
        audit_retention_entries: Some(5),
        ..SettingsChange::default()
    })) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.issues[0].path, "/audit_retention_entries"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn old_states_and_commands_without_access_or_audit_still_load() {
    // A state serialized before roles and audit existed.
    let old = json!({"environments": {}, "idempotency": {"entries": {}, "order": []}});
    let state: State = serde_json::from_value(old).unwrap();
    assert!(state.access.roles.is_empty());
    assert!(state.audit.is_empty());
    let cmd = json!({
        "idempotency_key": "k", "actor": "a", "at_ms": 1,
        "command": {"type": "configure", "version_retention": 10}
    });
    let env: CommandEnvelope = serde_json::from_value(cmd).unwrap();
    assert!(env.audit.is_none());
    assert!(matches!(env.command, Command::Configure(ref c) if c.version_retention == Some(10)));
}

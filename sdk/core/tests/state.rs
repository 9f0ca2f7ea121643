//! State transitions: environments, drafts, publish, rollback, kill switches,
//! idempotency and deterministic replay.

use pulseplane_core::audit::AuditContext;
use pulseplane_core::command::{Command, CommandEnvelope, CommandError};
use pulseplane_core::state::{IDEMPOTENCY_WINDOW_MS, SettingsChange, VersionAction};
use pulseplane_core::{Context, Flag, Outcome, Reason, Segment, State};
use serde_json::{Value, json};

struct Harness {
    state: State,
    seq: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut h = Harness {
            state: State::new(),
            seq: 0,
        };
        h.ok(Command::CreateEnvironment {
            key: "prod".into(),
            name: "Production".into(),
        });
        h
    }

    fn envelope(&mut self, command: Command) -> CommandEnvelope {
        self.seq += 1;
        CommandEnvelope {
            idempotency_key: format!("k{}", self.seq),
            actor: "alice".into(),
            at_ms: 1_795_000_000_000 + self.seq as i64 * 1000,
            command,
            audit: Some(AuditContext {
                permission: "test.permission".into(),
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

    fn put(&mut self, flag: Value) -> Outcome {
        let flag: Flag = serde_json::from_value(flag).unwrap();
        self.ok(Command::UpsertFlag {
            env: "prod".into(),
            flag,
            expected_revision: None,
        })
    }

    fn publish(&mut self, flags: Option<Vec<&str>>) -> Result<Outcome, CommandError> {
        self.run(Command::Publish {
            env: "prod".into(),
            message: "ship it".into(),
            flags: flags.map(|f| f.into_iter().map(String::from).collect()),
            segments: None,
        })
    }

    fn eval(&self, flag: &str) -> (bool, Reason) {
        let snap = self.state.env("prod").unwrap().snapshot();
        let set = snap.compile().unwrap();
        let d = set.bool_details(flag, &Context::new("u1"), false);
        (d.value, d.reason)
    }
}

fn on_flag(key: &str) -> Value {
    json!({"key": key, "kind": "boolean", "default": {"variant": "on"}})
}

#[test]
fn environments() {
    let mut h = Harness::new();
    assert!(matches!(
        h.run(Command::CreateEnvironment {
            key: "prod".into(),
            name: "again".into()
        }),
        Err(CommandError::EnvironmentExists { .. })
    ));
    let err = h
        .run(Command::CreateEnvironment {
            key: "bad key".into(),
            name: "".into(),
        })
        .unwrap_err();
    let CommandError::Invalid(v) = &err else {
        panic!("{err}")
    };
    assert_eq!(v.issues.len(), 2);
    assert_eq!(err.code(), "invalid");
    h.ok(Command::UpdateEnvironment {
        key: "prod".into(),
        name: "Prod".into(),
    });
    assert_eq!(h.state.env("prod").unwrap().name, "Prod");
    h.put(on_flag("a"));
    let err = h
        .run(Command::DeleteEnvironment {
            key: "prod".into(),
            force: false,
        })
        .unwrap_err();
    assert!(
        matches!(err, CommandError::EnvironmentNotEmpty { flags: 1, .. }),
        "{err}"
    );
    h.ok(Command::DeleteEnvironment {
        key: "prod".into(),
        force: true,
    });
    assert!(h.state.environments.is_empty());
    assert!(matches!(
        h.publish(None),
        Err(CommandError::EnvironmentNotFound { .. })
    ));
}

#[test]
fn drafts_and_optimistic_concurrency() {
    let mut h = Harness::new();
    let r1 = h
        .put(json!({"key": "a", "kind": "boolean"}))
        .revision
        .unwrap();
    // A write equal to the draft changes nothing.
    assert_eq!(
        h.put(json!({"key": "a", "kind": "boolean", "enabled": true}))
            .revision,
        Some(r1)
    );
    let flag: Flag = serde_json::from_value(on_flag("a")).unwrap();
    let stale = h.run(Command::UpsertFlag {
        env: "prod".into(),
        flag: flag.clone(),
        expected_revision: Some(r1 + 5),
    });
    assert!(
        matches!(stale, Err(CommandError::RevisionConflict { expected, actual, .. }) if expected == r1 + 5 && actual == r1)
    );
    let create_only = h.run(Command::UpsertFlag {
        env: "prod".into(),
        flag: flag.clone(),
        expected_revision: Some(0),
    });
    assert!(matches!(
        create_only,
        Err(CommandError::RevisionConflict { .. })
    ));
    let r2 = h
        .ok(Command::UpsertFlag {
            env: "prod".into(),
            flag,
            expected_revision: Some(r1),
        })
        .revision
        .unwrap();
    assert!(r2 > r1);
    let draft = &h.state.env("prod").unwrap().draft_flags["a"];
    assert_eq!(draft.item.version, r2);
    assert_eq!(draft.updated_by, "alice");
    // Invalid drafts are refused with every problem.
    let bad: Flag = serde_json::from_value(
        json!({"key": "b", "kind": "boolean", "default": {"variant": "maybe"}}),
    )
    .unwrap();
    let err = h
        .run(Command::UpsertFlag {
            env: "prod".into(),
            flag: bad,
            expected_revision: None,
        })
        .unwrap_err();
    assert!(
        matches!(&err, CommandError::Invalid(v) if v.issues[0].path == "/default/variant"),
        "{err}"
    );
    assert!(matches!(
        h.run(Command::DeleteFlag {
            env: "prod".into(),
            key: "a".into(),
            expected_revision: Some(r1)
        }),
        Err(CommandError::RevisionConflict { .. })
    ));
    h.ok(Command::DeleteFlag {
        env: "prod".into(),
        key: "a".into(),
        expected_revision: Some(r2),
    });
    assert!(matches!(
        h.run(Command::DeleteFlag {
            env: "prod".into(),
            key: "a".into(),
            expected_revision: None
        }),
        Err(CommandError::FlagNotFound { .. })
    ));
}

#[test]
fn environments_hold_at_most_1000_segments() {
    let mut h = Harness::new();
    for i in 0..1000 {
        let seg: Segment =
            serde_json::from_value(json!({"key": format!("s{i}"), "included": ["u"]})).unwrap();
        h.ok(Command::UpsertSegment {
            env: "prod".into(),
            segment: seg,
            expected_revision: None,
        });
    }
    let one_more: Segment = serde_json::from_value(json!({"key": "s1000"})).unwrap();
    let err = h
        .run(Command::UpsertSegment {
            env: "prod".into(),
            segment: one_more,
            expected_revision: None,
        })
        .unwrap_err();
    assert!(
        matches!(&err, CommandError::Invalid(v) if v.issues[0].message.contains("already has 1000 segments")),
        "{err}"
    );
    // Replacing an existing one is still allowed.
    let again: Segment = serde_json::from_value(json!({"key": "s7", "included": ["v"]})).unwrap();
    assert!(
        h.run(Command::UpsertSegment {
            env: "prod".into(),
            segment: again,
            expected_revision: None
        })
        .is_ok()
    );
}

#[test]
fn references_are_kept_intact() {
    let mut h = Harness::new();
    let seg: Segment = serde_json::from_value(json!({"key": "beta", "included": ["u1"]})).unwrap();
    h.ok(Command::UpsertSegment {
        env: "prod".into(),
        segment: seg,
        expected_revision: None,
    });
    h.put(json!({"key": "base", "kind": "boolean"}));
    h.put(json!({"key": "child", "kind": "boolean", "prerequisites": [{"flag": "base", "variant": "on"}],
                 "rules": [{"clauses": [{"operator": "in_segment", "values": ["beta"]}], "serve": {"variant": "on"}}]}));
    let used = h.run(Command::DeleteFlag {
        env: "prod".into(),
        key: "base".into(),
        expected_revision: None,
    });
    assert!(
        matches!(&used, Err(CommandError::InUse { used_by, .. }) if used_by == &["child"]),
        "{used:?}"
    );
    let used = h.run(Command::DeleteSegment {
        env: "prod".into(),
        key: "beta".into(),
        expected_revision: None,
    });
    assert!(matches!(used, Err(CommandError::InUse { .. })));
    // Dropping a variant a dependent requires is refused.
    let drop = h.run(Command::UpsertFlag {
        env: "prod".into(),
        flag: serde_json::from_value(
            json!({"key": "base", "kind": "multivariate", "off_variant": "x",
                                            "variants": [{"key": "x", "value": 1}]}),
        )
        .unwrap(),
        expected_revision: None,
    });
    assert!(
        matches!(&drop, Err(CommandError::Invalid(v)) if v.issues[0].message.contains("requires variant \"on\"")),
        "{drop:?}"
    );
    // A prerequisite cycle is refused.
    let cyc = h.run(Command::UpsertFlag {
        env: "prod".into(),
        flag: serde_json::from_value(json!({"key": "base", "kind": "boolean", "prerequisites": [{"flag": "child", "variant": "on"}]})).unwrap(),
        expected_revision: None,
    });
    assert!(
        matches!(&cyc, Err(CommandError::Invalid(v)) if v.issues[0].message.contains("cycle")),
        "{cyc:?}"
    );
    // Publishing only the child, whose prerequisite is not published, is refused.
    let err = h.publish(Some(vec!["child"])).unwrap_err();
    assert!(
        matches!(&err, CommandError::Invalid(v) if v.issues.iter().any(|i| i.path == "/flags/child/prerequisites/0/flag")),
        "{err}"
    );
    assert_eq!(h.state.env("prod").unwrap().version(), 0);
}

/// The index of flags with prerequisites is derived and not serialized: a
/// state loaded from JSON still protects dependents, and the index follows
/// later writes.
#[test]
fn dependents_are_found_after_a_reload() {
    let mut h = Harness::new();
    h.put(json!({"key": "base", "kind": "boolean"}));
    h.put(json!({"key": "child", "kind": "boolean", "prerequisites": [{"flag": "base", "variant": "on"}]}));
    h.state = serde_json::from_str(&serde_json::to_string(&h.state).unwrap()).unwrap();
    let delete = |h: &mut Harness| {
        h.run(Command::DeleteFlag {
            env: "prod".into(),
            key: "base".into(),
            expected_revision: None,
        })
    };
    assert!(matches!(delete(&mut h), Err(CommandError::InUse { .. })));
    let drop_on = serde_json::from_value(
        json!({"key": "base", "kind": "multivariate", "off_variant": "x",
                                               "variants": [{"key": "x", "value": 1}]}),
    )
    .unwrap();
    let dropped = h.run(Command::UpsertFlag {
        env: "prod".into(),
        flag: drop_on,
        expected_revision: None,
    });
    assert!(
        matches!(dropped, Err(CommandError::Invalid(_))),
        "{dropped:?}"
    );
    // The child loses its prerequisite: base may go.
    h.put(json!({"key": "child", "kind": "boolean"}));
    assert!(delete(&mut h).is_ok());
}

/// A published draft and its revision are one allocation, in the state as
/// built and again after a reload; sharing changes neither the serialized
/// form nor the digest.
#[test]
fn a_draft_shares_its_published_revision() {
    let mut h = Harness::new();
    h.put(on_flag("a"));
    h.put(on_flag("b"));
    h.publish(None).unwrap();
    h.put(json!({"key": "b", "kind": "boolean", "description": "changed"}));
    let shared = |state: &State, key: &str| {
        let e = state.env("prod").unwrap();
        let d = &e.draft_flags[key].item;
        e.flag_revisions[key]
            .get(&d.version)
            .is_some_and(|r| std::sync::Arc::ptr_eq(r, d))
    };
    assert!(shared(&h.state, "a"));
    assert!(!shared(&h.state, "b"), "b's draft is a newer revision");
    let text = serde_json::to_string(&h.state).unwrap();
    let digest = h.state.digest();
    // Decoding shares what it meets after the draft (drafts come first).
    let mut reloaded: State = serde_json::from_str(&text).unwrap();
    assert!(shared(&reloaded, "a"));
    reloaded.share_revisions();
    assert!(shared(&reloaded, "a"));
    assert!(!shared(&reloaded, "b"));
    assert_eq!(serde_json::to_string(&reloaded).unwrap(), text);
    assert_eq!(reloaded.digest(), digest);
    assert_eq!(reloaded, h.state);
    // With the revisions first, decoding keeps two copies, and
    // share_revisions links them.
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let env = value["environments"]["prod"].take();
    let env = env.as_object().unwrap();
    let mut members: Vec<(&String, &serde_json::Value)> = env.iter().collect();
    members.sort_by_key(|(k, _)| k.as_str() != "flag_revisions");
    let env_text = members
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
        .collect::<Vec<_>>()
        .join(",");
    value["environments"]["prod"] = serde_json::Value::String("ENV".into());
    let reordered = serde_json::to_string(&value)
        .unwrap()
        .replace("\"ENV\"", &format!("{{{env_text}}}"));
    assert!(
        reordered.find("\"flag_revisions\"").unwrap() < reordered.find("\"draft_flags\"").unwrap()
    );
    let mut reloaded: State = serde_json::from_str(&reordered).unwrap();
    assert!(!shared(&reloaded, "a"));
    reloaded.share_revisions();
    assert!(shared(&reloaded, "a"));
    assert_eq!(reloaded.digest(), digest);
}

#[test]
fn publish_partial_publish_and_history() {
    let mut h = Harness::new();
    h.put(on_flag("a"));
    h.put(json!({"key": "b", "kind": "boolean"}));
    let out = h.publish(Some(vec!["a"])).unwrap();
    assert_eq!(out.env_version, 1);
    assert_eq!(out.changed_flags, vec!["a"]);
    let env = h.state.env("prod").unwrap();
    assert!(env.published_flag("a").is_some());
    assert!(env.published_flag("b").is_none());
    assert!(!env.has_unpublished_changes("a"));
    assert!(env.has_unpublished_changes("b"));
    let out = h.publish(None).unwrap();
    assert_eq!(
        (out.env_version, out.changed_flags.clone()),
        (2, vec!["b".to_string()])
    );
    assert!(matches!(
        h.publish(None),
        Err(CommandError::NoChange { .. })
    ));
    assert!(matches!(
        h.publish(Some(vec!["zzz"])),
        Err(CommandError::FlagNotFound { .. })
    ));
    // A deleted draft is removed from the published set by the next publish.
    h.ok(Command::DeleteFlag {
        env: "prod".into(),
        key: "b".into(),
        expected_revision: None,
    });
    let out = h.publish(None).unwrap();
    assert_eq!(out.changed_flags, vec!["b"]);
    let env = h.state.env("prod").unwrap();
    let v = &env.versions[2];
    assert_eq!(
        (v.version, v.author.as_str(), v.message.as_str()),
        (3, "alice", "ship it")
    );
    assert_eq!(v.action, VersionAction::Publish);
    let snap = env.snapshot();
    assert_eq!(snap.version, 3);
    assert_eq!(
        snap.flags
            .iter()
            .map(|f| f.key.as_str())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    assert_eq!(
        snap.published_at.as_deref(),
        Some(pulseplane_core::time::format_rfc3339_millis(v.at_ms).as_str())
    );
}

#[test]
fn rollback_restores_content_as_a_new_version() {
    let mut h = Harness::new();
    h.put(on_flag("a"));
    h.publish(None).unwrap();
    let v1 = h.state.env("prod").unwrap().snapshot();
    h.put(json!({"key": "a", "kind": "boolean"}));
    h.put(on_flag("b"));
    h.publish(None).unwrap();
    assert_eq!(h.eval("a"), (false, Reason::Static));
    let out = h.ok(Command::Rollback {
        env: "prod".into(),
        to_version: None,
        message: "undo".into(),
    });
    assert_eq!(out.env_version, 3);
    assert_eq!(out.changed_flags, vec!["a", "b"]);
    let v3 = h.state.env("prod").unwrap().snapshot();
    assert_eq!(v3.flags, v1.flags);
    assert_eq!(v3.segments, v1.segments);
    assert_eq!(h.eval("a"), (true, Reason::Static));
    assert_eq!(
        h.state.env("prod").unwrap().versions[2].action,
        VersionAction::Rollback { to: 1 }
    );
    // Rolling forward to version 2 works the same way.
    h.ok(Command::Rollback {
        env: "prod".into(),
        to_version: Some(2),
        message: String::new(),
    });
    assert_eq!(h.eval("a"), (false, Reason::Static));
    assert!(matches!(
        h.run(Command::Rollback {
            env: "prod".into(),
            to_version: Some(9),
            message: String::new()
        }),
        Err(CommandError::VersionNotFound { version: 9, .. })
    ));
    assert!(matches!(
        h.run(Command::Rollback {
            env: "prod".into(),
            to_version: Some(4),
            message: String::new()
        }),
        Err(CommandError::NoChange { .. })
    ));
}

#[test]
fn kill_switch_survives_publish_and_rollback() {
    let mut h = Harness::new();
    h.put(on_flag("a"));
    h.publish(None).unwrap();
    let kill = |h: &mut Harness| {
        h.ok(Command::Kill {
            env: "prod".into(),
            flag: "a".into(),
            message: "incident".into(),
        })
    };
    let out = kill(&mut h);
    assert_eq!(
        (out.env_version, out.changed_flags.clone()),
        (2, vec!["a".to_string()])
    );
    assert_eq!(h.eval("a"), (false, Reason::Disabled));
    let snap = h.state.env("prod").unwrap().snapshot();
    assert!(snap.flags[0].killed && !snap.flags[0].enabled);
    // Killing again is a no-op.
    assert_eq!(kill(&mut h).env_version, 2);
    // Publishing a new draft does not lift it.
    h.put(
        json!({"key": "a", "kind": "boolean", "description": "v2", "default": {"variant": "on"}}),
    );
    h.publish(None).unwrap();
    assert_eq!(h.eval("a"), (false, Reason::Disabled));
    // Nor does rolling back to a version from before the kill.
    h.ok(Command::Rollback {
        env: "prod".into(),
        to_version: Some(1),
        message: String::new(),
    });
    assert_eq!(h.eval("a"), (false, Reason::Disabled));
    let out = h.ok(Command::Restore {
        env: "prod".into(),
        flag: "a".into(),
        message: "fixed".into(),
    });
    assert_eq!(out.env_version, 5);
    assert_eq!(h.eval("a"), (true, Reason::Static));
    assert_eq!(
        h.ok(Command::Restore {
            env: "prod".into(),
            flag: "a".into(),
            message: String::new()
        })
        .env_version,
        5
    );
    assert!(matches!(
        h.run(Command::Kill {
            env: "prod".into(),
            flag: "zzz".into(),
            message: String::new()
        }),
        Err(CommandError::FlagNotFound { .. })
    ));
    let actions: Vec<_> = h
        .state
        .env("prod")
        .unwrap()
        .versions
        .iter()
        .map(|v| v.action.clone())
        .collect();
    assert_eq!(actions[1], VersionAction::Kill { flag: "a".into() });
    assert_eq!(actions[4], VersionAction::Restore { flag: "a".into() });
}

fn digest_without_audit(state: &State) -> String {
    let mut s = state.clone();
    s.audit = Default::default();
    s.digest()
}

/// `again` is a retry's answer: `first` with `replayed` set.
#[track_caller]
fn assert_replay_of(again: Outcome, first: &Outcome) {
    assert!(again.replayed);
    assert_eq!(
        Outcome {
            replayed: false,
            ..again
        },
        *first
    );
}

#[test]
fn retried_commands_apply_once() {
    let mut h = Harness::new();
    let put = h.envelope(Command::UpsertFlag {
        env: "prod".into(),
        flag: serde_json::from_value(on_flag("a")).unwrap(),
        expected_revision: None,
    });
    let first = h.state.apply(&put).unwrap();
    let digest = digest_without_audit(&h.state);
    assert_replay_of(h.state.apply(&put).unwrap(), &first);
    // Nothing changed but the audit log, which records the retry.
    assert_eq!(digest_without_audit(&h.state), digest);
    assert_eq!(h.state.audit.entries().last().unwrap().outcome, "replayed");
    // A refusal is not remembered: its retry is evaluated again, and can
    // succeed once the state allows it.
    let publish_b = h.envelope(Command::Publish {
        env: "prod".into(),
        message: String::new(),
        flags: Some(vec!["b".into()]),
        segments: None,
    });
    assert!(matches!(
        h.state.apply(&publish_b),
        Err(CommandError::FlagNotFound { .. })
    ));
    h.put(on_flag("b"));
    assert_eq!(h.state.apply(&publish_b).unwrap().env_version, 1);
    assert!(h.state.apply(&publish_b).unwrap().replayed);
    // The same key for another command is refused.
    let mut other = put.clone();
    other.command = Command::DeleteFlag {
        env: "prod".into(),
        key: "a".into(),
        expected_revision: None,
    };
    assert!(matches!(
        h.state.apply(&other),
        Err(CommandError::IdempotencyKeyReused { .. })
    ));
    // Keys older than the window are forgotten: the same key is a new command.
    let mut late = put.clone();
    late.at_ms += IDEMPOTENCY_WINDOW_MS + 10_000;
    let renamed = Command::UpdateEnvironment {
        key: "prod".into(),
        name: "P".into(),
    };
    late.command = renamed;
    assert!(!h.state.apply(&late).unwrap().replayed);
    assert_eq!(h.state.idempotency.len(), 1);
    let empty_key = CommandEnvelope {
        idempotency_key: String::new(),
        ..late
    };
    assert!(matches!(
        h.state.apply(&empty_key),
        Err(CommandError::Invalid(_))
    ));
}

fn script() -> Vec<CommandEnvelope> {
    let mut h = Harness {
        state: State::new(),
        seq: 0,
    };
    let mut out = Vec::new();
    let mut push = |h: &mut Harness, c: Command| out.push(h.envelope(c));
    push(
        &mut h,
        Command::CreateEnvironment {
            key: "prod".into(),
            name: "Production".into(),
        },
    );
    push(
        &mut h,
        Command::CreateEnvironment {
            key: "dev".into(),
            name: "Dev".into(),
        },
    );
    for i in 0..30 {
        let flag: Flag = serde_json::from_value(json!({
            "key": format!("f{}", i % 7), "kind": "multivariate", "off_variant": "a",
            "variants": [{"key": "a", "value": i}, {"key": "b", "value": {"n": i as f64 / 3.0}}],
            "default": {"rollout": {"variants": [{"variant": "a", "weight": i + 1}, {"variant": "b", "weight": 7}]}}
        }))
        .unwrap();
        let env = if i % 3 == 0 { "dev" } else { "prod" };
        push(
            &mut h,
            Command::UpsertFlag {
                env: env.into(),
                flag,
                expected_revision: None,
            },
        );
        if i % 4 == 3 {
            push(
                &mut h,
                Command::Publish {
                    env: env.into(),
                    message: format!("p{i}"),
                    flags: None,
                    segments: None,
                },
            );
        }
        if i % 10 == 9 {
            push(
                &mut h,
                Command::Kill {
                    env: "prod".into(),
                    flag: "f1".into(),
                    message: String::new(),
                },
            );
            push(
                &mut h,
                Command::Rollback {
                    env: "prod".into(),
                    to_version: None,
                    message: String::new(),
                },
            );
        }
    }
    out
}

#[test]
fn logs_read_back_from_their_serialized_form() {
    let mut h = Harness::new();
    h.put(on_flag("a"));
    let publish = h.envelope(Command::Publish {
        env: "prod".into(),
        message: "first".into(),
        flags: None,
        segments: None,
    });
    let first = h.state.apply(&publish).unwrap();
    assert_eq!(first.changed_flags, vec!["a".to_string()]);
    let text = serde_json::to_string(&h.state).unwrap();
    let mut reloaded: State = serde_json::from_str(&text).unwrap();
    assert_eq!(reloaded, h.state);
    assert_eq!(serde_json::to_string(&reloaded).unwrap(), text);
    // The wire form holds the outcomes and entries as objects.
    let value: Value = serde_json::from_str(&text).unwrap();
    let kept = &value["idempotency"]["entries"][&publish.idempotency_key];
    assert_eq!(kept["outcome"]["changed_flags"], json!(["a"]));
    assert_eq!(kept["outcome"]["env_version"], json!(1));
    let entries = value["audit"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), h.state.audit.len());
    assert_eq!(entries[2]["action"], "publish");
    assert_eq!(entries[2]["request_id"], "req-3");
    assert_eq!(
        serde_json::to_value(h.state.audit.entries().nth(2).unwrap()).unwrap(),
        entries[2]
    );
    // The idempotency keys are written in key order, whatever the order
    // they were applied in, so equal states serialize to equal text.
    let mut other = State::new();
    let envelopes: Vec<CommandEnvelope> = (0..50)
        .map(|i| CommandEnvelope {
            idempotency_key: format!("key-{:02}", (i * 37) % 50),
            ..h.envelope(Command::CreateEnvironment {
                key: format!("env-{i}"),
                name: "E".into(),
            })
        })
        .collect();
    for e in &envelopes {
        other.apply(e).unwrap();
    }
    let text_of = |s: &State| serde_json::to_string(s).unwrap();
    let text = text_of(&other);
    // (A parsed value would sort the keys itself: look at the text.)
    let at: Vec<usize> = (0..50)
        .map(|i| text.find(&format!("\"key-{i:02}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let reread: State = serde_json::from_str(&text).unwrap();
    assert_eq!(text_of(&reread), text);
    // A retry after the reload is answered with the first outcome.
    assert_replay_of(reloaded.apply(&publish).unwrap(), &first);
    // Entries are selected by their head without decoding the rest.
    let by_subject: Vec<u64> = reloaded
        .audit
        .matching(1, |h| h.subject == "alice" && h.env == "prod")
        .map(|e| e.seq)
        .collect();
    assert_eq!(by_subject, vec![2, 3, 4]);
    assert_eq!(
        reloaded.audit.matching(0, |h| h.subject == "bob").count(),
        0
    );
}

#[test]
fn replay_gives_a_byte_identical_digest() {
    let cmds = script();
    let replay = || {
        let mut s = State::new();
        let results: Vec<_> = cmds.iter().map(|c| s.apply(c)).collect();
        (s, results)
    };
    let (a, ra) = replay();
    let (b, rb) = replay();
    assert_eq!(ra, rb);
    assert!(ra.iter().filter(|r| r.is_ok()).count() > 30);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(
        serde_json::to_vec(&a).unwrap(),
        serde_json::to_vec(&b).unwrap()
    );
    // A state restored from its serialized form has the same digest.
    let restored: State = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
    assert_eq!(restored.digest(), a.digest());
    // And a different history gives a different digest.
    let mut c = State::new();
    for cmd in &cmds[..cmds.len() - 1] {
        let _ = c.apply(cmd);
    }
    assert_ne!(c.digest(), a.digest());
}

#[test]
fn version_retention_drops_old_versions_and_their_revisions() {
    let mut h = Harness::new();
    h.ok(Command::Configure(SettingsChange {
        idempotency_window_ms: None,
        version_retention: Some(10),
        ..SettingsChange::default()
    }));
    for i in 0..40 {
        h.put(json!({"key": "a", "kind": "boolean", "description": format!("v{i}")}));
        h.publish(None).unwrap();
    }
    let env = h.state.env("prod").unwrap();
    assert_eq!(env.version(), 40);
    // Pruned in bulk: never more than retention + 10%.
    assert!(
        env.versions.len() >= 10 && env.versions.len() <= 11,
        "{}",
        env.versions.len()
    );
    let first = env.versions[0].version;
    assert!(env.version_record(first).is_some());
    assert!(env.version_record(first - 1).is_none());
    assert_eq!(env.version_record(40).unwrap().version, 40);
    // Only revisions that a retained version uses are kept.
    assert_eq!(env.flag_revisions["a"].len(), env.versions.len());
    // Rolling back to a dropped version is refused; to a kept one works.
    assert!(matches!(
        h.run(Command::Rollback {
            env: "prod".into(),
            to_version: Some(3),
            message: String::new(),
        }),
        Err(CommandError::VersionNotFound { version: 3, .. })
    ));
    let out = h.ok(Command::Rollback {
        env: "prod".into(),
        to_version: Some(35),
        message: String::new(),
    });
    assert_eq!(out.env_version, 41);
    assert_eq!(
        h.state
            .env("prod")
            .unwrap()
            .published_flag("a")
            .unwrap()
            .description,
        "v34"
    );
}

#[test]
fn settings_are_validated_and_steer_idempotency_expiry() {
    let mut h = Harness::new();
    let bad = h.run(Command::Configure(SettingsChange {
        idempotency_window_ms: Some(5),
        version_retention: Some(1),
        ..SettingsChange::default()
    }));
    match bad {
        Err(CommandError::Invalid(e)) => {
            let paths: Vec<&str> = e.issues.iter().map(|i| i.path.as_str()).collect();
            assert_eq!(paths, ["/idempotency_window_ms", "/version_retention"]);
        }
        other => panic!("{other:?}"),
    }
    h.ok(Command::Configure(SettingsChange {
        idempotency_window_ms: Some(60_000),
        version_retention: None,
        ..SettingsChange::default()
    }));
    assert_eq!(h.state.settings.idempotency_window_ms, 60_000);
    assert_eq!(h.state.settings.version_retention, 1000);
    let put = h.envelope(Command::UpdateEnvironment {
        key: "prod".into(),
        name: "P".into(),
    });
    h.state.apply(&put).unwrap();
    let mut retry = put.clone();
    retry.at_ms += 30_000;
    assert!(h.state.apply(&retry).unwrap().replayed);
    let mut late = put.clone();
    late.at_ms += 61_000;
    assert!(!h.state.apply(&late).unwrap().replayed);
}

#[test]
fn every_retained_version_reads_back_as_it_was_published() {
    let mut h = Harness::new();
    h.ok(Command::Configure(SettingsChange {
        version_retention: Some(20),
        ..SettingsChange::default()
    }));
    let mut seen: std::collections::BTreeMap<u64, std::collections::BTreeMap<String, u64>> =
        Default::default();
    for i in 0..80 {
        let key = format!("f{}", i % 7);
        h.put(json!({"key": key, "kind": "boolean", "description": format!("v{i}")}));
        if i % 11 == 5 {
            h.ok(Command::DeleteFlag {
                env: "prod".into(),
                key: "f3".into(),
                expected_revision: None,
            });
        }
        if h.publish(None).is_ok() {
            let e = h.state.env("prod").unwrap();
            seen.insert(e.version(), e.current_flags());
        }
        if i % 13 == 0 {
            h.ok(Command::Kill {
                env: "prod".into(),
                flag: key.clone(),
                message: String::new(),
            });
            h.ok(Command::Restore {
                env: "prod".into(),
                flag: key,
                message: String::new(),
            });
            let e = h.state.env("prod").unwrap();
            seen.insert(e.version() - 1, e.current_flags());
            seen.insert(e.version(), e.current_flags());
        }
    }
    let e = h.state.env("prod").unwrap();
    assert!(e.versions.len() <= 22, "{}", e.versions.len());
    for r in &e.versions {
        let content = e.version_content(r.version).unwrap();
        assert_eq!(content.flags, seen[&r.version], "version {}", r.version);
        // Every revision a retained version serves is still kept.
        let flags = e.flags_of(&content);
        assert_eq!(flags.len(), content.flags.len(), "version {}", r.version);
        for f in flags {
            assert_eq!(content.flags[&f.key], f.version);
        }
    }
    let first = e.versions[0].version;
    assert!(e.version_content(first - 1).is_none());
    // History costs the changes, not the flag set per version.
    let json = serde_json::to_string(&e.versions).unwrap();
    assert!(!json.contains("\"flags\""), "{json}");
    // The state survives a serialization round trip with its history.
    let restored: State = serde_json::from_str(&serde_json::to_string(&h.state).unwrap()).unwrap();
    let re = restored.env("prod").unwrap();
    assert_eq!(re.version_content(first + 3), e.version_content(first + 3));
}

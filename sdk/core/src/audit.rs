//! The replicated audit log: one entry per applied command, success or
//! refusal, with who asked, the permission they used, what it targeted, the
//! target's digests before and after, and a compact diff.
//!
//! Entries are written by [`crate::State::apply`] from the command alone,
//! so every replica holds the same log, and it survives failover like the
//! rest of the state. Old entries are dropped by count and age (both in
//! [`crate::state::Settings`]), by command time, so that pruning is
//! deterministic too.

use std::collections::VecDeque;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::{Command, CommandEnvelope, CommandError, Outcome};
use crate::diff::{Change, diff};
use crate::snapshot::canonical_sha256;
use crate::state::{Settings, State};

/// The most changes an entry's diff keeps.
pub const MAX_DIFF_CHANGES: usize = 20;
/// A diff value longer than this (as JSON) is replaced by its digest.
pub const MAX_DIFF_VALUE_BYTES: usize = 256;
/// Longest subject, permission or request id kept in an entry.
const MAX_FIELD_LEN: usize = 256;

/// What the node adds to a command for its audit entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContext {
    /// The permission the request was allowed by, such as `flag.publish`.
    pub permission: String,
    /// The request's `X-Request-Id`.
    pub request_id: String,
}

/// One audited command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Increases by one per entry, cluster-wide; the pagination cursor.
    pub seq: u64,
    /// When the command was proposed, Unix milliseconds.
    pub at_ms: i64,
    pub subject: String,
    pub permission: String,
    /// The command, such as `publish` or `put_role`.
    pub action: String,
    /// The environment, or empty for cluster-wide commands.
    pub env: String,
    /// What the command changed: `flag:<key>`, `segment:<key>`,
    /// `environment:<key>`, `versions`, `settings`, `role:<name>`,
    /// `binding:<subject>`, `sdk_key:<id>`, `node:<id>`.
    pub target: String,
    pub request_id: String,
    /// SHA-256 of the target's canonical JSON before and after; absent
    /// when the target did not exist.
    pub before: Option<String>,
    pub after: Option<String>,
    /// At most [`MAX_DIFF_CHANGES`] changes; long values are replaced by
    /// `sha256:<hex>` of their canonical JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<Change>,
    /// True when the diff had more changes than it keeps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diff_truncated: bool,
    /// `ok`, `replayed` (a retry answered from the idempotency log), or the
    /// refusal's error code.
    pub outcome: String,
    /// The environment's published version after the command, when it has
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_version: Option<u64>,
}

/// The retained entries, oldest first.
///
/// Each entry is kept as its JSON text, with the fields the log is searched
/// by beside it: a typed entry (its strings, digests and diff values each a
/// heap block) takes about three times the memory, and the log holds up to
/// [`crate::state::Settings::audit_retention_entries`] of them on every
/// node. Serialized, the log is `{"entries": [entry, ...], "next_seq": n}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditLog {
    entries: VecDeque<Kept>,
    next_seq: u64,
}

/// One retained entry.
#[derive(Clone, Debug, PartialEq)]
struct Kept {
    seq: u64,
    at_ms: i64,
    env: Box<str>,
    subject: Box<str>,
    /// The whole [`AuditEntry`] as JSON.
    json: Box<str>,
}

impl Kept {
    fn of(entry: &AuditEntry) -> Kept {
        Kept {
            seq: entry.seq,
            at_ms: entry.at_ms,
            env: entry.env.as_str().into(),
            subject: entry.subject.as_str().into(),
            // Serializing a struct of strings, numbers and JSON values
            // cannot fail.
            json: serde_json::to_string(entry)
                .unwrap_or_default()
                .into_boxed_str(),
        }
    }

    fn entry(&self) -> Result<AuditEntry, serde_json::Error> {
        serde_json::from_str(&self.json)
    }

    fn head(&self) -> AuditHead<'_> {
        AuditHead {
            seq: self.seq,
            at_ms: self.at_ms,
            env: &self.env,
            subject: &self.subject,
        }
    }
}

/// What an entry can be selected by without decoding it.
#[derive(Clone, Copy, Debug)]
pub struct AuditHead<'a> {
    pub seq: u64,
    pub at_ms: i64,
    pub env: &'a str,
    pub subject: &'a str,
}

/// Decodes a kept entry. It was written by [`Kept::of`] from an entry, and
/// its values are no deeper than a flag's (which validation bounds well
/// under the JSON reader's nesting limit), so it reads back.
fn decoded(kept: &Kept) -> Option<AuditEntry> {
    kept.entry().ok()
}

impl AuditLog {
    /// The retained entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = AuditEntry> + '_ {
        self.entries.iter().filter_map(decoded)
    }

    /// The entries after sequence number `after`, oldest first.
    pub fn after(&self, after: u64) -> impl Iterator<Item = AuditEntry> + '_ {
        self.matching(after, |_| true)
    }

    /// The entries after sequence number `after` that `keep` selects,
    /// oldest first; only those are decoded.
    pub fn matching<'a>(
        &'a self,
        after: u64,
        keep: impl Fn(AuditHead<'_>) -> bool + 'a,
    ) -> impl Iterator<Item = AuditEntry> + 'a {
        let start = self.entries.partition_point(|e| e.seq <= after);
        self.entries
            .range(start..)
            .filter(move |k| keep(k.head()))
            .filter_map(decoded)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, mut entry: AuditEntry, settings: &Settings) {
        self.next_seq += 1;
        entry.seq = self.next_seq;
        let horizon = entry.at_ms.saturating_sub(settings.audit_retention_ms);
        self.entries.push_back(Kept::of(&entry));
        self.prune(horizon, settings.audit_retention_entries);
    }

    /// Drops entries older than `horizon` and beyond `keep`.
    pub(crate) fn prune(&mut self, horizon: i64, keep: u64) {
        while let Some(front) = self.entries.front() {
            if front.at_ms >= horizon && self.entries.len() as u64 <= keep {
                break;
            }
            self.entries.pop_front();
        }
    }
}

impl Serialize for AuditLog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Entries<'a>(&'a VecDeque<Kept>);
        impl Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for kept in self.0 {
                    let entry = kept.entry().map_err(serde::ser::Error::custom)?;
                    seq.serialize_element(&entry)?;
                }
                seq.end()
            }
        }
        let mut st = s.serialize_struct("AuditLog", 2)?;
        st.serialize_field("entries", &Entries(&self.entries))?;
        st.serialize_field("next_seq", &self.next_seq)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for AuditLog {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct Wire {
            #[serde(deserialize_with = "kept_entries")]
            entries: VecDeque<Kept>,
            next_seq: u64,
        }
        let w = Wire::deserialize(d)?;
        Ok(AuditLog {
            entries: w.entries,
            next_seq: w.next_seq,
        })
    }
}

/// Reads the entries one at a time into their kept form, so that a large
/// log is never held typed.
fn kept_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VecDeque<Kept>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = VecDeque<Kept>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of audit entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = VecDeque::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(entry) = seq.next_element::<AuditEntry>()? {
                out.push_back(Kept::of(&entry));
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Visit)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_LEN {
        return s.to_owned();
    }
    let mut end = MAX_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A value as JSON without its revision and write metadata, which change
/// whenever it is written.
fn content_of<T: Serialize>(item: &T, drop: &[&str]) -> Value {
    let mut v = serde_json::to_value(item).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for k in drop {
            m.remove(*k);
        }
    }
    v
}

/// The target's content after a command.
pub(crate) enum After {
    /// As it was before (a refusal, a replay, or a write that changed
    /// nothing).
    Same,
    Now(Option<Value>),
}

/// Replaces long values in a change by their digest.
fn compact(mut change: Change) -> Change {
    let shorten = |v: &mut Option<Value>| {
        if let Some(value) = v {
            let text = serde_json::to_string(value).unwrap_or_default();
            if text.len() > MAX_DIFF_VALUE_BYTES {
                *value = Value::String(format!("sha256:{}", canonical_sha256(value)));
            }
        }
    };
    shorten(&mut change.from);
    shorten(&mut change.to);
    change
}

impl State {
    /// What `command` targets, and the target's current content.
    pub(crate) fn audit_view(&self, command: &Command) -> (String, Option<Value>) {
        let env_state = |key: &str| self.environments.get(key);
        match command {
            Command::CreateEnvironment { key, .. }
            | Command::UpdateEnvironment { key, .. }
            | Command::DeleteEnvironment { key, .. } => (
                format!("environment:{key}"),
                env_state(key).map(|e| content_of(&e.environment(), &[])),
            ),
            Command::UpsertFlag { env, flag, .. } => (
                format!("flag:{}", flag.key),
                env_state(env)
                    .and_then(|e| e.draft_flags.get(&flag.key))
                    .map(|d| content_of(&d.item, &["version"])),
            ),
            Command::DeleteFlag { env, key, .. } => (
                format!("flag:{key}"),
                env_state(env)
                    .and_then(|e| e.draft_flags.get(key))
                    .map(|d| content_of(&d.item, &["version"])),
            ),
            Command::UpsertSegment { env, segment, .. } => (
                format!("segment:{}", segment.key),
                env_state(env)
                    .and_then(|e| e.draft_segments.get(&segment.key))
                    .map(|d| content_of(&d.item, &["version"])),
            ),
            Command::DeleteSegment { env, key, .. } => (
                format!("segment:{key}"),
                env_state(env)
                    .and_then(|e| e.draft_segments.get(key))
                    .map(|d| content_of(&d.item, &["version"])),
            ),
            Command::Publish { env, .. } | Command::Rollback { env, .. } => (
                "versions".to_owned(),
                env_state(env).map(|e| {
                    serde_json::json!({
                        "version": e.version(),
                        "flags": e.current_flags(),
                        "segments": e.current_segments(),
                    })
                }),
            ),
            Command::Kill { env, flag, .. } | Command::Restore { env, flag, .. } => (
                format!("flag:{flag}"),
                env_state(env).map(|e| {
                    serde_json::json!({
                        "version": e.version(),
                        "killed": e.kills.contains_key(flag),
                    })
                }),
            ),
            Command::Configure(_) => ("settings".to_owned(), Some(content_of(&self.settings, &[]))),
            Command::PutRole { name, .. } | Command::DeleteRole { name } => (
                format!("role:{name}"),
                self.access
                    .roles
                    .get(name)
                    .map(|r| content_of(r, &["updated_at_ms", "updated_by"])),
            ),
            Command::PutBinding { subject, .. } | Command::DeleteBinding { subject } => (
                format!("binding:{subject}"),
                self.access
                    .bindings
                    .get(subject)
                    .map(|b| content_of(b, &["updated_at_ms", "updated_by"])),
            ),
            Command::CreateSdkKey(key) => (
                format!("sdk_key:{}", key.id),
                self.access
                    .sdk_keys
                    .get(&key.id)
                    .map(|k| content_of(k, &["hash"])),
            ),
            Command::RevokeSdkKey { id, .. } => (
                format!("sdk_key:{id}"),
                self.access
                    .sdk_keys
                    .get(id)
                    .map(|k| content_of(k, &["hash"])),
            ),
            Command::Record { target, .. } => (clip(target), None),
        }
    }

    /// Appends the entry for `cmd`, given its target's content before and
    /// after and its result.
    pub(crate) fn record_audit(
        &mut self,
        cmd: &CommandEnvelope,
        target: String,
        before: Option<Value>,
        after: After,
        result: &Result<Outcome, CommandError>,
    ) {
        let after = match &after {
            After::Same => before.as_ref(),
            After::Now(v) => v.as_ref(),
        };
        let outcome = match result {
            Ok(o) if o.replayed => "replayed".to_owned(),
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        let env = cmd.command.env();
        let env_version = self.environments.get(env).map(|e| e.version());
        let mut changes = match (&before, after) {
            (Some(b), Some(a)) if std::ptr::eq(b, a) => Vec::new(),
            (Some(b), Some(a)) => diff(b, a),
            (None, Some(a)) => diff(&Value::Null, a),
            (Some(b), None) => diff(b, &Value::Null),
            (None, None) => Vec::new(),
        };
        let diff_truncated = changes.len() > MAX_DIFF_CHANGES;
        changes.truncate(MAX_DIFF_CHANGES);
        let mut changes: Vec<Change> = changes.into_iter().map(compact).collect();
        // Kept for as long as the entry: no spare capacity.
        changes.shrink_to_fit();
        let context = cmd.audit.clone().unwrap_or_default();
        let before_digest = before.as_ref().map(canonical_sha256);
        let entry = AuditEntry {
            seq: 0,
            at_ms: cmd.at_ms,
            subject: clip(&cmd.actor),
            permission: clip(&context.permission),
            action: match &cmd.command {
                Command::Record { action, .. } => clip(action),
                other => other.name().to_owned(),
            },
            env: clip(env),
            target: clip(&target),
            request_id: clip(&context.request_id),
            after: match (&before, after, &before_digest) {
                (Some(b), Some(a), Some(d)) if std::ptr::eq(a, b) || a == b => Some(d.clone()),
                _ => after.map(canonical_sha256),
            },
            before: before_digest,
            diff: changes,
            diff_truncated,
            outcome,
            env_version,
        };
        self.audit.push(entry, &self.settings);
    }
}

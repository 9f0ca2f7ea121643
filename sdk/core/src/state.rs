//! The replicated state and its pure transitions.
//!
//! [`State::apply`] is deterministic: the same command sequence gives a
//! byte-identical [`State::digest`] on every replica. Every map that is
//! iterated is ordered; the one hashed map (the idempotency log's keys) is
//! only looked up, and serialized in key order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access::AccessState;
use crate::audit::{After, AuditLog};
use crate::command::{Command, CommandEnvelope, CommandError, Outcome};
use crate::compile::{FlagSet, check_prerequisite_graph, validate_flag, validate_segment};
use crate::issue::{Issue, ValidationError};
use crate::jcs::{hex, unhex};
use crate::limits::{
    MAX_FLAGS, MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_SEGMENTS, MAX_TOKEN_LEN, check_key,
};
use crate::model::{Environment, Flag, Operator, Segment};
use crate::snapshot::{Snapshot, canonical_sha256_bytes};

/// How long a command's idempotency key is remembered, by command time,
/// unless the settings say otherwise.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How many versions of each environment are kept, unless the settings say
/// otherwise.
pub const VERSION_RETENTION: u64 = 1000;
/// Bounds of the settings.
pub const MIN_IDEMPOTENCY_WINDOW_MS: i64 = 60 * 1000;
pub const MAX_IDEMPOTENCY_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
pub const MIN_VERSION_RETENTION: u64 = 2;
pub const MAX_VERSION_RETENTION: u64 = 100_000;
/// How many idempotency keys are remembered at most.
pub const IDEMPOTENCY_MAX_KEYS: usize = 100_000;
/// How many audit entries are kept, and for how long, unless the settings
/// say otherwise; and the bounds of those settings.
pub const AUDIT_RETENTION_ENTRIES: u64 = 10_000;
pub const AUDIT_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;
pub const MIN_AUDIT_RETENTION_ENTRIES: u64 = 100;
pub const MAX_AUDIT_RETENTION_ENTRIES: u64 = 1_000_000;
pub const MIN_AUDIT_RETENTION_MS: i64 = 3600 * 1000;
pub const MAX_AUDIT_RETENTION_MS: i64 = 3650 * 24 * 3600 * 1000;

/// Everything the control plane replicates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub environments: BTreeMap<String, EnvState>,
    pub idempotency: IdempotencyLog,
    #[serde(default)]
    pub settings: Settings,
    /// Roles, bindings and SDK keys.
    #[serde(default)]
    pub access: AccessState,
    #[serde(default)]
    pub audit: AuditLog,
}

impl State {
    /// Makes every draft that equals its published revision share that
    /// revision's memory (decoding shares those it meets after their
    /// drafts, see the `sharing` module), and forgets what decoding
    /// remembered on this thread. Call after loading a state.
    pub fn share_revisions(&mut self) {
        crate::sharing::forget();
        for e in self.environments.values_mut() {
            crate::sharing::relink(&mut e.draft_flags, &e.flag_revisions);
            crate::sharing::relink(&mut e.draft_segments, &e.segment_revisions);
        }
    }
}

/// Cluster-wide settings, replicated like everything else so that every
/// replica expires and prunes alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Settings {
    /// How long an idempotency key is remembered, in milliseconds.
    pub idempotency_window_ms: i64,
    /// How many versions each environment keeps; older ones are dropped
    /// (and can no longer be read or rolled back to).
    pub version_retention: u64,
    /// How many audit entries are kept at most.
    pub audit_retention_entries: u64,
    /// How long audit entries are kept, in milliseconds.
    pub audit_retention_ms: i64,
}

/// New values for some settings; absent ones keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SettingsChange {
    pub idempotency_window_ms: Option<i64>,
    pub version_retention: Option<u64>,
    pub audit_retention_entries: Option<u64>,
    pub audit_retention_ms: Option<i64>,
}

fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    issues: &mut Vec<Issue>,
    path: &str,
    value: Option<T>,
    min: T,
    max: T,
    unit: &str,
) {
    if let Some(v) = value
        && !(min..=max).contains(&v)
    {
        issues.push(Issue::new(path, format!("must be {min} to {max}{unit}")));
    }
}

impl SettingsChange {
    /// Checks new values against the bounds.
    pub fn check(&self) -> Result<(), ValidationError> {
        let mut issues = Vec::new();
        check_range(
            &mut issues,
            "/idempotency_window_ms",
            self.idempotency_window_ms,
            MIN_IDEMPOTENCY_WINDOW_MS,
            MAX_IDEMPOTENCY_WINDOW_MS,
            " ms",
        );
        check_range(
            &mut issues,
            "/version_retention",
            self.version_retention,
            MIN_VERSION_RETENTION,
            MAX_VERSION_RETENTION,
            "",
        );
        check_range(
            &mut issues,
            "/audit_retention_entries",
            self.audit_retention_entries,
            MIN_AUDIT_RETENTION_ENTRIES,
            MAX_AUDIT_RETENTION_ENTRIES,
            "",
        );
        check_range(
            &mut issues,
            "/audit_retention_ms",
            self.audit_retention_ms,
            MIN_AUDIT_RETENTION_MS,
            MAX_AUDIT_RETENTION_MS,
            " ms",
        );
        ValidationError::check(issues)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idempotency_window_ms: IDEMPOTENCY_WINDOW_MS,
            version_retention: VERSION_RETENTION,
            audit_retention_entries: AUDIT_RETENTION_ENTRIES,
            audit_retention_ms: AUDIT_RETENTION_MS,
        }
    }
}

/// Recent commands by idempotency key, oldest first. Every applied write
/// of the last day is here on every node, so it is kept small: each key is
/// one shared string, and each outcome its JSON text.
///
/// Every command looks its key up and most add one, among up to
/// [`IDEMPOTENCY_MAX_KEYS`], so the keys are hashed rather than ordered.
/// Nothing iterates the map but serialization, which writes the keys in
/// order, as an ordered map would.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyLog {
    #[serde(serialize_with = "in_key_order")]
    entries: HashMap<Arc<str>, Recorded, ahash::RandomState>,
    order: VecDeque<Arc<str>>,
}

/// Serializes a hashed map as a map in key order.
fn in_key_order<S: serde::Serializer, V: Serialize>(
    map: &HashMap<Arc<str>, V, ahash::RandomState>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut members: Vec<(&Arc<str>, &V)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    s.collect_map(members)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Recorded {
    at_ms: i64,
    /// Digest of the command, to spot a key reused for another command.
    command: CommandDigest,
    /// The [`Outcome`] as JSON; serialized as the outcome itself.
    #[serde(with = "outcome_text")]
    outcome: Box<str>,
}

/// An [`Outcome`] kept as its JSON text, written as the outcome.
mod outcome_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::command::Outcome;

    pub(super) fn encode(outcome: &Outcome) -> Box<str> {
        // Strings, numbers and booleans: serializing cannot fail.
        serde_json::to_string(outcome)
            .unwrap_or_default()
            .into_boxed_str()
    }

    pub(super) fn decode(text: &str) -> Option<Outcome> {
        serde_json::from_str(text).ok()
    }

    pub(super) fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        decode(text)
            .ok_or_else(|| serde::ser::Error::custom("a remembered outcome does not decode"))?
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<str>, D::Error> {
        Outcome::deserialize(d).map(|o| encode(&o))
    }
}

/// SHA-256 of a command's canonical JSON: 32 bytes in memory, lowercase
/// hex on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CommandDigest([u8; 32]);

impl CommandDigest {
    fn of(command: &Command) -> CommandDigest {
        let value = serde_json::to_value(command).unwrap_or_default();
        CommandDigest(canonical_sha256_bytes(&value))
    }
}

impl Serialize for CommandDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for CommandDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        unhex(&text, &mut out).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &"64 lowercase hex digits",
            )
        })?;
        Ok(CommandDigest(out))
    }
}

/// One key's published revisions, by revision number: a sorted list with no
/// spare room. Most keys have one or two, and each environment has up to
/// 10,000 keys, so a map (whose every node has room for eleven) would cost
/// several times as much. Serialized as a map of revision numbers to items.
#[derive(Clone, Debug, PartialEq)]
pub struct Revisions<T>(Vec<(u64, Arc<T>)>);

impl<T> Default for Revisions<T> {
    fn default() -> Self {
        Revisions(Vec::new())
    }
}

impl<T> Revisions<T> {
    /// The item of revision `rev`.
    pub fn get(&self, rev: &u64) -> Option<&Arc<T>> {
        self.0
            .binary_search_by_key(rev, |(r, _)| *r)
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Adds revision `rev` unless it is there already.
    pub fn insert_if_absent(&mut self, rev: u64, item: Arc<T>) {
        if let Err(i) = self.0.binary_search_by_key(&rev, |(r, _)| *r) {
            self.0.insert(i, (rev, item));
            self.0.shrink_to_fit();
        }
    }

    /// Keeps the revisions `keep` selects.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &Arc<T>) -> bool) {
        let before = self.0.len();
        self.0.retain(|(r, item)| keep(*r, item));
        if self.0.len() != before {
            self.0.shrink_to_fit();
        }
    }

    /// The revisions, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, &Arc<T>)> {
        self.0.iter().map(|(r, item)| (*r, item))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> FromIterator<(u64, Arc<T>)> for Revisions<T> {
    fn from_iter<I: IntoIterator<Item = (u64, Arc<T>)>>(items: I) -> Self {
        let mut v: Vec<(u64, Arc<T>)> = items.into_iter().collect();
        v.sort_by_key(|(r, _)| *r);
        v.dedup_by_key(|(r, _)| *r);
        v.shrink_to_fit();
        Revisions(v)
    }
}

impl<T: Serialize> Serialize for Revisions<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(r, item)| (r, &**item)))
    }
}

/// A draft (unpublished) flag or segment with its write metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Draft<T> {
    /// The item, its `version` field set to its revision. Shared with the
    /// published revision of the same number, if any (one copy in memory;
    /// serialized as the item).
    pub item: Arc<T>,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// One published version of an environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    pub at_ms: i64,
    pub author: String,
    pub message: String,
    pub action: VersionAction,
    pub changed_flags: Vec<String>,
    pub changed_segments: Vec<String>,
    /// How this version's content differs from the previous version's:
    /// flag key → revision before and after (absent: not published). The
    /// content of an older version is the current content with the
    /// changes of every later version undone, so history costs what
    /// changed, not the whole flag set per version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flag_changes: BTreeMap<String, RevisionChange>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segment_changes: BTreeMap<String, RevisionChange>,
}

/// A published revision before and after a version (`[before, after]` on
/// the wire; `null` for absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionChange(pub Option<u64>, pub Option<u64>);

/// Flag and segment key → published revision: what one version serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionContent {
    pub flags: BTreeMap<String, u64>,
    pub segments: BTreeMap<String, u64>,
}

/// The changes that turn `old` into `new`.
fn revision_changes(
    old: &BTreeMap<String, u64>,
    new: &BTreeMap<String, u64>,
) -> BTreeMap<String, RevisionChange> {
    let mut out = BTreeMap::new();
    for (k, b) in old {
        let a = new.get(k).copied();
        if a != Some(*b) {
            out.insert(k.clone(), RevisionChange(Some(*b), a));
        }
    }
    for (k, a) in new {
        if !old.contains_key(k) {
            out.insert(k.clone(), RevisionChange(None, Some(*a)));
        }
    }
    out
}

/// Undoes `changes` in `content`, noting in `differs` the keys whose
/// revision now differs from `head`.
fn undo(
    content: &mut BTreeMap<String, u64>,
    changes: &BTreeMap<String, RevisionChange>,
    head: &BTreeMap<String, u64>,
    differs: &mut BTreeSet<String>,
) {
    for (k, RevisionChange(before, _)) in changes {
        match before {
            Some(r) => content.insert(k.clone(), *r),
            None => content.remove(k),
        };
        if content.get(k) == head.get(k) {
            differs.remove(k);
        } else {
            differs.insert(k.clone());
        }
    }
}

/// What made a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VersionAction {
    Publish,
    Rollback { to: u64 },
    Kill { flag: String },
    Restore { flag: String },
}

/// A kill switch in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillRecord {
    pub at_ms: i64,
    pub by: String,
    /// The environment version the kill created.
    pub version: u64,
}

/// One environment: drafts, published history and kill switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    pub key: String,
    pub name: String,
    pub created_at_ms: i64,
    /// Last revision handed out to a draft write in this environment.
    pub revision_seq: u64,
    #[serde(deserialize_with = "crate::sharing::drafts")]
    pub draft_flags: BTreeMap<String, Draft<Flag>>,
    #[serde(deserialize_with = "crate::sharing::drafts")]
    pub draft_segments: BTreeMap<String, Draft<Segment>>,
    /// The retained versions, oldest first.
    pub versions: Vec<VersionRecord>,
    /// The latest version's content (empty before the first publish).
    #[serde(default)]
    pub published_flags: BTreeMap<String, u64>,
    #[serde(default)]
    pub published_segments: BTreeMap<String, u64>,
    /// Every published flag revision, by key then revision. (Behind an
    /// `Arc`: the draft of the same revision shares it.)
    #[serde(deserialize_with = "crate::sharing::revisions")]
    pub flag_revisions: BTreeMap<String, Revisions<Flag>>,
    #[serde(deserialize_with = "crate::sharing::revisions")]
    pub segment_revisions: BTreeMap<String, Revisions<Segment>>,
    pub kills: BTreeMap<String, KillRecord>,
    /// Keys of draft flags that have prerequisites (derived from
    /// `draft_flags`, not serialized, rebuilt on first use after loading),
    /// so a flag write checks its dependents without scanning every draft.
    #[serde(skip)]
    dependents: PrerequisiteIndex,
}

/// A derived index: equal whatever it holds, since it only caches what
/// `draft_flags` already says. `None` means "rebuild before use".
#[derive(Clone, Debug, Default)]
struct PrerequisiteIndex(Option<BTreeSet<String>>);

impl PartialEq for PrerequisiteIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn invalid(path: &str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid(ValidationError {
        issues: vec![Issue::new(path, message)],
    })
}

fn check_message(message: &str) -> Result<(), CommandError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(invalid(
            "/message",
            format!("longer than {MAX_MESSAGE_LEN} bytes"),
        ));
    }
    Ok(())
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// Applies one command. A retry (same idempotency key, same command)
    /// returns the first result with `replayed` set and changes nothing.
    /// Every command, applied or refused, gets an audit entry.
    pub fn apply(&mut self, cmd: &CommandEnvelope) -> Result<Outcome, CommandError> {
        let (target, before) = self.audit_view(&cmd.command);
        let draft_revision = self.draft_revision(&cmd.command);
        let result = self.apply_once(cmd);
        let after = match &result {
            // A draft write whose content equals the draft keeps its
            // revision: the target is as it was.
            Ok(o) if o.replayed || (draft_revision.is_some() && o.revision == draft_revision) => {
                After::Same
            }
            Ok(_) => After::Now(self.audit_view(&cmd.command).1),
            Err(_) => After::Same,
        };
        self.record_audit(cmd, target, before, after, &result);
        result
    }

    /// The revision of the draft a flag or segment write targets, if it
    /// exists.
    fn draft_revision(&self, command: &Command) -> Option<u64> {
        match command {
            Command::UpsertFlag { env, flag, .. } => self
                .environments
                .get(env)?
                .draft_flags
                .get(&flag.key)
                .map(|d| d.item.version),
            Command::UpsertSegment { env, segment, .. } => self
                .environments
                .get(env)?
                .draft_segments
                .get(&segment.key)
                .map(|d| d.item.version),
            _ => None,
        }
    }

    fn apply_once(&mut self, cmd: &CommandEnvelope) -> Result<Outcome, CommandError> {
        if cmd.idempotency_key.is_empty() || cmd.idempotency_key.len() > MAX_TOKEN_LEN {
            return Err(invalid(
                "/idempotency_key",
                format!("must be 1 to {MAX_TOKEN_LEN} bytes"),
            ));
        }
        if cmd.actor.len() > MAX_TOKEN_LEN {
            return Err(invalid(
                "/actor",
                format!("longer than {MAX_TOKEN_LEN} bytes"),
            ));
        }
        let fingerprint = CommandDigest::of(&cmd.command);
        let window = self.settings.idempotency_window_ms;
        let horizon = cmd.at_ms.saturating_sub(window);
        if let Some(prev) = self.idempotency.entries.get(cmd.idempotency_key.as_str())
            && prev.at_ms >= horizon
        {
            if prev.command != fingerprint {
                return Err(CommandError::IdempotencyKeyReused {
                    key: cmd.idempotency_key.clone(),
                });
            }
            // The text was encoded from an outcome, so it decodes; were
            // it not to, the retry still changes nothing.
            let first = outcome_text::decode(&prev.outcome).unwrap_or_else(|| Outcome {
                env: cmd.command.env().to_owned(),
                ..Outcome::default()
            });
            return Ok(Outcome {
                replayed: true,
                ..first
            });
        }
        let result = self.apply_new(cmd);
        // Only applied commands are remembered: a refusal changed nothing,
        // so its retry is simply evaluated again. (Refusal messages also come
        // from third-party parsers and must not enter the replicated state.)
        if let Ok(outcome) = &result {
            self.idempotency.remember(cmd, fingerprint, outcome, window);
        }
        result
    }

    fn apply_new(&mut self, cmd: &CommandEnvelope) -> Result<Outcome, CommandError> {
        let at = cmd.at_ms;
        let who = cmd.actor.as_str();
        let result = match &cmd.command {
            Command::CreateEnvironment { key, name } => {
                check_env_fields(key, name)?;
                if self.environments.contains_key(key) {
                    return Err(CommandError::EnvironmentExists { env: key.clone() });
                }
                self.environments
                    .insert(key.clone(), EnvState::new(key, name, at));
                Ok(Outcome {
                    env: key.clone(),
                    ..Outcome::default()
                })
            }
            Command::UpdateEnvironment { key, name } => {
                check_env_fields(key, name)?;
                let env = self.env_mut(key)?;
                env.name = name.clone();
                Ok(env.outcome())
            }
            Command::DeleteEnvironment { key, force } => {
                let env = self.env(key)?;
                let flags = env.draft_flags.len().max(env.current_flags().len());
                let segments = env.draft_segments.len().max(env.current_segments().len());
                if !force && (flags > 0 || segments > 0) {
                    return Err(CommandError::EnvironmentNotEmpty {
                        env: key.clone(),
                        flags,
                        segments,
                    });
                }
                self.environments.remove(key);
                self.access.forget_environment(key);
                Ok(Outcome {
                    env: key.clone(),
                    ..Outcome::default()
                })
            }
            Command::UpsertFlag {
                env,
                flag,
                expected_revision,
            } => self
                .env_mut(env)?
                .upsert_flag(flag, *expected_revision, at, who),
            Command::DeleteFlag {
                env,
                key,
                expected_revision,
            } => self.env_mut(env)?.delete_flag(key, *expected_revision),
            Command::UpsertSegment {
                env,
                segment,
                expected_revision,
            } => self
                .env_mut(env)?
                .upsert_segment(segment, *expected_revision, at, who),
            Command::DeleteSegment {
                env,
                key,
                expected_revision,
            } => self.env_mut(env)?.delete_segment(key, *expected_revision),
            Command::Publish {
                env,
                message,
                flags,
                segments,
            } => {
                check_message(message)?;
                self.env_mut(env)?
                    .publish(message, flags.as_deref(), segments.as_deref(), at, who)
            }
            Command::Rollback {
                env,
                to_version,
                message,
            } => {
                check_message(message)?;
                self.env_mut(env)?.rollback(*to_version, message, at, who)
            }
            Command::Kill { env, flag, message } => {
                check_message(message)?;
                self.env_mut(env)?.kill(flag, message, at, who)
            }
            Command::Restore { env, flag, message } => {
                check_message(message)?;
                self.env_mut(env)?.restore(flag, message, at, who)
            }
            Command::Configure(change) => self.configure(change),
            Command::PutRole {
                name,
                permissions,
                environments,
            } => self
                .access
                .put_role(name, permissions, environments, at, who),
            Command::DeleteRole { name } => self.access.delete_role(name),
            Command::PutBinding { subject, roles } => {
                self.access.put_binding(subject, roles, at, who)
            }
            Command::DeleteBinding { subject } => self.access.delete_binding(subject),
            Command::CreateSdkKey(key) => {
                self.env(&key.env)?;
                self.access.create_sdk_key(key, at, who)
            }
            Command::RevokeSdkKey { env, id } => self.access.revoke_sdk_key(env, id, at, who),
            Command::Record { action, target } => {
                if action.is_empty() || action.len() > MAX_TOKEN_LEN {
                    return Err(invalid(
                        "/action",
                        format!("must be 1 to {MAX_TOKEN_LEN} bytes"),
                    ));
                }
                if target.len() > MAX_TOKEN_LEN {
                    return Err(invalid(
                        "/target",
                        format!("longer than {MAX_TOKEN_LEN} bytes"),
                    ));
                }
                Ok(Outcome::default())
            }
        };
        result.inspect(|outcome| {
            // Versions beyond the retention are dropped after every new one.
            let keep = self.settings.version_retention;
            if outcome.env_version > 0
                && let Some(e) = self.environments.get_mut(&outcome.env)
            {
                e.prune_versions(keep);
            }
        })
    }

    fn configure(&mut self, change: &SettingsChange) -> Result<Outcome, CommandError> {
        change.check()?;
        let s = &mut self.settings;
        if let Some(w) = change.idempotency_window_ms {
            s.idempotency_window_ms = w;
        }
        if let Some(n) = change.audit_retention_entries {
            s.audit_retention_entries = n;
        }
        if let Some(ms) = change.audit_retention_ms {
            s.audit_retention_ms = ms;
        }
        if let Some(r) = change.version_retention {
            s.version_retention = r;
            for e in self.environments.values_mut() {
                e.prune_versions(r);
            }
        }
        Ok(Outcome::default())
    }

    /// An environment by key.
    pub fn env(&self, key: &str) -> Result<&EnvState, CommandError> {
        self.environments
            .get(key)
            .ok_or_else(|| CommandError::EnvironmentNotFound {
                env: key.to_owned(),
            })
    }

    fn env_mut(&mut self, key: &str) -> Result<&mut EnvState, CommandError> {
        self.environments
            .get_mut(key)
            .ok_or_else(|| CommandError::EnvironmentNotFound {
                env: key.to_owned(),
            })
    }

    /// SHA-256 of the canonical JSON of the whole state. Hashed from the
    /// JSON text as it is canonicalized, without a tree of the state (which
    /// would take several times the state's size).
    pub fn digest(&self) -> String {
        serde_json::to_string(self)
            .ok()
            .and_then(|text| crate::jcs::canonical_sha256_of_text(&text, None).ok())
            .unwrap_or_default()
    }
}

fn check_env_fields(key: &str, name: &str) -> Result<(), CommandError> {
    let mut issues = Vec::new();
    if let Some(p) = check_key(key) {
        issues.push(Issue::new("/key", p));
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        issues.push(Issue::new(
            "/name",
            format!("must be 1 to {MAX_NAME_LEN} bytes"),
        ));
    }
    ValidationError::check(issues).map_err(CommandError::Invalid)
}

impl IdempotencyLog {
    fn remember(
        &mut self,
        cmd: &CommandEnvelope,
        command: CommandDigest,
        outcome: &Outcome,
        window: i64,
    ) {
        let horizon = cmd.at_ms.saturating_sub(window);
        while let Some(oldest) = self.order.front() {
            let expired = self.entries.get(oldest).is_none_or(|r| r.at_ms < horizon);
            if !expired && self.order.len() < IDEMPOTENCY_MAX_KEYS {
                break;
            }
            if let Some(k) = self.order.pop_front() {
                self.entries.remove(&k);
            }
        }
        let key: &str = &cmd.idempotency_key;
        if self.entries.contains_key(key) {
            // An expired key used again: drop its old place in the order, so
            // that each key is in `order` once.
            self.order.retain(|k| &**k != key);
        }
        let key: Arc<str> = Arc::from(key);
        self.order.push_back(key.clone());
        self.entries.insert(
            key,
            Recorded {
                at_ms: cmd.at_ms,
                command,
                outcome: outcome_text::encode(outcome),
            },
        );
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn check_revision(key: &str, expected: Option<u64>, actual: u64) -> Result<(), CommandError> {
    match expected {
        Some(e) if e != actual => Err(CommandError::RevisionConflict {
            key: key.to_owned(),
            expected: e,
            actual,
        }),
        _ => Ok(()),
    }
}

fn segment_refs(flag: &Flag) -> impl Iterator<Item = &str> {
    flag.rules
        .iter()
        .flat_map(|r| r.clauses.iter())
        .filter(|c| c.operator == Operator::InSegment)
        .flat_map(|c| c.values.iter().filter_map(|v| v.as_str()))
}

impl EnvState {
    fn new(key: &str, name: &str, at_ms: i64) -> EnvState {
        EnvState {
            key: key.to_owned(),
            name: name.to_owned(),
            created_at_ms: at_ms,
            revision_seq: 0,
            draft_flags: BTreeMap::new(),
            draft_segments: BTreeMap::new(),
            versions: Vec::new(),
            published_flags: BTreeMap::new(),
            published_segments: BTreeMap::new(),
            flag_revisions: BTreeMap::new(),
            segment_revisions: BTreeMap::new(),
            kills: BTreeMap::new(),
            dependents: PrerequisiteIndex(Some(BTreeSet::new())),
        }
    }

    /// Draft flags that have prerequisites, rebuilding the index if needed.
    fn flags_with_prerequisites(&mut self) -> &BTreeSet<String> {
        let drafts = &self.draft_flags;
        self.dependents.0.get_or_insert_with(|| {
            drafts
                .values()
                .filter(|d| !d.item.prerequisites.is_empty())
                .map(|d| d.item.key.clone())
                .collect()
        })
    }

    /// Keeps the prerequisite index in step with a changed draft.
    fn index_prerequisites(&mut self, key: &str) {
        let has = self
            .draft_flags
            .get(key)
            .is_some_and(|d| !d.item.prerequisites.is_empty());
        if let Some(set) = self.dependents.0.as_mut() {
            if has {
                set.insert(key.to_owned());
            } else {
                set.remove(key);
            }
        }
    }

    /// The environment's key and name.
    pub fn environment(&self) -> Environment {
        Environment {
            key: self.key.clone(),
            name: self.name.clone(),
        }
    }

    /// The current published version; 0 before the first publish.
    pub fn version(&self) -> u64 {
        self.versions.last().map_or(0, |v| v.version)
    }

    /// A retained version by number.
    pub fn version_record(&self, version: u64) -> Option<&VersionRecord> {
        let first = self.versions.first()?.version;
        let i = usize::try_from(version.checked_sub(first)?).ok()?;
        self.versions.get(i)
    }

    /// The content of a retained version (empty for version 0): the
    /// current content with the changes of every later version undone.
    pub fn version_content(&self, version: u64) -> Option<VersionContent> {
        if version == 0 {
            return Some(VersionContent::default());
        }
        self.version_record(version)?;
        let mut c = VersionContent {
            flags: self.published_flags.clone(),
            segments: self.published_segments.clone(),
        };
        let mut scratch = BTreeSet::new();
        for r in self
            .versions
            .iter()
            .rev()
            .take_while(|r| r.version > version)
        {
            undo(
                &mut c.flags,
                &r.flag_changes,
                &self.published_flags,
                &mut scratch,
            );
            undo(
                &mut c.segments,
                &r.segment_changes,
                &self.published_segments,
                &mut scratch,
            );
        }
        Some(c)
    }

    /// A published revision of a flag.
    pub fn flag_revision(&self, key: &str, rev: u64) -> Option<&Flag> {
        self.flag_revisions.get(key)?.get(&rev).map(|b| &**b)
    }

    /// A published revision of a segment.
    pub fn segment_revision(&self, key: &str, rev: u64) -> Option<&Segment> {
        self.segment_revisions.get(key)?.get(&rev).map(|b| &**b)
    }

    /// The flags of a version's content as they were published (kill
    /// switches as they were in force when it was made are not replayed:
    /// the content is the versioned flags, and `killed` lists the kills in
    /// force now).
    pub fn flags_of(&self, content: &VersionContent) -> Vec<Flag> {
        content
            .flags
            .iter()
            .filter_map(|(k, rev)| self.flag_revision(k, *rev).cloned())
            .collect()
    }

    /// The segments of a version's content.
    pub fn segments_of(&self, content: &VersionContent) -> Vec<Segment> {
        content
            .segments
            .iter()
            .filter_map(|(k, rev)| self.segment_revision(k, *rev).cloned())
            .collect()
    }

    /// Drops the oldest versions beyond `keep`, and the published revisions
    /// no retained version refers to. Runs in bulk (once 10% over), so a
    /// publish pays for the sweep only now and then.
    fn prune_versions(&mut self, keep: u64) {
        let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
        let slack = keep / 10;
        if self.versions.len() <= keep.saturating_add(slack) {
            return;
        }
        let excess = self.versions.len() - keep;
        self.versions.drain(..excess);
        // The revisions a retained version serves: the current ones, and
        // those that later versions changed away from (undoing the changes
        // of version i gives version i - 1; the oldest retained version's
        // own changes lead to a dropped one).
        let mut flags: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        let mut segments: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        for (k, r) in &self.published_flags {
            flags.entry(k).or_default().insert(*r);
        }
        for (k, r) in &self.published_segments {
            segments.entry(k).or_default().insert(*r);
        }
        for v in self.versions.iter().skip(1) {
            for (k, RevisionChange(before, _)) in &v.flag_changes {
                if let Some(r) = before {
                    flags.entry(k).or_default().insert(*r);
                }
            }
            for (k, RevisionChange(before, _)) in &v.segment_changes {
                if let Some(r) = before {
                    segments.entry(k).or_default().insert(*r);
                }
            }
        }
        let flags: BTreeMap<String, BTreeSet<u64>> =
            flags.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let segments: BTreeMap<String, BTreeSet<u64>> = segments
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        self.flag_revisions.retain(|k, revs| {
            let live = flags.get(k);
            revs.retain(|r, _| live.is_some_and(|l| l.contains(&r)));
            !revs.is_empty()
        });
        self.segment_revisions.retain(|k, revs| {
            let live = segments.get(k);
            revs.retain(|r, _| live.is_some_and(|l| l.contains(&r)));
            !revs.is_empty()
        });
    }

    fn current(&self) -> Option<&VersionRecord> {
        self.versions.last()
    }

    /// Published flag key → revision.
    pub fn current_flags(&self) -> BTreeMap<String, u64> {
        self.published_flags.clone()
    }

    /// Published segment key → revision.
    pub fn current_segments(&self) -> BTreeMap<String, u64> {
        self.published_segments.clone()
    }

    /// The published flag with kill switches applied.
    pub fn published_flag(&self, key: &str) -> Option<Flag> {
        self.published_flag_shared(key).map(Arc::unwrap_or_clone)
    }

    /// [`EnvState::published_flag`] without a copy, unless the flag is
    /// killed (the shared revision is then copied and marked).
    pub fn published_flag_shared(&self, key: &str) -> Option<Arc<Flag>> {
        let rev = *self.published_flags.get(key)?;
        let shared = self.flag_revisions.get(key)?.get(&rev)?;
        if !self.kills.contains_key(key) {
            return Some(shared.clone());
        }
        let mut flag = (**shared).clone();
        flag.enabled = false;
        flag.killed = true;
        Some(Arc::new(flag))
    }

    /// The published segment, shared.
    pub fn published_segment_shared(&self, key: &str) -> Option<Arc<Segment>> {
        let rev = *self.published_segments.get(key)?;
        self.segment_revisions.get(key)?.get(&rev).cloned()
    }

    /// The published segment.
    pub fn published_segment(&self, key: &str) -> Option<Segment> {
        let rev = *self.published_segments.get(key)?;
        self.segment_revision(key, rev).cloned()
    }

    /// True when the draft segment differs from what is published (or only
    /// one exists).
    pub fn has_unpublished_segment_changes(&self, key: &str) -> bool {
        let draft = self.draft_segments.get(key).map(|d| d.item.version);
        let published = self.published_segments.get(key).copied();
        draft != published
    }

    /// True when the draft differs from what is published (or only one exists).
    pub fn has_unpublished_changes(&self, key: &str) -> bool {
        let draft = self.draft_flags.get(key).map(|d| d.item.version);
        let published = self.published_flags.get(key).copied();
        draft != published
    }

    /// The published content as served to SDKs.
    pub fn snapshot(&self) -> Snapshot {
        let Some(cur) = self.current() else {
            return Snapshot::new(&self.key, 0, None, Vec::new(), Vec::new());
        };
        let flags = self
            .published_flags
            .keys()
            .filter_map(|k| self.published_flag(k))
            .collect();
        let segments = self
            .published_segments
            .iter()
            .filter_map(|(k, rev)| self.segment_revision(k, *rev).cloned())
            .collect();
        Snapshot::new(&self.key, cur.version, Some(cur.at_ms), flags, segments)
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            env: self.key.clone(),
            env_version: self.version(),
            ..Outcome::default()
        }
    }

    fn next_revision(&mut self) -> u64 {
        self.revision_seq += 1;
        self.revision_seq
    }

    fn upsert_flag(
        &mut self,
        flag: &Flag,
        expected: Option<u64>,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        let mut flag = flag.content();
        flag.normalize();
        if let Some(unchanged) = precheck(&self.draft_flags, &flag, expected, MAX_FLAGS, "flags")? {
            return Ok(self.saved(unchanged));
        }
        let mut issues = validate_flag(&flag, &|k| self.draft_segments.contains_key(k), &|k| {
            self.draft_flags
                .get(k)
                .map(|d| d.item.variants.iter().map(|v| v.key.clone()).collect())
        });
        // Dependents must still find the variants they require.
        self.flags_with_prerequisites();
        let with_prerequisites = self.dependents.0.iter().flatten();
        for (k, d) in with_prerequisites.filter_map(|k| self.draft_flags.get_key_value(k)) {
            for (i, p) in d.item.prerequisites.iter().enumerate() {
                if p.flag == flag.key && flag.variant(&p.variant).is_none() {
                    issues.push(Issue::new(
                        "/variants",
                        format!(
                            "flag {k:?} requires variant {:?} (its /prerequisites/{i})",
                            p.variant
                        ),
                    ));
                }
            }
        }
        if issues.is_empty() && !flag.prerequisites.is_empty() {
            let drafts = self
                .draft_flags
                .values()
                .map(|d| &*d.item)
                .filter(|f| f.key != flag.key)
                .chain(std::iter::once(&flag));
            issues.extend(check_prerequisite_graph(drafts));
        }
        ValidationError::check(issues)?;
        let rev = self.next_revision();
        let key = flag.key.clone();
        let created = !self.draft_flags.contains_key(&key);
        store(&mut self.draft_flags, flag, rev, at, who);
        self.index_prerequisites(&key);
        Ok(Outcome {
            created,
            ..self.saved(rev)
        })
    }

    fn delete_flag(&mut self, key: &str, expected: Option<u64>) -> Result<Outcome, CommandError> {
        self.flags_with_prerequisites();
        let used_by = self
            .dependents
            .0
            .iter()
            .flatten()
            .filter_map(|k| self.draft_flags.get(k))
            .filter(|d| d.item.prerequisites.iter().any(|p| p.flag == key))
            .map(|d| d.item.key.clone())
            .collect();
        let missing = CommandError::FlagNotFound {
            env: self.key.clone(),
            key: key.to_owned(),
        };
        remove(&mut self.draft_flags, key, expected, used_by, missing)?;
        self.index_prerequisites(key);
        Ok(self.outcome())
    }

    fn upsert_segment(
        &mut self,
        segment: &Segment,
        expected: Option<u64>,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        let segment = segment.content();
        if let Some(unchanged) = precheck(
            &self.draft_segments,
            &segment,
            expected,
            MAX_SEGMENTS,
            "segments",
        )? {
            return Ok(self.saved(unchanged));
        }
        ValidationError::check(validate_segment(&segment))?;
        let rev = self.next_revision();
        let created = !self.draft_segments.contains_key(segment.key.as_str());
        store(&mut self.draft_segments, segment, rev, at, who);
        Ok(Outcome {
            created,
            ..self.saved(rev)
        })
    }

    fn delete_segment(
        &mut self,
        key: &str,
        expected: Option<u64>,
    ) -> Result<Outcome, CommandError> {
        let used_by = self
            .draft_flags
            .values()
            .filter(|d| segment_refs(&d.item).any(|s| s == key))
            .map(|d| d.item.key.clone())
            .collect();
        let missing = CommandError::SegmentNotFound {
            env: self.key.clone(),
            key: key.to_owned(),
        };
        remove(&mut self.draft_segments, key, expected, used_by, missing)?;
        Ok(self.outcome())
    }

    /// The outcome of a draft write at revision `rev`.
    fn saved(&self, rev: u64) -> Outcome {
        Outcome {
            revision: Some(rev),
            ..self.outcome()
        }
    }

    fn publish(
        &mut self,
        message: &str,
        only_flags: Option<&[String]>,
        only_segments: Option<&[String]>,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        let everything = only_flags.is_none() && only_segments.is_none();
        let mut flags = self.current_flags();
        let mut segments = self.current_segments();
        let flag_keys: Vec<String> = match only_flags {
            Some(keys) => keys.to_vec(),
            None if everything => self
                .draft_flags
                .keys()
                .chain(flags.keys())
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let segment_keys: Vec<String> = match only_segments {
            Some(keys) => keys.to_vec(),
            None if everything => self
                .draft_segments
                .keys()
                .chain(segments.keys())
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        for k in &flag_keys {
            match self.draft_flags.get(k) {
                Some(d) => {
                    flags.insert(k.clone(), d.item.version);
                }
                None if flags.remove(k).is_some() => {}
                None => {
                    return Err(CommandError::FlagNotFound {
                        env: self.key.clone(),
                        key: k.clone(),
                    });
                }
            }
        }
        for k in &segment_keys {
            match self.draft_segments.get(k) {
                Some(d) => {
                    segments.insert(k.clone(), d.item.version);
                }
                None if segments.remove(k).is_some() => {}
                None => {
                    return Err(CommandError::SegmentNotFound {
                        env: self.key.clone(),
                        key: k.clone(),
                    });
                }
            }
        }
        let resolve_flag = |k: &String, rev: &u64| -> Option<Arc<Flag>> {
            match self.draft_flags.get(k) {
                Some(d) if d.item.version == *rev => Some(d.item.clone()),
                _ => self.flag_revisions.get(k)?.get(rev).cloned(),
            }
        };
        let resolve_segment = |k: &String, rev: &u64| -> Option<Arc<Segment>> {
            match self.draft_segments.get(k) {
                Some(d) if d.item.version == *rev => Some(d.item.clone()),
                _ => self.segment_revisions.get(k)?.get(rev).cloned(),
            }
        };
        let flag_items: Vec<Arc<Flag>> = flags
            .iter()
            .filter_map(|(k, r)| resolve_flag(k, r))
            .collect();
        let segment_items: Vec<Arc<Segment>> = segments
            .iter()
            .filter_map(|(k, r)| resolve_segment(k, r))
            .collect();
        {
            let flags: Vec<&Flag> = flag_items.iter().map(|f| &**f).collect();
            let segments: Vec<&Segment> = segment_items.iter().map(|s| &**s).collect();
            FlagSet::compile_refs(&self.key, 0, &flags, &segments)?;
        }
        for f in flag_items {
            self.flag_revisions
                .entry(f.key.clone())
                .or_default()
                .insert_if_absent(f.version, f);
        }
        for s in segment_items {
            self.segment_revisions
                .entry(s.key.clone())
                .or_default()
                .insert_if_absent(s.version, s);
        }
        self.push_version(flags, segments, VersionAction::Publish, message, at, who)
    }

    /// Appends a version with new content; refuses one that changes nothing.
    fn push_version(
        &mut self,
        flags: BTreeMap<String, u64>,
        segments: BTreeMap<String, u64>,
        action: VersionAction,
        message: &str,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        let changed_flags = changed_keys(&self.current_flags(), &flags);
        let changed_segments = changed_keys(&self.current_segments(), &segments);
        if changed_flags.is_empty() && changed_segments.is_empty() {
            return Err(CommandError::NoChange {
                env: self.key.clone(),
            });
        }
        self.record_version(
            flags,
            segments,
            action,
            changed_flags,
            changed_segments,
            message,
            at,
            who,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn record_version(
        &mut self,
        flags: BTreeMap<String, u64>,
        segments: BTreeMap<String, u64>,
        action: VersionAction,
        changed_flags: Vec<String>,
        changed_segments: Vec<String>,
        message: &str,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        let version = self.version() + 1;
        let flag_changes = revision_changes(&self.published_flags, &flags);
        let segment_changes = revision_changes(&self.published_segments, &segments);
        self.versions.push(VersionRecord {
            version,
            at_ms: at,
            author: who.to_owned(),
            message: message.to_owned(),
            action,
            changed_flags: changed_flags.clone(),
            changed_segments: changed_segments.clone(),
            flag_changes,
            segment_changes,
        });
        self.published_flags = flags;
        self.published_segments = segments;
        Ok(Outcome {
            env: self.key.clone(),
            env_version: version,
            revision: None,
            changed_flags,
            changed_segments,
            created: false,
            replayed: false,
        })
    }

    fn rollback(
        &mut self,
        to: Option<u64>,
        message: &str,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        let to = match to {
            Some(v) => v,
            // The latest version whose content differs from the current one
            // (kill and restore versions share their predecessor's content).
            None => self.previous_content_version(),
        };
        let content = (to > 0).then(|| self.version_content(to)).flatten();
        let Some(VersionContent { flags, segments }) = content else {
            return Err(CommandError::VersionNotFound {
                env: self.key.clone(),
                version: to,
            });
        };
        self.push_version(
            flags,
            segments,
            VersionAction::Rollback { to },
            message,
            at,
            who,
        )
    }

    /// The latest retained version whose content differs from the current
    /// one (kill and restore versions share their predecessor's content);
    /// 0 when there is none.
    fn previous_content_version(&self) -> u64 {
        let mut flags = self.published_flags.clone();
        let mut segments = self.published_segments.clone();
        let mut differs = BTreeSet::new();
        let mut differs_segments = BTreeSet::new();
        for pair in self.versions.windows(2).rev() {
            let (earlier, later) = (&pair[0], &pair[1]);
            undo(
                &mut flags,
                &later.flag_changes,
                &self.published_flags,
                &mut differs,
            );
            undo(
                &mut segments,
                &later.segment_changes,
                &self.published_segments,
                &mut differs_segments,
            );
            if !differs.is_empty() || !differs_segments.is_empty() {
                return earlier.version;
            }
        }
        0
    }

    fn kill(
        &mut self,
        flag: &str,
        message: &str,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        if !self.current_flags().contains_key(flag) {
            return Err(CommandError::FlagNotFound {
                env: self.key.clone(),
                key: flag.to_owned(),
            });
        }
        if self.kills.contains_key(flag) {
            return Ok(self.outcome());
        }
        let version = self.version() + 1;
        self.kills.insert(
            flag.to_owned(),
            KillRecord {
                at_ms: at,
                by: who.to_owned(),
                version,
            },
        );
        let action = VersionAction::Kill {
            flag: flag.to_owned(),
        };
        self.record_version(
            self.current_flags(),
            self.current_segments(),
            action,
            vec![flag.to_owned()],
            Vec::new(),
            message,
            at,
            who,
        )
    }

    fn restore(
        &mut self,
        flag: &str,
        message: &str,
        at: i64,
        who: &str,
    ) -> Result<Outcome, CommandError> {
        if self.kills.remove(flag).is_none() {
            if self.current_flags().contains_key(flag) {
                return Ok(self.outcome());
            }
            return Err(CommandError::FlagNotFound {
                env: self.key.clone(),
                key: flag.to_owned(),
            });
        }
        let action = VersionAction::Restore {
            flag: flag.to_owned(),
        };
        self.record_version(
            self.current_flags(),
            self.current_segments(),
            action,
            vec![flag.to_owned()],
            Vec::new(),
            message,
            at,
            who,
        )
    }
}

/// A flag or segment as kept in the drafts.
trait DraftItem: Clone + PartialEq {
    fn key(&self) -> &str;
    fn revision(&self) -> u64;
    fn set_revision(&mut self, rev: u64);
    /// Whether the two are equal but for the fields the control plane sets.
    fn same_content(&self, other: &Self) -> bool;
}

impl DraftItem for Flag {
    fn key(&self) -> &str {
        &self.key
    }
    fn revision(&self) -> u64 {
        self.version
    }
    fn set_revision(&mut self, rev: u64) {
        self.version = rev;
    }
    fn same_content(&self, other: &Self) -> bool {
        Flag::same_content(self, other)
    }
}

impl DraftItem for Segment {
    fn key(&self) -> &str {
        &self.key
    }
    fn revision(&self) -> u64 {
        self.version
    }
    fn set_revision(&mut self, rev: u64) {
        self.version = rev;
    }
    fn same_content(&self, other: &Self) -> bool {
        Segment::same_content(self, other)
    }
}

/// Checks a draft write: the expected revision, and the per-environment
/// count for a new key. `Some(rev)` when the item equals the draft at `rev`,
/// so nothing needs writing.
fn precheck<T: DraftItem>(
    drafts: &BTreeMap<String, Draft<T>>,
    item: &T,
    expected: Option<u64>,
    limit: usize,
    what: &str,
) -> Result<Option<u64>, CommandError> {
    let existing = drafts.get(item.key());
    check_revision(
        item.key(),
        expected,
        existing.map_or(0, |d| d.item.revision()),
    )?;
    match existing {
        Some(d) if d.item.same_content(item) => Ok(Some(d.item.revision())),
        Some(_) => Ok(None),
        None if drafts.len() >= limit => Err(invalid(
            "/key",
            format!("the environment already has {limit} {what}"),
        )),
        None => Ok(None),
    }
}

fn store<T: DraftItem>(
    drafts: &mut BTreeMap<String, Draft<T>>,
    mut item: T,
    rev: u64,
    at: i64,
    who: &str,
) {
    item.set_revision(rev);
    drafts.insert(
        item.key().to_owned(),
        Draft {
            item: Arc::new(item),
            updated_at_ms: at,
            updated_by: who.to_owned(),
        },
    );
}

/// Deletes a draft unless its revision differs from `expected` or other
/// drafts use it.
fn remove<T: DraftItem>(
    drafts: &mut BTreeMap<String, Draft<T>>,
    key: &str,
    expected: Option<u64>,
    used_by: Vec<String>,
    missing: CommandError,
) -> Result<(), CommandError> {
    let Some(d) = drafts.get(key) else {
        return Err(missing);
    };
    check_revision(key, expected, d.item.revision())?;
    if !used_by.is_empty() {
        return Err(CommandError::InUse {
            key: key.to_owned(),
            used_by,
        });
    }
    drafts.remove(key);
    Ok(())
}

fn changed_keys(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_digest_is_the_hex_sha256_of_its_canonical_json() {
        let command = Command::CreateEnvironment {
            key: "prod".into(),
            name: "Production \u{e9}".into(),
        };
        let digest = CommandDigest::of(&command);
        let value = serde_json::to_value(&command).unwrap();
        let text = serde_json::to_string(&digest).unwrap();
        assert_eq!(
            text,
            format!("\"{}\"", crate::snapshot::canonical_sha256(&value))
        );
        assert_eq!(
            serde_json::from_str::<CommandDigest>(&text).unwrap(),
            digest
        );
        let upper = format!("\"{}\"", "A".repeat(64));
        let not_hex = format!("\"g{}", &text[2..]);
        for bad in ["\"abc\"", upper.as_str(), not_hex.as_str(), "12"] {
            assert!(serde_json::from_str::<CommandDigest>(bad).is_err(), "{bad}");
        }
    }
}

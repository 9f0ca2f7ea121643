//! Commands: the writes Raft replicates, with their outcomes and errors.
//!
//! A command is applied by [`crate::state::State::apply`], a pure function of
//! the state and the command: the proposer stamps the time and author, apply
//! never reads a clock, so every replica reaches the same state.

use serde::{Deserialize, Serialize};

use crate::access::{Environments, Permission, SdkKeyRequest};
use crate::audit::AuditContext;
use crate::issue::ValidationError;
use crate::model::{Flag, Segment};
use crate::state::SettingsChange;

/// A command with the metadata every write carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// A retried command with the same key applies once and gets the first
    /// answer again.
    pub idempotency_key: String,
    /// Who asked (from the authenticator); becomes the author of versions.
    pub actor: String,
    /// Unix milliseconds, stamped by the proposer.
    pub at_ms: i64,
    pub command: Command,
    /// The permission and request id for the audit entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditContext>,
}

/// The replicated writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    CreateEnvironment {
        key: String,
        name: String,
    },
    UpdateEnvironment {
        key: String,
        name: String,
    },
    /// Refused for an environment with flags or segments unless `force`.
    DeleteEnvironment {
        key: String,
        #[serde(default)]
        force: bool,
    },
    /// Creates or replaces a draft flag. `expected_revision`: `Some(0)` means
    /// "must not exist yet", `Some(n)` "must be at revision n".
    UpsertFlag {
        env: String,
        flag: Flag,
        #[serde(default)]
        expected_revision: Option<u64>,
    },
    DeleteFlag {
        env: String,
        key: String,
        #[serde(default)]
        expected_revision: Option<u64>,
    },
    UpsertSegment {
        env: String,
        segment: Segment,
        #[serde(default)]
        expected_revision: Option<u64>,
    },
    DeleteSegment {
        env: String,
        key: String,
        #[serde(default)]
        expected_revision: Option<u64>,
    },
    /// Drafts become a new immutable version. With `flags` and/or `segments`
    /// only those keys are published (a key deleted from the drafts is
    /// removed); with neither, everything is.
    Publish {
        env: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        flags: Option<Vec<String>>,
        #[serde(default)]
        segments: Option<Vec<String>>,
    },
    /// A new version whose content equals version `to_version` (the previous
    /// version when absent). Kill switches stay in force.
    Rollback {
        env: String,
        #[serde(default)]
        to_version: Option<u64>,
        #[serde(default)]
        message: String,
    },
    /// Turns a published flag off at once, as a new version, until restored.
    Kill {
        env: String,
        flag: String,
        #[serde(default)]
        message: String,
    },
    /// Lifts a kill switch, as a new version.
    Restore {
        env: String,
        flag: String,
        #[serde(default)]
        message: String,
    },
    /// Changes the cluster-wide retention settings; absent fields keep
    /// their value.
    Configure(SettingsChange),
    /// Creates or replaces a role.
    PutRole {
        name: String,
        permissions: std::collections::BTreeSet<Permission>,
        environments: Environments,
    },
    /// Refused while a binding names the role.
    DeleteRole {
        name: String,
    },
    /// Creates or replaces the roles bound to a subject.
    PutBinding {
        subject: String,
        roles: std::collections::BTreeSet<String>,
    },
    DeleteBinding {
        subject: String,
    },
    /// Stores a new SDK key's id and hash (never the key).
    CreateSdkKey(SdkKeyRequest),
    RevokeSdkKey {
        env: String,
        id: String,
    },
    /// Changes nothing but the audit log: records a change made outside
    /// the replicated state (a membership change).
    Record {
        action: String,
        target: String,
    },
}

impl Command {
    /// The environment the command targets.
    pub fn env(&self) -> &str {
        match self {
            Command::CreateEnvironment { key, .. }
            | Command::UpdateEnvironment { key, .. }
            | Command::DeleteEnvironment { key, .. } => key,
            Command::UpsertFlag { env, .. }
            | Command::DeleteFlag { env, .. }
            | Command::UpsertSegment { env, .. }
            | Command::DeleteSegment { env, .. }
            | Command::Publish { env, .. }
            | Command::Rollback { env, .. }
            | Command::Kill { env, .. }
            | Command::Restore { env, .. }
            | Command::RevokeSdkKey { env, .. } => env,
            Command::CreateSdkKey(key) => &key.env,
            Command::Configure(_)
            | Command::PutRole { .. }
            | Command::DeleteRole { .. }
            | Command::PutBinding { .. }
            | Command::DeleteBinding { .. }
            | Command::Record { .. } => "",
        }
    }

    /// A stable name for logs, audit and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateEnvironment { .. } => "create_environment",
            Command::UpdateEnvironment { .. } => "update_environment",
            Command::DeleteEnvironment { .. } => "delete_environment",
            Command::UpsertFlag { .. } => "upsert_flag",
            Command::DeleteFlag { .. } => "delete_flag",
            Command::UpsertSegment { .. } => "upsert_segment",
            Command::DeleteSegment { .. } => "delete_segment",
            Command::Publish { .. } => "publish",
            Command::Rollback { .. } => "rollback",
            Command::Kill { .. } => "kill",
            Command::Restore { .. } => "restore",
            Command::Configure(_) => "configure",
            Command::PutRole { .. } => "put_role",
            Command::DeleteRole { .. } => "delete_role",
            Command::PutBinding { .. } => "put_binding",
            Command::DeleteBinding { .. } => "delete_binding",
            Command::CreateSdkKey(_) => "create_sdk_key",
            Command::RevokeSdkKey { .. } => "revoke_sdk_key",
            Command::Record { .. } => "record",
        }
    }
}

/// What an applied command did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Outcome {
    pub env: String,
    /// The environment's published version after the command.
    pub env_version: u64,
    /// The draft revision written, for flag and segment writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Flags whose published state changed (publish, rollback, kill, restore).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_flags: Vec<String>,
    /// Segments whose published state changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_segments: Vec<String>,
    /// True when a flag or segment write created the draft (it did not
    /// exist before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// True when the command was a retry answered from the idempotency log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// Why a command was refused. Refusals are deterministic and replicated like
/// successes, so a retry gets the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum CommandError {
    #[error("environment {env:?} not found")]
    EnvironmentNotFound { env: String },
    #[error("environment {env:?} already exists")]
    EnvironmentExists { env: String },
    #[error("environment {env:?} has {flags} flag(s) and {segments} segment(s); delete with force")]
    EnvironmentNotEmpty {
        env: String,
        flags: usize,
        segments: usize,
    },
    #[error("flag {key:?} not found in environment {env:?}")]
    FlagNotFound { env: String, key: String },
    #[error("segment {key:?} not found in environment {env:?}")]
    SegmentNotFound { env: String, key: String },
    #[error("role {name:?} not found")]
    RoleNotFound { name: String },
    #[error("no binding for subject {subject:?}")]
    BindingNotFound { subject: String },
    #[error("SDK key {id:?} not found in environment {env:?}")]
    SdkKeyNotFound { env: String, id: String },
    #[error("version {version} of environment {env:?} not found")]
    VersionNotFound { env: String, version: u64 },
    #[error("{key:?} is at revision {actual}, not the expected {expected}")]
    RevisionConflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{key:?} is used by {used_by:?}")]
    InUse { key: String, used_by: Vec<String> },
    #[error("nothing to publish in environment {env:?}: the published state would not change")]
    NoChange { env: String },
    #[error("idempotency key {key:?} was already used for a different command")]
    IdempotencyKeyReused { key: String },
    #[error("invalid: {0}")]
    Invalid(ValidationError),
}

impl CommandError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::EnvironmentNotFound { .. } => "environment_not_found",
            CommandError::EnvironmentExists { .. } => "environment_exists",
            CommandError::EnvironmentNotEmpty { .. } => "environment_not_empty",
            CommandError::FlagNotFound { .. } => "flag_not_found",
            CommandError::SegmentNotFound { .. } => "segment_not_found",
            CommandError::RoleNotFound { .. } => "role_not_found",
            CommandError::BindingNotFound { .. } => "binding_not_found",
            CommandError::SdkKeyNotFound { .. } => "sdk_key_not_found",
            CommandError::VersionNotFound { .. } => "version_not_found",
            CommandError::RevisionConflict { .. } => "revision_conflict",
            CommandError::InUse { .. } => "in_use",
            CommandError::NoChange { .. } => "no_change",
            CommandError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            CommandError::Invalid(_) => "invalid",
        }
    }
}

impl From<ValidationError> for CommandError {
    fn from(e: ValidationError) -> Self {
        CommandError::Invalid(e)
    }
}

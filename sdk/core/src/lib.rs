//! pulseplane-core: the flag domain shared by every node and every SDK.
//!
//! Flags, segments and environments ([`model`]), their validation and
//! compiled form ([`compile`]), deterministic evaluation ([`eval`]) with
//! normative bucketing ([`bucket`]), the commands Raft replicates and the
//! pure state transitions they drive ([`command`], [`state`]), and the
//! snapshot wire format SDKs download ([`snapshot`]).
//!
//! Layout:
//! - `model`: serde types of the JSON wire format
//! - `context`: the evaluation context
//! - `limits`, `issue`: size limits and validation problems
//! - `compile`: validation and the compiled [`FlagSet`]
//! - `eval`: typed evaluation, reasons and error codes
//! - `bucket`, `murmur3`: rollout bucketing
//! - `jcs`, `time`: RFC 8785 canonical JSON, RFC 3339 times
//! - `snapshot`: the per-environment snapshot and its digest
//! - `command`, `state`: replicated commands and state transitions
//! - `access`: permissions, roles, bindings and SDK keys
//! - `audit`: the replicated audit log
//! - `diff`: structural JSON diffs
//! - `usage`: per-variant usage counters for SDKs
//! - `text`: short-string comparison and the flag-key index (hot path)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod audit;
pub mod bucket;
pub mod command;
pub mod compile;
pub mod context;
pub mod diff;
pub mod eval;
pub mod issue;
pub mod jcs;
pub mod limits;
pub mod model;
pub mod murmur3;
mod sharing;
pub mod snapshot;
pub mod state;
mod text;
pub mod time;
pub mod usage;

pub use access::Permission;
pub use command::{Command, CommandEnvelope, CommandError, Outcome};
pub use compile::FlagSet;
pub use context::{AttrValue, Context};
pub use eval::{ErrorCode, EvaluationDetails, Reason};
pub use issue::{Issue, ValidationError};
pub use model::{Environment, Flag, FlagKind, Segment};
pub use snapshot::{Snapshot, SnapshotError};
pub use state::State;
pub use usage::UsageCounters;

//! The openraft type configuration: replicated requests are
//! [`CommandEnvelope`]s, responses are their outcomes.

use std::io::Cursor;

use pulseplane_core::{CommandEnvelope, CommandError, Outcome};
use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub type NodeId = u64;

/// What applying one log entry produced: the command's result, or nothing
/// for blank and membership entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub result: Option<Result<Outcome, CommandError>>,
}

openraft::declare_raft_types!(
    /// Pulseplane's Raft types.
    pub TypeConfig:
        D = CommandEnvelope,
        R = ApplyResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

//! The openraft type configuration: a replicated entry is a [`Proposal`], a
//! batch of [`CommandEnvelope`]s coalesced by the leader, and its response
//! holds one result per command.

use std::io::Cursor;
use std::sync::Arc;

use pulseplane_core::{CommandEnvelope, CommandError, Outcome};
use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub type NodeId = u64;

/// The payload of one normal log entry: commands applied in order. Batching
/// concurrent writes into one entry amortises the log fsync. The commands
/// are shared, so copies of an entry (the log store's, replication's,
/// apply's) cost no more than a reference count; serialized, they are a
/// plain list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub commands: Arc<[CommandEnvelope]>,
}

impl Proposal {
    /// A proposal of one command.
    pub fn one(command: CommandEnvelope) -> Proposal {
        Proposal {
            commands: Arc::from([command]),
        }
    }
}

/// What applying one log entry produced: one result per command of the
/// proposal, in order; empty for blank and membership entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub results: Vec<Result<Outcome, CommandError>>,
}

openraft::declare_raft_types!(
    /// Pulseplane's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = ApplyResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

//! pulseplane-raft-store: Raft log and state-machine storage over RocksDB.
//!
//! One RocksDB database with three column families: `logs` (entries by
//! big-endian index), `meta` (vote, committed id, last purged id) and `sm`
//! (the record of the current snapshot, which is the state machine's
//! checkpoint, and the last-applied log id and membership). Snapshot data
//! lives in files beside the database, so writing it never stalls the WAL. openraft's generics stop here and in the node's raft
//! module.
//!
//! Durability: an append's flush callback fires only after the entries are
//! in the synced WAL; a vote is synced before `save_vote` returns; the state
//! machine writes its last-applied id and membership in one batch per
//! applied batch of entries, to the WAL before readers see it. On open it
//! loads the checkpoint (the last snapshot) and replays the log up to the
//! persisted last-applied id.
//!
//! Layout:
//! - `config`: the openraft `TypeConfig` and the apply response
//! - `db`: opening the database and its column families
//! - `log_store`: [`LogStore`], the `RaftLogStorage` implementation
//! - `state_machine`: [`StateMachineStore`], the `RaftStateMachine` implementation
//! - `metrics`: latency histograms (WAL sync, append)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod db;
pub mod log_store;
pub mod metrics;
pub mod state_machine;

pub use config::{ApplyResult, NodeId, Proposal, TypeConfig};
pub use db::{StoreError, open};
pub use log_store::{AppendObserver, LogStore};
pub use state_machine::StateMachineStore;

//! openraft's own storage test suite, run against the RocksDB store.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use pulseplane_raft_store::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tempfile::TempDir;

/// Opens a fresh store in a temporary directory, removed with the guard.
struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
        })?;
        let (log, sm) = pulseplane_raft_store::open(dir.path()).map_err(|e| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // the suite's own error type
fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(RocksBuilder)
}

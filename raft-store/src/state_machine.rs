//! The state machine: [`State`] applied from the log, persisted in the `sm`
//! column family together with its last-applied log id and membership in one
//! synced write batch per applied batch of entries.

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use pulseplane_core::State;
use rocksdb::{DB, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::config::{ApplyResult, NodeId, TypeConfig};
use crate::db::{CF_SM, StoreError};

const KEY_STATE: &[u8] = b"state";
const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

type Membership = StoredMembership<NodeId, BasicNode>;
type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// What has been applied, kept in memory and mirrored in RocksDB.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    state: State,
}

/// The state machine store; clones share it (a clone is the snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    applied: Arc<Mutex<Applied>>,
    snapshots_built: Arc<Mutex<u64>>,
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn sm_write(e: impl Into<AnyError>) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(e).into()
}

fn sm_read(e: impl Into<AnyError>) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(e).into()
}

impl StateMachineStore {
    /// Loads the applied state persisted in `db` (empty when there is none).
    pub(crate) fn load(db: Arc<DB>) -> Result<StateMachineStore, StoreError> {
        let mut applied = Applied::default();
        if let Some(cf) = db.cf_handle(CF_SM) {
            if let Some(bytes) = db.get_cf(&cf, KEY_STATE)? {
                applied.state = serde_json::from_slice(&bytes)?;
            }
            if let Some(bytes) = db.get_cf(&cf, KEY_LAST_APPLIED)? {
                applied.last_applied = serde_json::from_slice(&bytes)?;
            }
            if let Some(bytes) = db.get_cf(&cf, KEY_MEMBERSHIP)? {
                applied.membership = serde_json::from_slice(&bytes)?;
            }
        }
        Ok(StateMachineStore {
            db,
            applied: Arc::new(Mutex::new(applied)),
            snapshots_built: Arc::new(Mutex::new(0)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        // A poisoned lock only means a panic elsewhere; the data is whole.
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the applied state and the log id it reflects.
    pub fn state(&self) -> (Option<LogId<NodeId>>, State) {
        let a = self.lock();
        (a.last_applied, a.state.clone())
    }

    /// Writes state, last-applied id and membership in one synced batch,
    /// plus the given extra puts.
    fn persist(&self, applied: &Applied, extra: &[(&[u8], &[u8])]) -> Result<(), AnyError> {
        let cf = self
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| AnyError::error("column family sm is missing"))?;
        let mut batch = WriteBatch::default();
        let json = |v: &dyn erased::Json| v.to_json();
        batch.put_cf(&cf, KEY_STATE, json(&applied.state)?);
        batch.put_cf(&cf, KEY_LAST_APPLIED, json(&applied.last_applied)?);
        batch.put_cf(&cf, KEY_MEMBERSHIP, json(&applied.membership)?);
        for (k, v) in extra {
            batch.put_cf(&cf, k, v);
        }
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| AnyError::new(&e))
    }
}

mod erased {
    use openraft::AnyError;

    /// Serializes to JSON bytes (object safe, for the persist helper).
    pub(super) trait Json {
        fn to_json(&self) -> Result<Vec<u8>, AnyError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, AnyError> {
            serde_json::to_vec(self).map_err(|e| AnyError::new(&e))
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let applied = self.lock().clone();
        let data = serde_json::to_vec(&applied).map_err(|e| sm_read(&e))?;
        let n = {
            let mut built = self
                .snapshots_built
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *built += 1;
            *built
        };
        let snapshot_id = match applied.last_applied {
            Some(id) => format!("{}-{}-{n}", id.leader_id, id.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        let meta_json = serde_json::to_vec(&meta).map_err(|e| sm_read(&e))?;
        let cf = self
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| sm_write(AnyError::error("column family sm is missing")))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, KEY_SNAPSHOT_META, meta_json);
        batch.put_cf(&cf, KEY_SNAPSHOT_DATA, &data);
        self.db.write_opt(batch, &synced()).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> StoreResult<(Option<LogId<NodeId>>, Membership)> {
        let a = self.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<ApplyResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut next = self.lock().clone();
        let mut results = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(cmd) => Some(next.state.apply(&cmd)),
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), m);
                    None
                }
            };
            results.push(ApplyResult { result });
        }
        // Persist before the new state becomes visible: a restart never
        // shows older state than readers have seen.
        self.persist(&next, &[]).map_err(sm_write)?;
        *self.lock() = next;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let mut applied: Applied = serde_json::from_slice(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        let meta_json = serde_json::to_vec(meta).map_err(|e| sm_write(&e))?;
        self.persist(
            &applied,
            &[(KEY_SNAPSHOT_META, &meta_json), (KEY_SNAPSHOT_DATA, &data)],
        )
        .map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), e))
        })?;
        *self.lock() = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let cf = self
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| sm_read(AnyError::error("column family sm is missing")))?;
        let meta = self
            .db
            .get_cf(&cf, KEY_SNAPSHOT_META)
            .map_err(|e| sm_read(&e))?;
        let data = self
            .db
            .get_cf(&cf, KEY_SNAPSHOT_DATA)
            .map_err(|e| sm_read(&e))?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta<NodeId, BasicNode> =
                    serde_json::from_slice(&meta).map_err(|e| sm_read(&e))?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                }))
            }
            _ => Ok(None),
        }
    }
}

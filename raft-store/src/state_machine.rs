//! The state machine: [`State`] applied from the log.
//!
//! Persistence is a checkpoint plus the log. The checkpoint is the current
//! snapshot (the whole state, written when a snapshot is built or
//! installed); every applied batch then writes only its last-applied log id
//! and membership, in one write batch, before the call returns and while
//! readers are held off. On open, the store loads the checkpoint and
//! replays the log entries after it up to the persisted last-applied id.
//! Log entries are never purged past the checkpoint, because openraft purges
//! only up to a snapshot, and every snapshot is the checkpoint. So each apply
//! costs one small write however large the state grows. The write reaches
//! the WAL before readers see the batch, so after a process crash the store
//! reopens at least where readers were; it is not fsynced on its own (the
//! applied entries are already synced in the log), so after a machine crash
//! the store may reopen a few batches earlier and the node catches up from
//! its log before it serves reads.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use pulseplane_core::State;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{ApplyResult, NodeId, TypeConfig};
use crate::db::{CF_LOGS, CF_SM, StoreError, decode_entry, index_key, key_index};

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// The current snapshot: its meta and the name of its file.
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// Where the current snapshot's data lives: a file in the snapshot dir, so
/// that writing tens of megabytes never goes through (and stalls) the WAL
/// that log appends share.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    file: String,
}

/// How much snapshot data is written between syncs.
const SNAPSHOT_SYNC_BYTES: usize = 2 * 1024 * 1024;

/// Writes `data` to `dir/name` through a synced temporary file and a
/// rename, then syncs the dir.
fn write_snapshot_file(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    // Synced a few megabytes at a time: a large burst of dirty pages would
    // make the WAL's own syncs wait behind its writeback.
    for chunk in data.chunks(SNAPSHOT_SYNC_BYTES) {
        f.write_all(chunk)?;
        f.sync_data()?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes every file in `dir` but `keep` (older snapshots, leftovers).
fn remove_other_snapshot_files(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str() != Some(keep) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A file name for a snapshot: its id with anything unusual replaced.
fn snapshot_file_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("snapshot-{clean}.json")
}

type Membership = StoredMembership<NodeId, BasicNode>;
type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// What has been applied, kept in memory; a snapshot's data is this, as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    state: State,
}

impl Applied {
    /// Decodes a snapshot's data (as received from a leader).
    pub fn decode(bytes: &[u8]) -> Result<Applied, serde_json::Error> {
        let mut applied: Applied = serde_json::from_slice(bytes)?;
        applied.state.share_revisions();
        Ok(applied)
    }

    /// The replicated state it holds.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Applies one entry; the result has one item per command.
    fn apply_entry(&mut self, entry: &Entry<TypeConfig>) -> ApplyResult {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => ApplyResult::default(),
            EntryPayload::Normal(proposal) => ApplyResult {
                results: proposal
                    .commands
                    .iter()
                    .map(|cmd| self.state.apply(cmd))
                    .collect(),
            },
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                ApplyResult::default()
            }
        }
    }
}

/// How many commands an entry carries.
fn commands_in(entry: &Entry<TypeConfig>) -> u64 {
    match &entry.payload {
        EntryPayload::Normal(p) => p.commands.len() as u64,
        _ => 0,
    }
}

/// The state machine store; clones share it (a clone is the snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    snapshot_dir: PathBuf,
    /// Serialises snapshot file and record updates (a build runs in its own
    /// task and may overlap an install).
    snapshot_io: Arc<tokio::sync::Mutex<()>>,
    applied: Arc<RwLock<Applied>>,
    snapshots_built: Arc<Mutex<u64>>,
    snapshots_installed: Arc<AtomicU64>,
    applied_index: watch::Sender<u64>,
    snapshot_bytes: Arc<AtomicU64>,
    /// Commands applied since the last snapshot: what a restart would
    /// replay.
    since_snapshot: Arc<AtomicU64>,
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

fn corrupt(what: String) -> StoreError {
    StoreError::Replay(what)
}

impl StateMachineStore {
    /// Loads the checkpoint persisted in `db` and replays the log after it
    /// up to the persisted last-applied id (empty when there is nothing).
    pub(crate) fn load(
        db: Arc<DB>,
        snapshot_dir: PathBuf,
    ) -> Result<StateMachineStore, StoreError> {
        let mut applied = Applied::default();
        let mut target: Option<LogId<NodeId>> = None;
        let mut snapshot_bytes = 0;
        let mut replayed_commands = 0u64;
        let started = std::time::Instant::now();
        if let Some(cf) = db.cf_handle(CF_SM) {
            if let Some(record) = db.get_cf(&cf, KEY_SNAPSHOT)? {
                let StoredSnapshot { meta, file } = serde_json::from_slice(&record)?;
                let data = std::fs::read(snapshot_dir.join(&file))
                    .map_err(|e| corrupt(format!("cannot read the snapshot file {file}: {e}")))?;
                snapshot_bytes = data.len() as u64;
                applied = Applied::decode(&data)?;
                applied.last_applied = meta.last_log_id;
                applied.membership = meta.last_membership;
            }
            if let Some(bytes) = db.get_cf(&cf, KEY_LAST_APPLIED)? {
                target = serde_json::from_slice(&bytes)?;
            }
        }
        if let Some(target) = target.filter(|t| Some(*t) > applied.last_applied) {
            let cf = db
                .cf_handle(CF_LOGS)
                .ok_or_else(|| corrupt("column family logs is missing".into()))?;
            // Without a checkpoint the log has never been purged: replay it
            // from its first entry.
            let from = applied.last_applied.map_or(0, |id| id.index + 1);
            let mut expected = applied.last_applied.map(|id| id.index + 1);
            let start = index_key(from);
            for item in db.iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward)) {
                let (key, bytes) = item?;
                let index = key_index(&key).ok_or_else(|| corrupt("malformed log key".into()))?;
                if index > target.index {
                    break;
                }
                if expected.is_some_and(|e| e != index) {
                    break;
                }
                let entry = decode_entry(&bytes)?;
                replayed_commands += commands_in(&entry);
                applied.apply_entry(&entry);
                expected = Some(index + 1);
            }
            if applied.last_applied != Some(target) {
                return Err(corrupt(format!(
                    "the log after the checkpoint ({:?}) does not reach the applied log id {target}",
                    applied.last_applied
                )));
            }
        }
        let index = applied.last_applied.map_or(0, |id| id.index);
        tracing::info!(
            applied_index = index,
            snapshot_bytes,
            replayed_commands,
            ms = started.elapsed().as_millis() as u64,
            "state machine loaded"
        );
        Ok(StateMachineStore {
            db,
            snapshot_dir,
            snapshot_io: Arc::new(tokio::sync::Mutex::new(())),
            applied: Arc::new(RwLock::new(applied)),
            snapshots_built: Arc::new(Mutex::new(0)),
            snapshots_installed: Arc::new(AtomicU64::new(0)),
            applied_index: watch::Sender::new(index),
            snapshot_bytes: Arc::new(AtomicU64::new(snapshot_bytes)),
            since_snapshot: Arc::new(AtomicU64::new(replayed_commands)),
        })
    }

    /// Seeds an empty store with `state` as its first snapshot, at log id
    /// (term 0, node 0, index 0) and with `members` as the voters: a node
    /// started on it is a member of a new cluster whose state begins as
    /// `state` (a restore from a backup). Refused when the store holds
    /// anything.
    pub async fn seed(
        &mut self,
        state: State,
        members: std::collections::BTreeMap<NodeId, BasicNode>,
    ) -> Result<(), StoreError> {
        if self.read_lock().last_applied.is_some() {
            return Err(StoreError::Seed(
                "it is not empty: only a new data dir can be seeded".into(),
            ));
        }
        let log_id = LogId::new(openraft::CommittedLeaderId::new(0, 0), 0);
        let voters = members.keys().copied().collect();
        let membership = StoredMembership::new(
            Some(log_id),
            openraft::Membership::new(vec![voters], members),
        );
        let applied = Applied {
            last_applied: Some(log_id),
            membership: membership.clone(),
            state,
        };
        let data = serde_json::to_vec(&applied)?;
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: membership,
            snapshot_id: "restore-0".to_owned(),
        };
        self.install_snapshot(&meta, Box::new(Cursor::new(data)))
            .await
            .map_err(|e| StoreError::Seed(e.to_string()))
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Applied> {
        // A poisoned lock only means a panic elsewhere; the data is whole.
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the applied state and the log id it reflects.
    pub fn state(&self) -> (Option<LogId<NodeId>>, State) {
        let a = self.read_lock();
        (a.last_applied, a.state.clone())
    }

    /// Runs `f` on the applied state without copying it. Keep `f` short:
    /// apply waits while it runs.
    pub fn read<R>(&self, f: impl FnOnce(Option<LogId<NodeId>>, &State) -> R) -> R {
        let a = self.read_lock();
        f(a.last_applied, &a.state)
    }

    /// The applied log index (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// Watches the applied log index; it changes after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// Writes a snapshot's data to its file on a blocking thread; returns
    /// the data and the file name.
    async fn store_snapshot_file(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: Vec<u8>,
    ) -> StoreResult<(Vec<u8>, String)> {
        let file = snapshot_file_name(&meta.snapshot_id);
        let (dir, name) = (self.snapshot_dir.clone(), file.clone());
        let write = move || write_snapshot_file(&dir, &name, &data).map(|()| data);
        let written = match tokio::runtime::Handle::try_current() {
            Ok(h) => h.spawn_blocking(write).await.map_err(|e| {
                sm_write(AnyError::error(format!("writing the snapshot failed: {e}")))
            })?,
            Err(_) => write(),
        };
        let data = written.map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        })?;
        Ok((data, file))
    }

    /// Commands applied since the last snapshot was built or installed:
    /// about what a restart would replay.
    pub fn commands_since_snapshot(&self) -> u64 {
        self.since_snapshot.load(Ordering::Relaxed)
    }

    /// Snapshots built by this store and installed from a leader since it
    /// was opened.
    pub fn snapshot_counts(&self) -> (u64, u64) {
        let built = *self
            .snapshots_built
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (built, self.snapshots_installed.load(Ordering::Relaxed))
    }

    /// Size of the current snapshot's data in bytes (0 when there is none).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes.load(Ordering::Relaxed)
    }

    fn publish_index(&self, applied: &Applied) {
        let index = applied.last_applied.map_or(0, |id| id.index);
        self.applied_index.send_replace(index);
    }

    /// Writes the last-applied id and membership in one batch (synced when
    /// `sync`), plus the given extra puts.
    fn persist(
        &self,
        applied: &Applied,
        extra: &[(&[u8], &[u8])],
        sync: bool,
    ) -> Result<(), AnyError> {
        let cf = self
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| AnyError::error("column family sm is missing"))?;
        let mut batch = WriteBatch::default();
        let last = serde_json::to_vec(&applied.last_applied).map_err(|e| AnyError::new(&e))?;
        let membership = serde_json::to_vec(&applied.membership).map_err(|e| AnyError::new(&e))?;
        batch.put_cf(&cf, KEY_LAST_APPLIED, last);
        batch.put_cf(&cf, KEY_MEMBERSHIP, membership);
        for (k, v) in extra {
            batch.put_cf(&cf, k, v);
        }
        let options = if sync {
            synced()
        } else {
            WriteOptions::default()
        };
        self.db
            .write_opt(batch, &options)
            .map_err(|e| AnyError::new(&e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        // Apply waits only for the copy; the encoding runs on a blocking
        // thread, off the runtime's workers.
        let started = std::time::Instant::now();
        let copy = {
            let applied = self.read_lock();
            self.since_snapshot.store(0, Ordering::Relaxed);
            applied.clone()
        };
        let copied = started.elapsed();
        let (last_applied, membership) = (copy.last_applied, copy.membership.clone());
        let encode = move || serde_json::to_vec(&copy);
        let encoded = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(encode)
                .await
                .map_err(|e| sm_read(AnyError::error(format!("snapshot encoding failed: {e}"))))?,
            Err(_) => encode(),
        };
        let data = encoded.map_err(|e| sm_read(&e))?;
        let n = {
            let mut built = self
                .snapshots_built
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *built += 1;
            *built
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{n}", id.leader_id, id.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        // The snapshot becomes the checkpoint: its file first, then the
        // record pointing at it; unless an install overtook this build.
        let _io = self.snapshot_io.lock().await;
        let cf = self
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| sm_write(AnyError::error("column family sm is missing")))?;
        let current: Option<StoredSnapshot> = self
            .db
            .get_cf(&cf, KEY_SNAPSHOT)
            .map_err(|e| sm_read(&e))?
            .and_then(|r| serde_json::from_slice(&r).ok());
        if current.is_some_and(|c| c.meta.last_log_id >= meta.last_log_id) {
            return Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            });
        }
        let (data, file) = self.store_snapshot_file(&meta, data).await?;
        let record = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            file: file.clone(),
        })
        .map_err(|e| sm_write(&e))?;
        self.db
            .put_cf_opt(&cf, KEY_SNAPSHOT, record, &synced())
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
            })?;
        remove_other_snapshot_files(&self.snapshot_dir, &file);
        self.snapshot_bytes
            .store(data.len() as u64, Ordering::Relaxed);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            copy_ms = copied.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> StoreResult<(Option<LogId<NodeId>>, Membership)> {
        let a = self.read_lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<ApplyResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.write_lock();
        let mut commands = 0;
        let results: Vec<ApplyResult> = entries
            .into_iter()
            .map(|entry| {
                commands += commands_in(&entry);
                applied.apply_entry(&entry)
            })
            .collect();
        self.since_snapshot.fetch_add(commands, Ordering::Relaxed);
        // The batch goes to the WAL before readers can see it, so a process
        // crash never loses what was seen. It is not fsynced on its own: the
        // entries it applied are already synced in the log, and the next
        // log sync covers it. After a machine crash the node replays from
        // the log, and it serves reads only once it has caught up with the
        // cluster's commit index (the node's readiness gate).
        let persisted = self.persist(&applied, &[], false);
        persisted.map_err(sm_write)?;
        self.publish_index(&applied);
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
        let mut installed = Applied::decode(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        let _io = self.snapshot_io.lock().await;
        let (data, file) = self.store_snapshot_file(meta, data).await?;
        let record = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            file: file.clone(),
        })
        .map_err(|e| sm_write(&e))?;
        let mut applied = self.write_lock();
        // The snapshot record, last-applied id and membership in one synced
        // batch: the install is atomic.
        self.persist(&installed, &[(KEY_SNAPSHOT, &record)], true)
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), e))
            })?;
        remove_other_snapshot_files(&self.snapshot_dir, &file);
        *applied = installed;
        self.snapshot_bytes
            .store(data.len() as u64, Ordering::Relaxed);
        self.publish_index(&applied);
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let cf = self
            .db
            .cf_handle(CF_SM)
            .ok_or_else(|| sm_read(AnyError::error("column family sm is missing")))?;
        let Some(record) = self.db.get_cf(&cf, KEY_SNAPSHOT).map_err(|e| sm_read(&e))? else {
            return Ok(None);
        };
        let StoredSnapshot { meta, file } =
            serde_json::from_slice(&record).map_err(|e| sm_read(&e))?;
        let data = std::fs::read(self.snapshot_dir.join(&file)).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

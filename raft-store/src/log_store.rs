//! The Raft log over RocksDB: entries in `logs`, vote and bookkeeping in
//! `meta`. Appends, votes, truncations and purges are written with a synced
//! WAL before they are acknowledged.
//!
//! Appends commit as a group: `append` writes the entries (readable at
//! once) and hands its flush callback to a syncer thread, which syncs the
//! WAL once for every callback queued meanwhile and only then fires them,
//! in order. So the Raft core never waits on an fsync, and one fsync covers
//! every append that arrived while the previous one ran.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{NodeId, TypeConfig};
use crate::db::{CF_LOGS, CF_META, decode_entry, encode_entry, index_key, key_index};
use crate::metrics::LogMetrics;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The log store; clones share the database and serve as log readers.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: Arc<Syncer>,
    metrics: Arc<LogMetrics>,
}

/// The handle of the WAL syncer thread. Dropping the last handle closes the
/// queue and joins the thread, so the database closes before the handle is
/// gone.
struct Syncer {
    queue: Mutex<Option<std::sync::mpsc::Sender<Waiting>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// An append's flush callback and when the append was called.
type Waiting = (LogFlushed<TypeConfig>, Instant);

impl Syncer {
    fn start(db: Arc<DB>, metrics: Arc<LogMetrics>) -> Syncer {
        let (tx, rx) = std::sync::mpsc::channel::<Waiting>();
        let spawned = std::thread::Builder::new()
            .name("pulseplane-wal-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        waiting.push(more);
                    }
                    let started = Instant::now();
                    let synced = db.flush_wal(true).map_err(|e| e.to_string());
                    metrics.fsync.observe(started.elapsed());
                    for (callback, called) in waiting {
                        callback.log_io_completed(synced.clone().map_err(io::Error::other));
                        metrics.append.observe(called.elapsed());
                    }
                }
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                // Without the thread the queue's receiver is gone: every
                // append then fails, which Raft reports as a storage error.
                tracing::error!(error = %e, "cannot start the WAL sync thread");
                None
            }
        };
        Syncer {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
        }
    }

    /// Queues `callback` to fire once the WAL is synced; gives it back when
    /// the thread is gone.
    fn after_sync(
        &self,
        callback: LogFlushed<TypeConfig>,
        called: Instant,
    ) -> Result<(), LogFlushed<TypeConfig>> {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match queue.as_ref() {
            Some(q) => q.send((callback, called)).map_err(|e| e.0.0),
            None => Err(callback),
        }
    }
}

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn missing_cf(name: &str) -> AnyError {
    AnyError::error(format!("column family {name} is missing"))
}

fn io_read(e: impl Into<AnyError>) -> StorageError<NodeId> {
    StorageIOError::read_logs(e).into()
}

fn io_write(e: impl Into<AnyError>) -> StorageError<NodeId> {
    StorageIOError::write_logs(e).into()
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> LogStore {
        let metrics = Arc::new(LogMetrics::default());
        let syncer = Arc::new(Syncer::start(db.clone(), metrics.clone()));
        LogStore {
            db,
            syncer,
            metrics,
        }
    }

    /// The WAL sync and append latencies.
    pub fn metrics(&self) -> Arc<LogMetrics> {
        self.metrics.clone()
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        let cf = self
            .db
            .cf_handle(CF_META)
            .ok_or_else(|| missing_cf(CF_META))?;
        match self.db.get_cf(&cf, key).map_err(|e| AnyError::new(&e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AnyError::new(&e)),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), AnyError> {
        let cf = self
            .db
            .cf_handle(CF_META)
            .ok_or_else(|| missing_cf(CF_META))?;
        let bytes = serde_json::to_vec(value).map_err(|e| AnyError::new(&e))?;
        let wo = if sync {
            synced()
        } else {
            WriteOptions::default()
        };
        self.db
            .put_cf_opt(&cf, key, bytes, &wo)
            .map_err(|e| AnyError::new(&e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, AnyError> {
        let cf = self
            .db
            .cf_handle(CF_LOGS)
            .ok_or_else(|| missing_cf(CF_LOGS))?;
        let mut iter = self.db.iterator_cf(&cf, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| AnyError::new(&e))?;
                let entry = decode_entry(&value).map_err(|e| AnyError::new(&e))?;
                Ok(Some(entry.log_id))
            }
        }
    }

    /// Writes `batch` to the WAL and syncs it.
    fn write_synced(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        self.db.write_opt(batch, &synced())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self
            .db
            .cf_handle(CF_LOGS)
            .ok_or_else(|| io_read(missing_cf(CF_LOGS)))?;
        let from = index_key(start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(|e| io_read(&e))?;
            let Some(index) = key_index(&key) else {
                return Err(io_read(AnyError::error("malformed log key")));
            };
            if !range.contains(&index) {
                break;
            }
            let entry = decode_entry(&value).map_err(|e| io_read(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.get_meta(KEY_LAST_PURGED).map_err(io_read)?;
        let last_log_id = self
            .last_entry_id()
            .map_err(io_read)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.put_meta(KEY_VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.get_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        self.put_meta(KEY_COMMITTED, &committed, false)
            .map_err(io_write)?;
        self.metrics.committed.store(
            committed.map_or(0, |l| l.index),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)
            .map_err(io_read)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let called = Instant::now();
        let cf = self
            .db
            .cf_handle(CF_LOGS)
            .ok_or_else(|| io_write(missing_cf(CF_LOGS)))?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = encode_entry(&entry).map_err(|e| io_write(&e))?;
            batch.put_cf(&cf, index_key(entry.log_id.index), bytes);
        }
        // Written (and readable) now; the callback fires only once the WAL
        // holding it is synced.
        self.db.write(batch).map_err(|e| io_write(&e))?;
        match self.syncer.after_sync(callback, called) {
            Ok(()) => Ok(()),
            Err(callback) => {
                let e = io::Error::other("the WAL sync thread is gone");
                let err = io_write(&e);
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let cf = self
            .db
            .cf_handle(CF_LOGS)
            .ok_or_else(|| io_write(missing_cf(CF_LOGS)))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(&cf, index_key(u64::MAX));
        self.write_synced(batch).map_err(|e| io_write(&e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        // Record the purge point first: a crash between the two writes leaves
        // entries that are already covered, never a gap.
        self.put_meta(KEY_LAST_PURGED, &log_id, true)
            .map_err(io_write)?;
        let cf = self
            .db
            .cf_handle(CF_LOGS)
            .ok_or_else(|| io_write(missing_cf(CF_LOGS)))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, index_key(0), index_key(log_id.index.saturating_add(1)));
        self.write_synced(batch).map_err(|e| io_write(&e))
    }
}

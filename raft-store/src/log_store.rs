//! The Raft log over RocksDB: entries in `logs`, vote and bookkeeping in
//! `meta`. Appends, votes, truncations and purges are written with a synced
//! WAL before they are acknowledged.
//!
//! `append` writes the entries (readable at once) and hands its flush
//! callback to a syncer thread, which syncs the WAL once for every callback
//! queued meanwhile and only then fires them, in order. openraft 0.9's core
//! waits for each append's callback before it goes on (before the leader
//! sends the entries to its followers, too), so an [`AppendObserver`] is
//! told of the entries as soon as they are written: the node uses it to
//! send a leader's new entries to its followers while its own sync runs.
//!
//! The latest entries are also kept in memory, as appended ([`Recent`]):
//! Raft reads each entry back soon after its append (the leader once per
//! follower to replicate it, every node once to apply it), and those reads
//! take a copy that shares the entry's commands instead of reading and
//! decoding it from the database.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, OnceLock};
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
    recent: Arc<Mutex<Recent>>,
    observer: Arc<OnceLock<Arc<dyn AppendObserver>>>,
}

/// Told of each append once its entries are written to the log and their
/// sync has been asked for, before it is done. Called on Raft's core task:
/// it must not block.
pub trait AppendObserver: Send + Sync {
    /// `entries` directly follow the entry `prev` in the log. Appends
    /// whose previous entry is not known in memory (the first after
    /// opening, for one) are not reported.
    fn appended(&self, prev: LogId<NodeId>, entries: &[Entry<TypeConfig>]);
}

/// At most this many of the latest entries are kept in memory. Raft reads
/// an entry back within a few appends (at most two of the node's own writes
/// are in flight at once); a follower that lags further is sent entries
/// from the database.
const RECENT_ENTRIES: usize = 128;
/// And at most about this many bytes of them (by their encoded size).
const RECENT_BYTES: usize = 1024 * 1024;

/// The latest appended entries, consecutive by index, with their encoded
/// sizes: a suffix of the log in the database, kept so by `append`,
/// `truncate` and `purge`. Empty after opening; it fills as entries are
/// appended.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries.back().map(|(e, _)| e.log_id)
    }

    fn push(&mut self, entry: Entry<TypeConfig>, size: usize) {
        let follows = match self.entries.back() {
            Some((last, _)) => last.log_id.index.checked_add(1) == Some(entry.log_id.index),
            None => true,
        };
        if !follows {
            // Not the next index (it cannot be, as the log only grows by
            // appends): start again rather than keep a gap.
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.push_back((entry, size));
        while self.entries.len() > RECENT_ENTRIES
            || (self.bytes > RECENT_BYTES && self.entries.len() > 1)
        {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while let Some((last, size)) = self.entries.back() {
            if last.log_id.index < index {
                break;
            }
            self.bytes -= *size;
            self.entries.pop_back();
        }
    }

    /// Forgets the entries up to `index`.
    fn purge(&mut self, index: u64) {
        while let Some((first, size)) = self.entries.front() {
            if first.log_id.index > index {
                break;
            }
            self.bytes -= *size;
            self.entries.pop_front();
        }
    }

    /// The entries in `range`, when they start at or after the first one
    /// kept (so none before it is missed); `None` otherwise.
    fn get<RB: RangeBounds<u64>>(&self, start: u64, range: &RB) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .map(|(e, _)| e)
                .take_while(|e| range.contains(&e.log_id.index))
                .cloned()
                .collect(),
        )
    }
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
            recent: Arc::new(Mutex::new(Recent::default())),
            observer: Arc::new(OnceLock::new()),
        }
    }

    /// Sets the observer told of every append from now on (once; a second
    /// call is refused and returns false).
    pub fn set_append_observer(&self, observer: Arc<dyn AppendObserver>) -> bool {
        self.observer.set(observer).is_ok()
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

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
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
        if let Some(entries) = self.recent().get(start, &range) {
            return Ok(entries);
        }
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
        let mut appended = Vec::new();
        let mut sizes = Vec::new();
        for entry in entries {
            let bytes = encode_entry(&entry).map_err(|e| io_write(&e))?;
            batch.put_cf(&cf, index_key(entry.log_id.index), &bytes);
            appended.push(entry);
            sizes.push(bytes.len());
        }
        // Written (and readable) now; the callback fires only once the WAL
        // holding it is synced. Raft reads an entry only after its append
        // returned, so the entries are in memory by then. (Raft calls
        // `append`, `truncate` and `purge` one at a time.)
        self.db.write(batch).map_err(|e| io_write(&e))?;
        if let Err(callback) = self.syncer.after_sync(callback, called) {
            let e = io::Error::other("the WAL sync thread is gone");
            let err = io_write(&e);
            callback.log_io_completed(Err(e));
            return Err(err);
        }
        let prev = self.recent().last_log_id();
        if let (Some(observer), Some(prev), Some(first)) =
            (self.observer.get(), prev, appended.first())
            && prev.index.checked_add(1) == Some(first.log_id.index)
        {
            observer.appended(prev, &appended);
        }
        let mut recent = self.recent();
        for (entry, size) in appended.into_iter().zip(sizes) {
            recent.push(entry, size);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let cf = self
            .db
            .cf_handle(CF_LOGS)
            .ok_or_else(|| io_write(missing_cf(CF_LOGS)))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(&cf, index_key(u64::MAX));
        self.recent().truncate(log_id.index);
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
        self.recent().purge(log_id.index);
        self.write_synced(batch).map_err(|e| io_write(&e))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn recent_entries_follow_appends_truncations_and_purges() {
        let mut r = Recent::default();
        assert_eq!(indexes(r.get(0, &(0..))), None);
        for i in 5..=9 {
            r.push(entry(i), 10);
        }
        assert_eq!(indexes(r.get(5, &(5..))), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(r.get(7, &(7..9))), Some(vec![7, 8]));
        assert_eq!(indexes(r.get(9, &(9..=20))), Some(vec![9]));
        assert_eq!(indexes(r.get(12, &(12..))), Some(vec![]));
        // Before the first entry kept: the database must answer.
        assert_eq!(indexes(r.get(4, &(4..))), None);

        r.truncate(8);
        assert_eq!(indexes(r.get(5, &(5..))), Some(vec![5, 6, 7]));
        r.push(entry(8), 10);
        r.purge(6);
        assert_eq!(indexes(r.get(7, &(7..))), Some(vec![7, 8]));
        assert_eq!(indexes(r.get(6, &(6..))), None);
        assert_eq!(r.bytes, 20);

        // An entry that does not follow starts the list again.
        r.push(entry(20), 10);
        assert_eq!(indexes(r.get(20, &(20..))), Some(vec![20]));
        assert_eq!(indexes(r.get(8, &(8..))), None);
        assert_eq!(r.bytes, 10);
    }

    /// Records what it is told.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(u64, Vec<u64>)>>);

    impl AppendObserver for Seen {
        fn appended(&self, prev: LogId<NodeId>, entries: &[Entry<TypeConfig>]) {
            let indexes = entries.iter().map(|e| e.log_id.index).collect();
            self.0.lock().unwrap().push((prev.index, indexes));
        }
    }

    #[tokio::test]
    async fn the_observer_is_told_of_appends_after_a_known_entry() {
        use openraft::storage::RaftLogStorageExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _sm) = crate::open(dir.path()).unwrap();
        let seen = Arc::new(Seen::default());
        assert!(log.set_append_observer(seen.clone()));
        assert!(!log.set_append_observer(Arc::new(Seen::default())));
        // The first append after opening: the entry before is not known.
        log.blocking_append([entry(1), entry(2)]).await.unwrap();
        log.blocking_append([entry(3)]).await.unwrap();
        log.blocking_append([entry(4), entry(5)]).await.unwrap();
        log.truncate(entry(4).log_id).await.unwrap();
        log.blocking_append([entry(4)]).await.unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![(2, vec![3]), (3, vec![4, 5]), (3, vec![4])]
        );
        // What it was told is in the log.
        let indexes: Vec<u64> = log
            .try_get_log_entries(1..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(indexes, vec![1, 2, 3, 4]);
    }

    #[test]
    fn recent_entries_are_bounded_by_count_and_bytes() {
        let mut r = Recent::default();
        for i in 1..=(RECENT_ENTRIES as u64 + 10) {
            r.push(entry(i), 1);
        }
        assert_eq!(r.entries.len(), RECENT_ENTRIES);
        assert_eq!(r.first_index(), Some(11));
        r.push(entry(RECENT_ENTRIES as u64 + 11), RECENT_BYTES);
        // The newest is kept even when it alone is over the byte bound.
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.bytes, RECENT_BYTES);
    }
}

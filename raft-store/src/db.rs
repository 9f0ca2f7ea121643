//! Opening the database: one RocksDB instance, three column families.

use std::path::Path;
use std::sync::Arc;

use openraft::Entry;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options};

use crate::config::TypeConfig;

use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;

pub(crate) const CF_LOGS: &str = "logs";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_SM: &str = "sm";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("cannot rebuild the applied state: {0}")]
    Replay(String),
    #[error("cannot seed the store: {0}")]
    Seed(String),
}

/// The most WAL the database keeps before it flushes column families to
/// let old WAL files go.
const MAX_TOTAL_WAL_BYTES: u64 = 64 * 1024 * 1024;

/// Memtable sizes: the log takes every write; `meta` and `sm` take a small
/// record per batch. RocksDB's default (64 MiB, two of them, per column
/// family) would hold the whole recent log in memory: the node's memory is
/// the state, the log only has to be durable.
const LOGS_MEMTABLE_BYTES: usize = 8 * 1024 * 1024;
const SMALL_MEMTABLE_BYTES: usize = 1024 * 1024;
/// One block cache for every column family (reads are rare: a follower
/// catching up, a restart; recent entries are read from the memtable).
const BLOCK_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Opens (creating when missing) the store at `path` and returns its log
/// store and state machine, which share the database. RocksDB lives in
/// `path/db`, snapshot files in `path/snapshots`.
pub fn open(path: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // The small column families (`meta`, `sm`) take a write per batch but
    // would take long to fill a memtable, and an unflushed column family
    // keeps every WAL file since its oldest write. Past this much WAL,
    // RocksDB flushes the column families that hold the oldest file back,
    // so the WAL stays bounded however long the node runs.
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let cfs = [CF_LOGS, CF_META, CF_SM].into_iter().map(|name| {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        let mut cf = Options::default();
        cf.set_block_based_table_factory(&table);
        cf.set_write_buffer_size(if name == CF_LOGS {
            LOGS_MEMTABLE_BYTES
        } else {
            SMALL_MEMTABLE_BYTES
        });
        cf.set_max_write_buffer_number(2);
        ColumnFamilyDescriptor::new(name, cf)
    });
    let db = Arc::new(DB::open_cf_descriptors(&opts, path.join("db"), cfs)?);
    let sm = StateMachineStore::load(db.clone(), path.join("snapshots"))?;
    Ok((LogStore::new(db), sm))
}

/// `index` as an 8-byte big-endian key, so keys sort by index.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index of a `logs` key.
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Encodes a log entry as stored in `logs`.
pub(crate) fn encode_entry(entry: &Entry<TypeConfig>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(entry)
}

/// Decodes a log entry stored in `logs`.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

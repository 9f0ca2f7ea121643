//! The data dir: an exclusive lock, the identity of the node and cluster
//! that wrote it, and the RocksDB store under `raft/`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const IDENTITY_FILE: &str = "identity.json";
const LOCK_FILE: &str = "LOCK";

/// Who wrote a data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    format: u32,
    node_id: u64,
    /// Fingerprint of the cluster secret.
    cluster: String,
}

/// An open, locked data dir. The lock is released when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

/// Why a data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data dir {0} is in use by another process")]
    InUse(PathBuf),
    #[error(
        "data dir {path} belongs to node {found}, not node {expected}; start it with --node-id {found} or use another data dir"
    )]
    OtherNode {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error(
        "data dir {0} was written by another cluster (its cluster secret differs); use the right --cluster-secret or another data dir"
    )]
    OtherCluster(PathBuf),
    #[error("data dir {path}: {IDENTITY_FILE} is unreadable: {problem}")]
    BadIdentity { path: PathBuf, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DataDir {
    /// Creates (when missing) and locks the dir, then checks that it was
    /// written by this node of this cluster, or writes that it is.
    pub fn open(
        path: &Path,
        node_id: u64,
        cluster_fingerprint: &str,
    ) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(path).map_err(io(path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::InUse(path.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let identity_path = path.join(IDENTITY_FILE);
        let want = Identity {
            format: 1,
            node_id,
            cluster: cluster_fingerprint.to_owned(),
        };
        match std::fs::read(&identity_path) {
            Ok(bytes) => {
                let found: Identity =
                    serde_json::from_slice(&bytes).map_err(|e| DataDirError::BadIdentity {
                        path: path.to_owned(),
                        problem: e.to_string(),
                    })?;
                if found.node_id != node_id {
                    return Err(DataDirError::OtherNode {
                        path: path.to_owned(),
                        found: found.node_id,
                        expected: node_id,
                    });
                }
                if found.cluster != want.cluster {
                    return Err(DataDirError::OtherCluster(path.to_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if path.join("raft").exists() {
                    return Err(DataDirError::BadIdentity {
                        path: path.to_owned(),
                        problem: "missing, but the dir holds Raft data".into(),
                    });
                }
                let bytes =
                    serde_json::to_vec_pretty(&want).map_err(|e| DataDirError::BadIdentity {
                        path: path.to_owned(),
                        problem: e.to_string(),
                    })?;
                write_atomic(&identity_path, &bytes)?;
            }
            Err(e) => return Err(io(&identity_path)(e)),
        }
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// Where RocksDB lives.
    pub fn raft_path(&self) -> PathBuf {
        self.path.join("raft")
    }

    /// The dir itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_checked_and_the_dir_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir::open(tmp.path(), 1, "aa").unwrap();
        assert!(tmp.path().join(IDENTITY_FILE).exists());
        assert!(matches!(
            DataDir::open(tmp.path(), 1, "aa"),
            Err(DataDirError::InUse(_))
        ));
        drop(d);
        assert!(DataDir::open(tmp.path(), 1, "aa").is_ok());
        assert!(matches!(
            DataDir::open(tmp.path(), 2, "aa"),
            Err(DataDirError::OtherNode { found: 1, .. })
        ));
        assert!(matches!(
            DataDir::open(tmp.path(), 1, "bb"),
            Err(DataDirError::OtherCluster(_))
        ));
        std::fs::write(tmp.path().join(IDENTITY_FILE), b"{not json").unwrap();
        assert!(matches!(
            DataDir::open(tmp.path(), 1, "aa"),
            Err(DataDirError::BadIdentity { .. })
        ));
    }
}

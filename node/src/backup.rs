//! Backups and restores of the whole replicated state.
//!
//! A backup is taken online from any node (`GET /admin/v1/backup`, or
//! `pulseplane backup`): the node first catches up with everything
//! committed when the request arrived (a linearizable read), then copies
//! its state at one applied index, so the backup is consistent. The file
//! is JSON: the format, when and where it was taken, the applied index, the
//! SHA-256 of the state's canonical JSON, and the state.
//!
//! `pulseplane-node restore --from FILE` seeds a new data dir with that
//! state as the first snapshot of a new cluster whose members are
//! `--initial-cluster`; started as usual, the nodes elect a leader and
//! serve the restored state. Restoring only the lowest-id member is
//! enough: the others start empty and receive the state from the leader.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use openraft::BasicNode;
use pulseplane_core::State;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Member, parse_initial_cluster};
use crate::datadir::{DataDir, DataDirError};
use crate::secret::Secret;

/// The format tag of a backup file.
pub const FORMAT: &str = "pulseplane-backup/1";

/// A backup file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    /// Unix milliseconds.
    pub taken_at_ms: i64,
    /// The node it was taken from.
    pub node: u64,
    /// The log index the state reflects.
    pub applied_index: u64,
    /// SHA-256 of the state's canonical JSON (what `/admin/v1/node` shows
    /// as `state_digest`).
    pub digest: String,
    pub state: State,
}

/// Why a backup file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a backup file: {0}")]
    Parse(String),
    #[error("format {0:?} is not {FORMAT}")]
    Format(String),
    #[error("the state's digest is {actual}, not the {recorded} the file records: it is damaged")]
    Digest { recorded: String, actual: String },
}

impl Backup {
    /// A backup of `state` (digest computed here).
    pub fn of(state: State, node: u64, applied_index: u64, taken_at_ms: i64) -> Backup {
        Backup {
            format: FORMAT.to_owned(),
            taken_at_ms,
            node,
            applied_index,
            digest: state.digest(),
            state,
        }
    }

    /// Parses and checks a backup file: its format, and that the state
    /// matches the digest.
    pub fn parse(bytes: &[u8]) -> Result<Backup, BackupError> {
        let backup: Backup =
            serde_json::from_slice(bytes).map_err(|e| BackupError::Parse(e.to_string()))?;
        if backup.format != FORMAT {
            return Err(BackupError::Format(backup.format));
        }
        let actual = backup.state.digest();
        if actual != backup.digest {
            return Err(BackupError::Digest {
                recorded: backup.digest,
                actual,
            });
        }
        Ok(backup)
    }
}

/// `pulseplane-node restore`: seed a new data dir from a backup.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pulseplane-node restore",
    about = "Seed a new node's data dir from a backup file, as a member of a new cluster"
)]
pub struct RestoreCli {
    /// The backup file (from `pulseplane backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// This node's id in the new cluster.
    #[arg(long, env = "PULSEPLANE_NODE_ID")]
    pub node_id: u64,
    /// A new (empty) data dir.
    #[arg(long, env = "PULSEPLANE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The new cluster's members, `id=host:port,...`, as the nodes will be
    /// started with.
    #[arg(long, env = "PULSEPLANE_INITIAL_CLUSTER")]
    pub initial_cluster: String,
    /// The new cluster's secret.
    #[arg(long, env = "PULSEPLANE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    #[arg(
        long,
        env = "PULSEPLANE_CLUSTER_SECRET_FILE",
        conflicts_with = "cluster_secret"
    )]
    pub cluster_secret_file: Option<PathBuf>,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--from {path}: {source}")]
    Backup {
        path: PathBuf,
        #[source]
        source: BackupError,
    },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("{0}")]
    Store(#[from] pulseplane_raft_store::StoreError),
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub digest: String,
    pub applied_index: u64,
    pub environments: usize,
    pub members: Vec<u64>,
}

impl RestoreCli {
    /// Checks the file and the flags, then seeds the data dir.
    pub async fn run(&self) -> Result<Restored, RestoreError> {
        let members: Vec<Member> = parse_initial_cluster(&self.initial_cluster)?;
        if !members.iter().any(|m| m.id == self.node_id) {
            return Err(ConfigError::Invalid {
                flag: "--initial-cluster",
                problem: format!("does not list this node's id {}", self.node_id),
            }
            .into());
        }
        let secret_text = match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    flag: "--cluster-secret-file",
                    path: path.clone(),
                    source,
                })?
            }
            (None, None) => String::new(),
        };
        let secret = Secret::new(secret_text.trim()).ok_or_else(|| ConfigError::Invalid {
            flag: "--cluster-secret",
            problem: "is required: give --cluster-secret or --cluster-secret-file".into(),
        })?;
        let bytes = std::fs::read(&self.from).map_err(|source| RestoreError::Read {
            path: self.from.clone(),
            source,
        })?;
        let backup = Backup::parse(&bytes).map_err(|source| RestoreError::Backup {
            path: self.from.clone(),
            source,
        })?;
        let dir = DataDir::open(&self.data_dir, self.node_id, &secret.fingerprint())?;
        let (_log, mut sm) = pulseplane_raft_store::open(&dir.raft_path())?;
        let voters: BTreeMap<u64, BasicNode> = members
            .iter()
            .map(|m| (m.id, BasicNode::new(&m.address)))
            .collect();
        let environments = backup.state.environments.len();
        sm.seed(backup.state, voters).await?;
        Ok(Restored {
            digest: backup.digest,
            applied_index: backup.applied_index,
            environments,
            members: members.iter().map(|m| m.id).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_foreign_file_is_refused() {
        let state = State::new();
        let good = serde_json::to_vec(&Backup::of(state, 1, 7, 0)).unwrap();
        assert!(Backup::parse(&good).is_ok());
        assert!(matches!(Backup::parse(b"{}"), Err(BackupError::Parse(_))));
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["format"] = "other/1".into();
        assert!(matches!(
            Backup::parse(&serde_json::to_vec(&v).unwrap()),
            Err(BackupError::Format(_))
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["state"]["settings"]["version_retention"] = 7.into();
        assert!(matches!(
            Backup::parse(&serde_json::to_vec(&v).unwrap()),
            Err(BackupError::Digest { .. })
        ));
    }
}

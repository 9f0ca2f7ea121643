//! Raft on this node: start-up, cluster formation, the peer transport and
//! membership changes. openraft's generics stop here (and in raft-store).
//!
//! Layout:
//! - `client`: the pooled peer HTTP client (MessagePack, cluster secret)
//! - `network`: openraft's `RaftNetwork` over that client
//! - `eager`: a leader's new entries sent to the voters while it syncs them
//! - `server`: the `/raft/*` endpoints peers call
//! - `membership`: cluster status, adding and removing nodes

pub mod client;
pub mod eager;
pub mod membership;
pub mod network;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, SnapshotPolicy};
use pulseplane_raft_store::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tracing::info;

use crate::config::NodeConfig;
use crate::raft::client::PeerClient;
use crate::raft::eager::Acks;
use crate::raft::network::NetworkFactory;

/// This node's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Why Raft could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft settings: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft failed: {0}")]
    Fatal(String),
}

/// openraft's settings from the node's.
#[allow(clippy::result_large_err)] // called once, at start
pub fn raft_config(cfg: &NodeConfig) -> Result<Arc<Config>, StartError> {
    let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let config = Config {
        cluster_name: "pulseplane".into(),
        heartbeat_interval: ms(cfg.heartbeat_interval).max(1),
        election_timeout_min: ms(cfg.election_timeout),
        // openraft's leader lease equals the upper bound, and a follower
        // elects only after lease + timeout: a narrow range keeps failover
        // short.
        election_timeout_max: ms(cfg.election_timeout) * 3 / 2,
        install_snapshot_timeout: ms(cfg.snapshot_chunk_timeout),
        snapshot_max_chunk_size: cfg.snapshot_chunk_bytes,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs),
        max_in_snapshot_log_to_keep: cfg.keep_logs,
        // With entries of up to ~2 MiB (see write::MAX_ENTRY_BYTES), 64 per
        // append keeps an append within the peer body limit.
        max_payload_entries: 64,
        replication_lag_threshold: cfg.keep_logs.max(1),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

/// Starts Raft over the opened stores.
pub async fn start(
    cfg: &NodeConfig,
    log: LogStore,
    sm: StateMachineStore,
    peers: PeerClient,
    acks: Option<Arc<Acks>>,
) -> Result<Raft, StartError> {
    let network = NetworkFactory {
        id: cfg.node_id,
        client: peers,
        rpc_timeout: cfg.peer_timeout,
        snapshot_timeout: cfg.snapshot_chunk_timeout,
        acks,
    };
    Raft::new(cfg.node_id, raft_config(cfg)?, network, log, sm)
        .await
        .map_err(|e| StartError::Fatal(e.to_string()))
}

/// On a node that has never been part of a cluster (no membership in its
/// log), the founding member with the lowest id initializes the cluster
/// from `--initial-cluster`; every other member waits to be contacted. A
/// node that has been part of a cluster ignores the list. Should a wiped
/// founding member initialize again, its one-entry log cannot win an
/// election against the members that hold the real log, and the leader's
/// appends replace it.
pub async fn form_cluster(raft: &Raft, cfg: &NodeConfig) -> Result<(), StartError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Fatal(e.to_string()))?;
    if initialized || cfg.initial_cluster.is_empty() {
        return Ok(());
    }
    let lowest = cfg.initial_cluster.iter().map(|m| m.id).min();
    if lowest != Some(cfg.node_id) {
        info!("waiting for node {lowest:?} to form the cluster");
        return Ok(());
    }
    let members: BTreeMap<NodeId, BasicNode> = cfg
        .initial_cluster
        .iter()
        .map(|m| (m.id, BasicNode::new(&m.address)))
        .collect();
    info!(members = members.len(), "initializing the cluster");
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        // Already initialized by an earlier run that crashed before the
        // data dir was marked: nothing to do.
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => Ok(()),
        Err(e) => Err(StartError::Fatal(e.to_string())),
    }
}

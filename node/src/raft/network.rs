//! openraft's network over the peer HTTP client: one `Network` per target.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use pulseplane_raft_store::{NodeId, TypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::client::{PeerClient, PeerError};

/// Paths of the Raft RPCs under `/raft/`.
pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";

/// Builds a [`Network`] for each target.
#[derive(Clone)]
pub struct NetworkFactory {
    pub client: PeerClient,
    pub rpc_timeout: Duration,
    pub snapshot_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            client: self.client.clone(),
            target,
            node: node.clone(),
            rpc_timeout: self.rpc_timeout,
            snapshot_timeout: self.snapshot_timeout,
        }
    }
}

/// The connection to one peer (the HTTP pool is shared).
pub struct Network {
    client: PeerClient,
    target: NodeId,
    node: BasicNode,
    rpc_timeout: Duration,
    snapshot_timeout: Duration,
}

type Rpc<E> = RPCError<NodeId, BasicNode, E>;

impl Network {
    async fn rpc<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Rpc<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, E> = self
            .client
            .call(&self.node.addr, self.target, path, req, timeout)
            .await
            .map_err(|e| match &e {
                PeerError::Unreachable { .. } | PeerError::Timeout { .. } => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        let timeout = option
            .hard_ttl()
            .min(self.rpc_timeout)
            .max(Duration::from_millis(50));
        self.rpc(PATH_APPEND, &rpc, timeout).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<RaftError<NodeId, InstallSnapshotError>>> {
        self.rpc(PATH_SNAPSHOT, &rpc, self.snapshot_timeout).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        let timeout = option
            .hard_ttl()
            .min(self.rpc_timeout)
            .max(Duration::from_millis(50));
        self.rpc(PATH_VOTE, &rpc, timeout).await
    }
}

//! openraft's network over the peer HTTP client: one `Network` per target.

use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use pulseplane_raft_store::{NodeId, TypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::client::{PeerClient, PeerError};
use crate::raft::eager::Acks;

/// Paths of the Raft RPCs under `/raft/`.
pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";

/// Builds a [`Network`] for each target.
#[derive(Clone)]
pub struct NetworkFactory {
    /// This node's id.
    pub id: NodeId,
    pub client: PeerClient,
    pub rpc_timeout: Duration,
    pub snapshot_timeout: Duration,
    /// The voters' answers to eager replication, when it is on.
    pub acks: Option<Arc<Acks>>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        // openraft asks for a client when it starts replicating to a
        // target (and for each leadership check): what the target accepted
        // before is not taken on trust by the new one.
        if let Some(acks) = &self.acks {
            acks.forget(target);
        }
        Network {
            id: self.id,
            client: self.client.clone(),
            target,
            node: node.clone(),
            rpc_timeout: self.rpc_timeout,
            snapshot_timeout: self.snapshot_timeout,
            acks: self.acks.clone(),
        }
    }
}

/// The connection to one peer (the HTTP pool is shared).
pub struct Network {
    id: NodeId,
    client: PeerClient,
    target: NodeId,
    node: BasicNode,
    rpc_timeout: Duration,
    snapshot_timeout: Duration,
    acks: Option<Arc<Acks>>,
}

type Rpc<E> = RPCError<NodeId, BasicNode, E>;

impl Network {
    /// Calls `path` on the peer. A peer that cannot be reached is
    /// `Unreachable`, for which openraft pauses replication to it (500 ms);
    /// a call that ran out of time is a `Timeout`, retried at the next
    /// heartbeat without a pause: a busy peer (a long sync, a snapshot
    /// being built) is no reason to stop sending to it.
    async fn rpc<Req, Resp, E>(
        &self,
        action: RPCTypes,
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
            .map_err(|e| rpc_error(&e, action, self.id, self.target, timeout))?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// openraft's error for a failed call (see [`Network::rpc`]).
fn rpc_error<E: std::error::Error>(
    e: &PeerError,
    action: RPCTypes,
    id: NodeId,
    target: NodeId,
    timeout: Duration,
) -> Rpc<E> {
    match e {
        PeerError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(e)),
        PeerError::Timeout { .. } => RPCError::Timeout(Timeout {
            action,
            id,
            target,
            timeout,
        }),
        _ => RPCError::Network(NetworkError::new(e)),
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
        // Entries the target already accepted from eager replication (or
        // will have, once the request out with them is answered) are not
        // sent again. A second request would only queue behind that one
        // at the target, so its answer is awaited for as long as this
        // call may take; should it fail, the entries go out in what time
        // is left.
        let started = tokio::time::Instant::now();
        if let (Some(acks), Some(last)) = (&self.acks, rpc.entries.last())
            && acks
                .covers(self.target, &rpc.vote, last.log_id, timeout)
                .await
        {
            return Ok(AppendEntriesResponse::Success);
        }
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        self.rpc(RPCTypes::AppendEntries, PATH_APPEND, &rpc, left)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<RaftError<NodeId, InstallSnapshotError>>> {
        self.rpc(
            RPCTypes::InstallSnapshot,
            PATH_SNAPSHOT,
            &rpc,
            self.snapshot_timeout,
        )
        .await
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
        self.rpc(RPCTypes::Vote, PATH_VOTE, &rpc, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that answers late must not be paused like one that cannot be
    /// reached: openraft pauses replication to an `Unreachable` peer for
    /// 500 ms, and pausing every busy follower at once stalls all writes.
    #[tokio::test]
    async fn a_late_answer_is_a_timeout_and_a_refused_connection_unreachable() {
        let timeout = Duration::from_millis(100);
        let late = PeerError::Timeout {
            address: "127.0.0.1:1".into(),
        };
        let e: Rpc<RaftError<NodeId>> = rpc_error(&late, RPCTypes::AppendEntries, 1, 2, timeout);
        match e {
            RPCError::Timeout(t) => {
                assert_eq!(
                    (t.action, t.id, t.target, t.timeout),
                    (RPCTypes::AppendEntries, 1, 2, timeout)
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        // A port nothing listens on: the connection is refused.
        let refused = reqwest::Client::new()
            .post("http://127.0.0.1:1/raft/append")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        let refused = PeerError::Unreachable {
            address: "127.0.0.1:1".into(),
            source: refused,
        };
        let e: Rpc<RaftError<NodeId>> = rpc_error(&refused, RPCTypes::AppendEntries, 1, 2, timeout);
        assert!(matches!(e, RPCError::Unreachable(_)), "{e:?}");
        let garbled = PeerError::Decode {
            address: "127.0.0.1:1".into(),
            problem: "truncated".into(),
        };
        let e: Rpc<RaftError<NodeId>> = rpc_error(&garbled, RPCTypes::Vote, 1, 2, timeout);
        assert!(matches!(e, RPCError::Network(_)), "{e:?}");
    }
}

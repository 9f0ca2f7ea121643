//! Cluster status and membership changes. They run on the leader; a
//! follower forwards them there over the peer transport.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use pulseplane_raft_store::NodeId;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::node::Node;
use crate::raft::server::{LocalStatus, PATH_ADMIN, PATH_STATUS};

/// A membership or status request, as forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    Status,
    AddNode {
        id: NodeId,
        address: String,
        voter: bool,
    },
    RemoveNode {
        id: NodeId,
    },
}

/// What `GET /admin/v1/cluster` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// The committed index as far as the leader has applied it.
    pub applied_index: u64,
    pub members: Vec<MemberStatus>,
}

/// One member as the leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberStatus {
    pub id: NodeId,
    pub address: String,
    /// `voter` or `learner`.
    pub role: String,
    /// The last log index the leader knows the member holds.
    pub matched_index: Option<u64>,
    /// The member's own applied index (absent when it did not answer).
    pub applied_index: Option<u64>,
    /// Entries the member is behind the leader's log.
    pub lag: Option<u64>,
    pub reachable: bool,
}

/// Why a membership request failed.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    #[error("the cluster has no leader")]
    NoLeader,
    #[error("node is not the leader; the leader is {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("{0}")]
    Conflict(String),
    #[error("node {0} is not a member")]
    NotFound(NodeId),
    #[error("membership change failed: {0}")]
    Failed(String),
}

fn map_write<E: std::fmt::Display>(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    what: E,
) -> AdminError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AdminError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            AdminError::Conflict(format!("{what}: {c}"))
        }
        RaftError::Fatal(f) => AdminError::Failed(format!("{what}: {f}")),
    }
}

/// Runs `req` here when this node leads, else on the leader.
pub async fn handle(node: &Node, req: AdminRequest) -> Result<ClusterStatus, AdminError> {
    let deadline = tokio::time::Instant::now() + node.writer.timeout();
    loop {
        let leader = node.raft.metrics().borrow().current_leader;
        let result = match leader {
            None => Err(AdminError::NoLeader),
            Some(l) if l == node.id => run_on_leader(node, req.clone()).await,
            Some(l) => {
                let address = node.member_address(l);
                match address {
                    None => Err(AdminError::NoLeader),
                    Some(address) => node
                        .peers
                        .call::<_, Result<ClusterStatus, AdminError>>(
                            &address,
                            l,
                            PATH_ADMIN,
                            &req,
                            // Adding a node waits for it to catch up.
                            node.writer.timeout() * 6,
                        )
                        .await
                        .unwrap_or_else(|e| Err(AdminError::Failed(e.to_string()))),
                }
            }
        };
        match result {
            Err(AdminError::NoLeader | AdminError::NotLeader { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Runs `req` on this node, which must be the leader.
pub async fn run_on_leader(node: &Node, req: AdminRequest) -> Result<ClusterStatus, AdminError> {
    match req {
        AdminRequest::Status => status(node).await,
        AdminRequest::AddNode { id, address, voter } => {
            add_node(node, id, address, voter).await?;
            status(node).await
        }
        AdminRequest::RemoveNode { id } => {
            remove_node(node, id).await?;
            status(node).await
        }
    }
}

async fn add_node(node: &Node, id: NodeId, address: String, voter: bool) -> Result<(), AdminError> {
    let (existing, is_voter) = {
        let m = node.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        let existing = membership.get_node(&id).map(|n| n.addr.clone());
        let is_voter = membership.voter_ids().any(|v| v == id);
        if let Some((other, _)) = membership
            .nodes()
            .find(|(nid, n)| **nid != id && n.addr == address)
        {
            return Err(AdminError::Conflict(format!(
                "address {address} is already used by node {other}"
            )));
        }
        (existing, is_voter)
    };
    match existing {
        Some(a) if a != address => {
            return Err(AdminError::Conflict(format!(
                "node id {id} is already a member at {a}; remove it first or use another id"
            )));
        }
        Some(_) if is_voter || !voter => return Ok(()),
        _ => {}
    }
    if existing.is_none() {
        info!(id, address = %address, "adding a learner");
        node.raft
            .add_learner(id, BasicNode::new(&address), true)
            .await
            .map_err(|e| map_write(e, "adding the learner"))?;
    }
    if voter {
        info!(id, "promoting the learner to voter");
        node.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| map_write(e, "promoting the learner"))?;
    }
    Ok(())
}

async fn remove_node(node: &Node, id: NodeId) -> Result<(), AdminError> {
    let (is_voter, is_learner) = {
        let m = node.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        (
            membership.voter_ids().any(|v| v == id),
            membership.learner_ids().any(|v| v == id),
        )
    };
    if is_voter {
        info!(id, "removing a voter");
        node.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| map_write(e, "removing the voter"))?;
        Ok(())
    } else if is_learner {
        info!(id, "removing a learner");
        node.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| map_write(e, "removing the learner"))?;
        Ok(())
    } else {
        // Already gone: removing is idempotent.
        Ok(())
    }
}

async fn status(node: &Node) -> Result<ClusterStatus, AdminError> {
    let metrics = node.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(AdminError::NotLeader {
            leader: metrics.current_leader,
        });
    }
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last_log = metrics.last_log_index.unwrap_or(0);
    let replication: BTreeMap<NodeId, Option<u64>> = metrics
        .replication
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, l)| (id, l.map(|l| l.index)))
        .collect();
    let mut probes = Vec::new();
    for (id, n) in membership.nodes() {
        let (id, address) = (*id, n.addr.clone());
        let peers = node.peers.clone();
        let me = node.id;
        let local = node.local_status();
        probes.push(async move {
            let s: Option<LocalStatus> = if id == me {
                Some(local)
            } else {
                peers
                    .call(&address, id, PATH_STATUS, &(), Duration::from_millis(500))
                    .await
                    .ok()
            };
            (id, address, s)
        });
    }
    let mut members = Vec::new();
    for (id, address, s) in futures_join_all(probes).await {
        let matched = if id == node.id {
            Some(last_log)
        } else {
            replication.get(&id).copied().flatten()
        };
        members.push(MemberStatus {
            id,
            role: if voters.contains(&id) {
                "voter"
            } else {
                "learner"
            }
            .into(),
            matched_index: matched,
            applied_index: s.as_ref().map(|s| s.applied_index),
            lag: matched.map(|m| last_log.saturating_sub(m)),
            reachable: s.is_some(),
            address,
        });
    }
    Ok(ClusterStatus {
        leader: metrics.current_leader,
        term: metrics.current_term,
        last_log_index: last_log,
        applied_index: metrics.last_applied.map_or(0, |l| l.index),
        members,
    })
}

/// Awaits all futures concurrently, keeping their order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

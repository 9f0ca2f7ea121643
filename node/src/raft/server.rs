//! The `/raft/*` endpoints peers call: Raft RPCs, forwarded writes,
//! read-index requests, status probes and forwarded membership requests.
//! Bodies are MessagePack; every request must carry the cluster secret.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use pulseplane_core::CommandEnvelope;
use pulseplane_raft_store::{NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::node::Node;
use crate::raft::client::{MSGPACK, SECRET_HEADER, TARGET_HEADER};
use crate::raft::membership::{self, AdminRequest};
use crate::raft::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use crate::write::{PATH_PROPOSE, WriteError};

pub const PATH_READ_INDEX: &str = "/raft/read-index";
pub const PATH_STATUS: &str = "/raft/status";
pub const PATH_ADMIN: &str = "/raft/admin";
/// The SDK instances that polled this node for an environment.
pub const PATH_FLEET: &str = "/raft/fleet";

/// A node's own view of itself, for status probes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LocalStatus {
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
}

/// Largest peer request body: snapshot chunks (MessagePack may double the
/// bytes) and appends of up to `max_payload_entries` (64) entries of at
/// most `MAX_ENTRY_BYTES` plus one request body each (1 MiB + 1 MiB by
/// default). Peers are
/// authenticated before their bodies are read.
pub fn peer_body_limit(snapshot_chunk_bytes: u64) -> usize {
    let chunk = usize::try_from(snapshot_chunk_bytes).unwrap_or(usize::MAX / 4);
    chunk.saturating_mul(2).saturating_add(256 * 1024 * 1024)
}

/// The peer routes.
pub fn router(node: Arc<Node>, body_limit: usize) -> Router {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_PROPOSE, post(propose))
        .route(PATH_READ_INDEX, post(read_index))
        .route(PATH_STATUS, post(status))
        .route(PATH_ADMIN, post(admin))
        .route(PATH_FLEET, post(fleet))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(crate::api::request_id::adopt))
        .layer(middleware::from_fn_with_state(node.clone(), authenticate))
        .with_state(node)
}

/// Refuses a request without the cluster secret (401, logged) or meant for
/// another node id (409).
async fn authenticate(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let secret_ok = req
        .headers()
        .get(SECRET_HEADER)
        .is_some_and(|v| node.secret.matches(v.as_bytes()));
    if !secret_ok {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        warn!(path = %req.uri().path(), peer = %peer, "peer request without a valid cluster secret refused");
        return (StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response();
    }
    if let Some(target) = req.headers().get(TARGET_HEADER) {
        let ok = target
            .to_str()
            .ok()
            .and_then(|t| t.parse::<NodeId>().ok())
            .is_some_and(|t| t == node.id);
        if !ok {
            warn!(path = %req.uri().path(), target = ?target, me = node.id, "peer request for another node id refused");
            return (
                StatusCode::CONFLICT,
                format!("this is node {}, not node {:?}", node.id, target),
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[allow(clippy::result_large_err)] // the error is the response to send
fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    rmp_serde::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable body: {e}")).into_response())
}

fn encode<T: Serialize>(value: &T) -> Response {
    match rmp_serde::to_vec_named(value) {
        Ok(bytes) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(MSGPACK),
            );
            (headers, bytes).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}"),
        )
            .into_response(),
    }
}

async fn append(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    encode(&node.raft.append_entries(req).await)
}

async fn vote(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: VoteRequest<NodeId> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    encode(&node.raft.vote(req).await)
}

async fn snapshot(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    node.metrics
        .snapshot_chunks
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if req.offset == 0 {
        tracing::info!(
            leader = ?req.vote.leader_id().voted_for(),
            snapshot = %req.meta.snapshot_id,
            "receiving a snapshot"
        );
    }
    encode(&node.raft.install_snapshot(req).await)
}

async fn propose(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let cmd: CommandEnvelope = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let leader = node.raft.metrics().borrow().current_leader;
    tracing::debug!(leader = ?leader, "write forwarded by a peer");
    let answer = if leader == Some(node.id) {
        node.writer.propose_local(cmd, body.len()).await
    } else {
        Err(WriteError::NotLeader { leader })
    };
    encode(&answer)
}

async fn read_index(State(node): State<Arc<Node>>) -> Response {
    let answer: Result<u64, WriteError> = match node.raft.get_read_log_id().await {
        Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
        Err(_) => Err(WriteError::NotLeader {
            leader: node.raft.metrics().borrow().current_leader,
        }),
    };
    encode(&answer)
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    encode(&node.local_status())
}

/// This node's view of an environment's SDK instances: its published
/// version and the instances (empty for an environment it does not know).
async fn fleet(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let env: String = match decode(&body) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let view: (u64, Vec<crate::envs::InstanceSeen>) = match node.envs.get(&env) {
        Some(actor) => (actor.current().map_or(0, |p| p.version), actor.instances()),
        None => (0, Vec::new()),
    };
    encode(&view)
}

async fn admin(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: AdminRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    encode(&membership::run_on_leader(&node, req).await)
}

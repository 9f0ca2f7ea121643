//! The admin API: cluster status and membership changes. Every node serves
//! it; the work happens on the leader.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use pulseplane_core::Command;
use pulseplane_raft_store::NodeId;
use serde::Deserialize;

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::common::WriteBody;
use crate::api::common::{WriteOk, parse_body, read_barrier, read_response, submit};
use crate::api::error::ErrorBody;
use crate::backup::Backup;
use crate::config::check_address;
use crate::node::Node;
use crate::raft::membership::ClusterStatus;
use crate::raft::membership::{self, AdminError, AdminRequest};
use pulseplane_core::state::{Settings, SettingsChange};
use tracing::warn;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/node", get(this_node))
        .route("/admin/v1/snapshot", axum::routing::post(snapshot))
        .route("/admin/v1/backup", get(backup))
        .route("/admin/v1/cluster/nodes", axum::routing::post(add_node))
        .route("/admin/v1/cluster/nodes/{id}", delete(remove_node))
        .route("/admin/v1/settings", get(settings).put(configure))
}

/// `GET /admin/v1/settings`: the replicated settings.
#[utoipa::path(
    get,
    path = "/admin/v1/settings",
    tag = "admin",
    summary = "The replicated settings",
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn settings(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    read_barrier(&node, None).await?;
    let settings = node.sm.read(|_, state| state.settings.clone());
    Ok(read_response(node.sm.applied_index(), &settings))
}

/// `PUT /admin/v1/settings`: changes the given settings cluster-wide.
#[utoipa::path(
    put,
    path = "/admin/v1/settings",
    tag = "admin",
    summary = "Change the replicated settings",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = SettingsChange, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn configure(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let change: SettingsChange = parse_body(&body)?;
    change.check().map_err(ApiError::invalid)?;
    let command = Command::Configure(change);
    submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::NoLeader | AdminError::NotLeader { .. } => {
                ApiError::unavailable("no_leader", e.to_string())
            }
            AdminError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "membership_conflict", m)
            }
            AdminError::NotFound(_) => ApiError::not_found("node_not_found", e.to_string()),
            AdminError::Failed(m) => ApiError::unavailable("membership_change_failed", m),
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/v1/cluster",
    tag = "admin",
    summary = "Cluster status (from the leader)",
    responses(
        (status = 200, description = "Cluster status", body = ClusterStatus),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn cluster(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let status = membership::handle(&node, AdminRequest::Status).await?;
    Ok(Json(status).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddNode {
    id: NodeId,
    address: String,
    #[serde(default = "yes")]
    voter: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(
    post,
    path = "/admin/v1/cluster/nodes",
    tag = "admin",
    summary = "Add a node (learner, then voter)",
    request_body(content = AddNode, content_type = "application/json"),
    responses(
        (status = 200, description = "Cluster status after the change", body = ClusterStatus),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn add_node(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AddNode = parse_body(&body)?;
    if req.id == 0 {
        return Err(ApiError::field("/id", "must be a positive integer"));
    }
    if check_address("address", &req.address).is_err() {
        return Err(ApiError::field(
            "/address",
            format!("{:?} is not host:port", req.address),
        ));
    }
    let id = req.id;
    let status = membership::handle(
        &node,
        AdminRequest::AddNode {
            id,
            address: req.address,
            voter: req.voter,
        },
    )
    .await?;
    record(&node, &headers, &actor, "add_node", id).await;
    Ok(Json(status).into_response())
}

/// Puts a membership change, which happens outside the replicated state,
/// into the audit log. The change has been made, so a failure here is
/// logged, not answered.
async fn record(node: &Arc<Node>, headers: &HeaderMap, actor: &Actor, action: &str, id: NodeId) {
    let command = Command::Record {
        action: action.to_owned(),
        target: format!("node:{id}"),
    };
    if let Err(e) = submit(node, headers, actor, command, 0, StatusCode::OK).await {
        warn!(action, node = id, error = %e.message, "membership change not audited");
    }
}

#[utoipa::path(
    delete,
    path = "/admin/v1/cluster/nodes/{id}",
    tag = "admin",
    summary = "Remove a node",
    params(
        ("id" = String, Path, description = "Node id")
    ),
    responses(
        (status = 200, description = "Cluster status after the change", body = ClusterStatus),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn remove_node(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: NodeId = id
        .parse()
        .map_err(|_| ApiError::field("/id", format!("{id:?} is not a node id")))?;
    let status = membership::handle(&node, AdminRequest::RemoveNode { id }).await?;
    record(&node, &headers, &actor, "remove_node", id).await;
    Ok(Json(status).into_response())
}

/// This node's own view: role, leader, term, indexes and the digest of its
/// applied state (equal on every node that applied the same index).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NodeView {
    #[serde(flatten)]
    status: crate::raft::server::LocalStatus,
    state_digest: String,
    /// The log index the current snapshot covers.
    snapshot_index: Option<u64>,
    snapshot_bytes: u64,
    /// Log entries up to this index have been compacted away.
    purged_index: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/node",
    tag = "admin",
    summary = "This node's own view",
    responses(
        (status = 200, description = "This node", body = NodeView),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn this_node(State(node): State<Arc<Node>>) -> Response {
    let status = node.local_status();
    let (snapshot_index, purged_index) = {
        let m = node.raft.metrics();
        let m = m.borrow();
        (m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
    };
    let (applied, digest) = node
        .sm
        .read(|applied, state| (applied.map_or(0, |l| l.index), state.digest()));
    let view = NodeView {
        status: crate::raft::server::LocalStatus {
            applied_index: applied,
            ..status
        },
        state_digest: digest,
        snapshot_index,
        snapshot_bytes: node.sm.snapshot_bytes(),
        purged_index,
    };
    crate::api::common::read_response(applied, &view)
}

/// The snapshot `POST /admin/v1/snapshot` built.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SnapshotBuilt {
    /// The log index it covers.
    snapshot_index: u64,
    snapshot_bytes: u64,
}

/// Builds a snapshot on this node now (and compacts its log per policy);
/// answers once it covers everything applied when the request came.
#[utoipa::path(
    post,
    path = "/admin/v1/snapshot",
    tag = "admin",
    summary = "Build a snapshot on this node now",
    responses(
        (status = 200, description = "The snapshot built", body = SnapshotBuilt),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn snapshot(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let target = node.sm.applied_index();
    node.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| ApiError::unavailable("raft_stopped", e.to_string()))?;
    let mut metrics = node.raft.metrics();
    let done = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            let covered = metrics.borrow_and_update().snapshot.map_or(0, |l| l.index);
            if covered >= target {
                return covered;
            }
            if metrics.changed().await.is_err() {
                return covered;
            }
        }
    })
    .await
    .map_err(|_| {
        ApiError::unavailable("snapshot_timeout", "the snapshot did not finish in 120 s")
    })?;
    // Building copies the whole state: hand the freed pages back now
    // rather than at the next periodic trim.
    let _ = tokio::task::spawn_blocking(crate::node::release_freed_memory).await;
    Ok(Json(SnapshotBuilt {
        snapshot_index: done,
        snapshot_bytes: node.sm.snapshot_bytes(),
    })
    .into_response())
}

/// `GET /admin/v1/backup`: a consistent copy of the whole state. The node
/// first applies everything committed when the request came (a
/// linearizable read), then copies its state at one applied index.
#[utoipa::path(
    get,
    path = "/admin/v1/backup",
    tag = "admin",
    summary = "A consistent backup of the whole state",
    responses(
        (status = 200, description = "The backup file (format pulseplane-backup/1)", body = Object, content_type = "application/json"),
        (status = "4XX", description = "Unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn backup(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    read_barrier(&node, Some("linearizable")).await?;
    let (applied, state) = node.sm.state();
    let index = applied.map_or(0, |l| l.index);
    let id = node.id;
    // Hashing and encoding a large state is CPU work: off the runtime.
    let bytes = tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        serde_json::to_vec(&Backup::of(state, id, index, now))
    })
    .await
    .map_err(|e| ApiError::unavailable("backup_failed", e.to_string()))?
    .map_err(|e| ApiError::unavailable("backup_failed", e.to_string()))?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            ),
            (
                axum::http::HeaderName::from_static(crate::api::common::APPLIED_INDEX_HEADER),
                axum::http::HeaderValue::from(index),
            ),
        ],
        bytes,
    )
        .into_response())
}

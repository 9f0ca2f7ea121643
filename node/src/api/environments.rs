//! `/v1/environments`: create, list, read and delete environments.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use pulseplane_core::Command;
use pulseplane_core::state::EnvState;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::common::{
    PageQuery, WriteOk, paginate, parse_body, read_barrier, read_response, submit,
};
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments", get(list).post(create))
        .route("/v1/environments/{env}", get(read).delete(remove))
}

/// An environment as the API shows it.
#[derive(Debug, Serialize)]
pub struct EnvironmentView {
    pub key: String,
    pub name: String,
    /// The published version; 0 before the first publish.
    pub version: u64,
    pub created_at_ms: i64,
    pub flags: usize,
    pub segments: usize,
    pub published_at_ms: Option<i64>,
    pub published_by: Option<String>,
}

impl EnvironmentView {
    pub fn of(e: &EnvState) -> EnvironmentView {
        let last = e.versions.last();
        EnvironmentView {
            key: e.key.clone(),
            name: e.name.clone(),
            version: e.version(),
            created_at_ms: e.created_at_ms,
            flags: e.draft_flags.len(),
            segments: e.draft_segments.len(),
            published_at_ms: last.map(|v| v.at_ms),
            published_by: last.map(|v| v.author.clone()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEnvironment {
    key: String,
    name: Option<String>,
}

async fn create(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let req: CreateEnvironment = parse_body(&body)?;
    let name = req.name.unwrap_or_else(|| req.key.clone());
    submit(
        &node,
        &headers,
        &actor,
        Command::CreateEnvironment { key: req.key, name },
        body.len(),
        StatusCode::CREATED,
    )
    .await
}

async fn list(
    State(node): State<Arc<Node>>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let page = paginate(
            state
                .environments
                .iter()
                .map(|(k, e)| (k, EnvironmentView::of(e))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    pub consistency: Option<String>,
}

async fn read(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let e = state.env(&env)?;
        Ok(read_response(
            applied.map_or(0, |l| l.index),
            &EnvironmentView::of(e),
        ))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(env): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<WriteOk, ApiError> {
    submit(
        &node,
        &headers,
        &actor,
        Command::DeleteEnvironment {
            key: env,
            force: q.force,
        },
        0,
        StatusCode::OK,
    )
    .await
}

//! `/v1/environments`: create, list, read and delete environments.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use pulseplane_core::state::EnvState;
use pulseplane_core::{Command, Permission};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::{Actor, CallerRef, deny};
use crate::api::common::Query;
use crate::api::common::{Page, WriteBody};
use crate::api::common::{
    PageQuery, WriteOk, paginate, parse_body, read_barrier, read_response, submit,
};
use crate::api::error::ErrorBody;
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments", get(list).post(create))
        .route("/v1/environments/{env}", get(read).delete(remove))
}

/// An environment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEnvironment {
    /// Letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    key: String,
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/environments",
    tag = "environments",
    summary = "Create an environment",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = CreateEnvironment, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = WriteBody),
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(node): State<Arc<Node>>,
    caller: CallerRef,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let req: CreateEnvironment = parse_body(&body)?;
    if !caller.0.allows(Permission::EnvCreate, Some(&req.key)) {
        return Err(deny(
            &node,
            &caller.0,
            Permission::EnvCreate,
            Some(&req.key),
        ));
    }
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

#[utoipa::path(
    get,
    path = "/v1/environments",
    tag = "environments",
    summary = "List environments",
    params(
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of environments", body = Page<EnvironmentView>),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    caller: CallerRef,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        // Only the environments the caller may read.
        let page = paginate(
            state
                .environments
                .iter()
                .filter(|(k, _)| caller.0.allows(Permission::EnvRead, Some(k)))
                .map(|(k, e)| (k, EnvironmentView::of(e))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// `local` (default) or `linearizable`.
    pub consistency: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}",
    tag = "environments",
    summary = "Read an environment",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ReadQuery
    ),
    responses(
        (status = 200, description = "The environment", body = EnvironmentView),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn read(
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    /// Delete even with flags or segments in it.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(
    delete,
    path = "/v1/environments/{env}",
    tag = "environments",
    summary = "Delete an environment (non-empty only with force)",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        DeleteQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn remove(
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

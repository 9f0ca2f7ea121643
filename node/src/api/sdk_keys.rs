//! `/v1/environments/{env}/sdk-keys`: read-only keys for one environment's
//! snapshot and export. A new key's value is answered once and never
//! stored: the replicated state holds its id and SHA-256. Revoking a key
//! holds on every node once the revocation commits.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use pulseplane_core::Command;
use pulseplane_core::access::{SdkKey, SdkKeyRequest};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::common::{
    Page, PageQuery, Query, WriteBody, paginate, parse_body, read_barrier, read_response, submit,
};
use crate::api::error::ErrorBody;
use crate::identity::sdk_key;
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments/{env}/sdk-keys", get(list).post(create))
        .route("/v1/environments/{env}/sdk-keys/{id}", delete(revoke))
}

/// An SDK key as listed (never its value).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SdkKeyView {
    pub id: String,
    pub env: String,
    pub name: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
    pub revoked_by: Option<String>,
}

impl SdkKeyView {
    fn of(k: &SdkKey) -> SdkKeyView {
        SdkKeyView {
            id: k.id.clone(),
            env: k.env.clone(),
            name: k.name.clone(),
            created_at_ms: k.created_at_ms,
            created_by: k.created_by.clone(),
            revoked_at_ms: k.revoked_at_ms,
            revoked_by: k.revoked_by.clone(),
        }
    }
}

/// The body of a key creation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSdkKey {
    /// A label, such as the service that will use the key.
    #[serde(default)]
    name: String,
}

/// A new key: `key` is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedSdkKey {
    pub id: String,
    pub env: String,
    pub name: String,
    /// The key itself; only its hash is stored, so keep it now.
    pub key: String,
    #[serde(flatten)]
    pub write: WriteBody,
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/sdk-keys",
    tag = "access",
    summary = "List the environment's SDK keys (revoked ones included)",
    params(
        ("env" = String, Path, description = "Environment key"),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of keys", body = Page<SdkKeyView>),
        (status = "4XX", description = "Bad input, unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "Catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        state.env(&env)?;
        let page = paginate(
            state
                .access
                .sdk_keys
                .iter()
                .filter(|(_, k)| k.env == env)
                .map(|(id, k)| (id, SdkKeyView::of(k))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[utoipa::path(
    post,
    path = "/v1/environments/{env}/sdk-keys",
    tag = "access",
    summary = "Create an SDK key (its value is answered once)",
    params(
        ("env" = String, Path, description = "Environment key"),
        ("Idempotency-Key" = Option<String>, Header, description = "Ignored for a retry's new key: a retry with the same key is refused as reused")
    ),
    request_body(content = CreateSdkKey, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = CreatedSdkKey),
        (status = "4XX", description = "Bad input, unauthenticated, not allowed or no such environment", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateSdkKey = parse_body(&body)?;
    let new = sdk_key::generate();
    let command = Command::CreateSdkKey(SdkKeyRequest {
        env: env.clone(),
        id: new.id.clone(),
        name: req.name.clone(),
        hash: new.hash,
    });
    let ok = submit(
        &node,
        &headers,
        &actor,
        command,
        body.len(),
        StatusCode::CREATED,
    )
    .await?;
    let created = CreatedSdkKey {
        id: new.id,
        env,
        name: req.name,
        key: new.key.expose().to_owned(),
        write: ok.body,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/environments/{env}/sdk-keys/{id}",
    tag = "access",
    summary = "Revoke an SDK key",
    params(
        ("env" = String, Path, description = "Environment key"),
        ("id" = String, Path, description = "The key's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = WriteBody),
        (status = "4XX", description = "Unauthenticated, not allowed or not found", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path((env, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ok = submit(
        &node,
        &headers,
        &actor,
        Command::RevokeSdkKey { env, id },
        0,
        StatusCode::OK,
    )
    .await?;
    Ok(ok.into_response())
}

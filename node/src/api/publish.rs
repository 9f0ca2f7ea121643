//! Publishing: `POST /v1/environments/{env}/publish` and `/rollback`, and
//! the kill switch `POST .../flags/{key}/kill` and `/restore`. Each makes a
//! new environment version at once.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use pulseplane_core::Command;
use serde::Deserialize;

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::common::WriteBody;
use crate::api::common::{WriteOk, parse_body, submit};
use crate::api::error::ErrorBody;
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments/{env}/publish", post(publish))
        .route("/v1/environments/{env}/rollback", post(rollback))
        .route("/v1/environments/{env}/flags/{key}/kill", post(kill))
        .route("/v1/environments/{env}/flags/{key}/restore", post(restore))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    #[serde(default)]
    message: String,
    flags: Option<Vec<String>>,
    segments: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/v1/environments/{env}/publish",
    tag = "publishing",
    summary = "Publish drafts as a new version",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = PublishBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn publish(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let b: PublishBody = parse_body(&body)?;
    let command = Command::Publish {
        env,
        message: b.message,
        flags: b.flags,
        segments: b.segments,
    };
    submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackBody {
    to_version: Option<u64>,
    #[serde(default)]
    message: String,
}

#[utoipa::path(
    post,
    path = "/v1/environments/{env}/rollback",
    tag = "publishing",
    summary = "Make a new version with the content of an earlier one",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = RollbackBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn rollback(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let b: RollbackBody = parse_body(&body)?;
    let command = Command::Rollback {
        env,
        to_version: b.to_version,
        message: b.message,
    };
    submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageBody {
    #[serde(default)]
    message: String,
}

#[utoipa::path(
    post,
    path = "/v1/environments/{env}/flags/{key}/kill",
    tag = "publishing",
    summary = "Kill switch: serve the off variant at once",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = MessageBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn kill(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path((env, flag)): Path<(String, String)>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let message = parse_body::<MessageBody>(&body)?.message;
    let command = Command::Kill { env, flag, message };
    submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await
}

#[utoipa::path(
    post,
    path = "/v1/environments/{env}/flags/{key}/restore",
    tag = "publishing",
    summary = "Lift a kill switch",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = MessageBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn restore(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path((env, flag)): Path<(String, String)>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let message = parse_body::<MessageBody>(&body)?.message;
    let command = Command::Restore { env, flag, message };
    submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await
}

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
use crate::api::common::{WriteOk, parse_body, submit};
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments/{env}/publish", post(publish))
        .route("/v1/environments/{env}/rollback", post(rollback))
        .route("/v1/environments/{env}/flags/{key}/kill", post(kill))
        .route("/v1/environments/{env}/flags/{key}/restore", post(restore))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    message: String,
    flags: Option<Vec<String>>,
    segments: Option<Vec<String>>,
}

async fn publish(
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to_version: Option<u64>,
    #[serde(default)]
    message: String,
}

async fn rollback(
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    #[serde(default)]
    message: String,
}

async fn kill(
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

async fn restore(
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

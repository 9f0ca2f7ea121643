//! The HTTP API: JSON over axum. Every endpoint but `/openapi.json` (and,
//! unless protected, `/healthz`, `/readyz` and `/metrics`) needs a
//! credential and a permission.
//!
//! Layout:
//! - `error`: [`ApiError`], the one error body
//! - `auth`: the permission of every route, and the middleware that
//!   authenticates and authorizes
//! - `roles`: `/v1/roles`, `/v1/bindings`, `/v1/whoami`, `/v1/permissions`
//! - `sdk_keys`: `/v1/environments/{env}/sdk-keys`
//! - `audit`: `/v1/audit`
//! - `common`: paging, read consistency, write submission and responses
//! - `health`: `/healthz`, `/readyz`, `/openapi.json`
//! - `openapi`: the generated OpenAPI document
//! - `admin`: `/admin/v1/cluster` and membership changes
//! - `environments`: `/v1/environments`
//! - `flags`: draft flags under `/v1/environments/{env}/flags`
//! - `segments`: draft segments under `/v1/environments/{env}/segments`
//! - `versions`: version history, content and diffs
//! - `publish`: publish, rollback, kill and restore
//! - `sdk`: the SDK snapshot with long-poll, export, fleet, preview evaluation

pub mod admin;
pub mod audit;
pub mod auth;
pub mod common;
pub mod environments;
pub mod error;
pub mod flags;
pub mod health;
pub mod openapi;
pub mod publish;
pub mod request_id;
pub mod roles;
pub mod sdk;
pub mod sdk_keys;
pub mod segments;
pub mod versions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};

pub use error::ApiError;

use crate::node::Node;

/// The public and admin routes of a node, and the operator console.
pub fn router(node: Arc<Node>) -> Router {
    let api = api_router(node.clone());
    api.clone().merge(crate::console::router(node, api))
}

/// The public and admin routes of a node.
fn api_router(node: Arc<Node>) -> Router {
    let mut protected = Router::new()
        .merge(admin::router())
        .merge(environments::router())
        .merge(flags::router())
        .merge(segments::router())
        .merge(versions::router())
        .merge(publish::router())
        .merge(sdk::router())
        .merge(sdk_keys::router())
        .merge(roles::router())
        .merge(audit::router());
    let mut open = health::docs();
    if node.protect_health {
        protected = protected.merge(health::probes());
    } else {
        open = open.merge(health::probes());
    }
    if node.protect_metrics {
        protected = protected.merge(health::metrics_router());
    } else {
        open = open.merge(health::metrics_router());
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(
        node.clone(),
        auth::authorize,
    ));
    Router::new()
        .merge(open)
        .merge(protected)
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(node.max_body_bytes))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(node.clone(), observe))
        .with_state(node)
}

/// Gives every request its id and span (see `request_id`), and counts it
/// by route template, method and status, with its latency (`/metrics`).
pub(crate) async fn observe(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let (id, span) = request_id::begin(&req);
    let response = request_id::run(id, span, req, next).await;
    node.metrics.api.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Gives the framework's own plain-text rejections (a body over the limit,
/// a malformed query string, a wrong method) the API's JSON error body.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_client_error() => "bad_request",
        _ => "internal",
    };
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::new(status, code, message).into_response()
}

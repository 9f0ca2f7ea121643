//! `/healthz` (the process is up), `/readyz` (a member that knows a
//! leader and has applied up to the commit index it learned at start),
//! `/metrics` (Prometheus text) and `/openapi.json`. The probes and the
//! metrics are open unless the node runs with `--protect-health` or
//! `--protect-metrics` (they then need `cluster.read`); the OpenAPI
//! document is always open.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::node::Node;

/// `/openapi.json`.
pub fn docs() -> Router<Arc<Node>> {
    Router::new().route("/openapi.json", get(openapi))
}

/// `/healthz` and `/readyz`.
pub fn probes() -> Router<Arc<Node>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/metrics`.
pub fn metrics_router() -> Router<Arc<Node>> {
    Router::new().route("/metrics", get(metrics))
}

/// The node's metrics in the Prometheus text format: figures only, no flag
/// content; open unless `--protect-metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Metrics in the Prometheus text format",
    security(()),
    responses((status = 200, description = "the metrics", body = String, content_type = "text/plain"))
)]
pub(crate) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics.render(&node.samples()),
    )
        .into_response()
}

/// The OpenAPI document of this API (open, like the health checks).
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::api::openapi::document(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process is up",
    security(()),
    responses((status = 200, description = "ok", body = String, content_type = "text/plain"))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "A member that knows a leader and has caught up",
    security(()),
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain"),
        (status = 503, description = "not ready, and why", body = String, content_type = "text/plain")
    )
)]
pub(crate) async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.readiness().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

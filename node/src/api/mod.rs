//! The HTTP API: JSON over axum. Every endpoint but `/healthz`, `/readyz`
//! and `/metrics` needs `Authorization: Bearer <token>`.
//!
//! Layout:
//! - `error`: [`ApiError`], the one error body
//! - `auth`: the bearer-token check and the caller's identity
//! - `common`: paging, read consistency, write submission and responses
//! - `health`: `/healthz`, `/readyz`
//! - `admin`: `/admin/v1/cluster` and membership changes
//! - `environments`: `/v1/environments`
//! - `flags`: draft flags under `/v1/environments/{env}/flags`
//! - `publish`: publish, rollback, kill and restore

pub mod admin;
pub mod auth;
pub mod common;
pub mod environments;
pub mod error;
pub mod flags;
pub mod health;
pub mod publish;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;

pub use error::ApiError;

use crate::node::Node;

/// The public and admin routes of a node.
pub fn router(node: Arc<Node>) -> Router {
    let protected = Router::new()
        .merge(admin::router())
        .merge(environments::router())
        .merge(flags::router())
        .merge(publish::router())
        .layer(middleware::from_fn_with_state(
            node.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(health::router())
        .merge(protected)
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(node.max_body_bytes))
        .with_state(node)
}

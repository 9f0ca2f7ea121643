//! Authentication: the bootstrap admin token, given as
//! `Authorization: Bearer <token>`. The caller's identity travels to the
//! handlers as an [`Actor`] extension and becomes the author of its writes.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::info;

use crate::api::ApiError;
use crate::node::Node;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Refuses a request without the right bearer token (401).
pub async fn require_token(
    State(node): State<Arc<Node>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if node.admin_token.matches(t.as_bytes()) => {
            req.extensions_mut().insert(Actor("admin".into()));
            next.run(req).await
        }
        _ => {
            info!(path = %req.uri().path(), "request without a valid bearer token refused");
            ApiError::unauthorized().into_response()
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

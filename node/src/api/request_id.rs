//! Request ids: every API request gets one (the caller's `X-Request-Id`
//! when it is 1 to 128 visible ASCII characters, else a new random one),
//! runs inside a `request` tracing span carrying it (info for writes, debug
//! for reads), and answers with it in `X-Request-Id`. Calls this request makes to other nodes (a write
//! forwarded to the leader, the fleet view) carry it too, and the receiving
//! node runs them inside a `peer_request` span with the same id, so one id
//! follows a write through every node's log.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::{Instrument, debug_span, info_span};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request this task serves, if any.
pub fn current() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

fn valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn given(req: &Request) -> Option<Arc<str>> {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid(v))
        .map(Arc::from)
}

/// 16 random hex digits.
fn new_id() -> Arc<str> {
    Arc::from(format!("{:016x}", fastrand::u64(..)))
}

/// The id of an API request (the caller's, else a new one) and its span:
/// an info span for writes; a debug one for reads (SDK polls above all are
/// the hot path and log little), free unless debug logging is on.
pub fn begin(req: &Request) -> (Arc<str>, tracing::Span) {
    let id = given(req).unwrap_or_else(new_id);
    let method = req.method();
    let path = req.uri().path();
    let span = if method == Method::GET || method == Method::HEAD {
        debug_span!("request", request_id = %id, method = %method, path = %path, traceparent = Empty)
    } else {
        info_span!("request", request_id = %id, method = %method, path = %path, traceparent = Empty)
    };
    continue_trace(&span, req);
    (id, span)
}

/// Records the caller's W3C `traceparent` in `span`, so that exported
/// spans continue the caller's trace.
fn continue_trace(span: &tracing::Span, req: &Request) {
    if let Some(parent) = req
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        span.record("traceparent", parent);
    }
}

/// Runs `next` as the request `id`, in `span`, and sets the response
/// header.
pub async fn run(id: Arc<str>, span: tracing::Span, req: Request, next: Next) -> Response {
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Peer-transport middleware: a request that carries an id runs in a
/// `peer_request` span with it (and passes it on).
pub async fn adopt(req: Request, next: Next) -> Response {
    match given(&req) {
        Some(id) => {
            let span = info_span!("peer_request", request_id = %id, traceparent = Empty);
            continue_trace(&span, &req);
            REQUEST_ID.scope(id, next.run(req).instrument(span)).await
        }
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid("abc-123"));
        assert!(!valid(""));
        assert!(!valid("has space"));
        assert!(!valid(&"x".repeat(129)));
        assert_eq!(new_id().len(), 16);
    }

    #[tokio::test]
    async fn the_id_is_visible_inside_the_scope_only() {
        assert!(current().is_none());
        let seen = REQUEST_ID
            .scope(Arc::from("r-1"), async { current() })
            .await;
        assert_eq!(seen.as_deref(), Some("r-1"));
    }
}

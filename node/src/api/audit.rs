//! `GET /v1/audit`: the replicated audit log, oldest first, filtered by
//! environment, subject and time, paged by sequence number.
//!
//! A caller with `audit.read` in some environments sees their entries
//! (with `env=`); the whole log, cluster-wide entries included, needs
//! `audit.read` from a role for `"*"`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use pulseplane_core::Permission;
use pulseplane_core::audit::AuditEntry;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::{CallerRef, deny};
use crate::api::common::{Query, page_limit, read_barrier, read_response};
use crate::api::error::ErrorBody;
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new().route("/v1/audit", get(list))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this environment's entries.
    pub env: Option<String>,
    /// Only this subject's entries.
    pub subject: Option<String>,
    /// Only entries at or after this time, Unix milliseconds.
    pub since: Option<i64>,
    /// Only entries before this time, Unix milliseconds.
    pub until: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<u64>,
    /// Entries per page, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// `local` (default) or `linearizable`.
    pub consistency: Option<String>,
}

/// A page of audit entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "access",
    summary = "Read the audit log",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries, oldest first", body = AuditPage),
        (status = "4XX", description = "Bad input, unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "Catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    caller: CallerRef,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let env = q.env.as_deref().filter(|e| !e.is_empty());
    if !caller.0.allows(Permission::AuditRead, env) {
        return Err(deny(&node, &caller.0, Permission::AuditRead, env));
    }
    let limit = page_limit(q.limit)?;
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let mut items = Vec::new();
        let mut next_cursor = None;
        let matching = state.audit.matching(q.cursor.unwrap_or(0), |e| {
            env.is_none_or(|want| e.env == want)
                && q.subject.as_deref().is_none_or(|s| e.subject == s)
                && q.since.is_none_or(|t| e.at_ms >= t)
                && q.until.is_none_or(|t| e.at_ms < t)
        });
        for e in matching {
            if items.len() == limit {
                next_cursor = items.last().map(|last: &AuditEntry| last.seq);
                break;
            }
            items.push(e);
        }
        let page = AuditPage { items, next_cursor };
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

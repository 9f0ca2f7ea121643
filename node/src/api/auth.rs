//! Authentication and authorization of every API request.
//!
//! [`ROUTES`] names the permission each endpoint needs and where its
//! environment comes from; the [`authorize`] middleware authenticates the
//! caller (see `crate::identity`), resolves its roles from the replicated
//! state, and lets the request through only when the permission is held in
//! that environment. A route missing from the table is refused: the
//! default is deny. A missing, malformed, expired or forged credential is
//! 401; a known caller without the permission is 403. Both are written to
//! the node's local audit stream (a `pulseplane::audit` log line and a
//! metric), never to the replicated state.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pulseplane_core::Permission;
use pulseplane_core::access::PermissionScope;
use tracing::{info, warn};

use crate::api::ApiError;
use crate::api::request_id;
use crate::identity::{AuthFailure, Caller, Principal};
use crate::node::Node;

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The permission in the environment named by the `{env}` path segment.
    Env(Permission),
    /// The permission cluster-wide (a role for `"*"`).
    Cluster(Permission),
    /// The permission somewhere; the handler checks the environment (a
    /// list filtered to what the caller may see, or an environment named in
    /// the body or query).
    Handler(Permission),
    /// Any authenticated caller.
    Known,
}

impl Need {
    pub fn permission(self) -> Option<Permission> {
        match self {
            Need::Env(p) | Need::Cluster(p) | Need::Handler(p) => Some(p),
            Need::Known => None,
        }
    }
}

use Permission as P;

/// Every protected endpoint: method, route template, need.
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/v1/whoami", Need::Known),
    ("GET", "/v1/permissions", Need::Known),
    ("GET", "/v1/environments", Need::Handler(P::EnvRead)),
    ("POST", "/v1/environments", Need::Handler(P::EnvCreate)),
    ("GET", "/v1/environments/{env}", Need::Env(P::EnvRead)),
    ("DELETE", "/v1/environments/{env}", Need::Env(P::EnvDelete)),
    (
        "GET",
        "/v1/environments/{env}/flags",
        Need::Env(P::FlagRead),
    ),
    (
        "GET",
        "/v1/environments/{env}/flags/{key}",
        Need::Env(P::FlagRead),
    ),
    (
        "PUT",
        "/v1/environments/{env}/flags/{key}",
        Need::Env(P::FlagWrite),
    ),
    (
        "DELETE",
        "/v1/environments/{env}/flags/{key}",
        Need::Env(P::FlagDelete),
    ),
    (
        "GET",
        "/v1/environments/{env}/segments",
        Need::Env(P::FlagRead),
    ),
    (
        "GET",
        "/v1/environments/{env}/segments/{key}",
        Need::Env(P::FlagRead),
    ),
    (
        "PUT",
        "/v1/environments/{env}/segments/{key}",
        Need::Env(P::SegmentWrite),
    ),
    (
        "DELETE",
        "/v1/environments/{env}/segments/{key}",
        Need::Env(P::SegmentWrite),
    ),
    (
        "POST",
        "/v1/environments/{env}/publish",
        Need::Env(P::FlagPublish),
    ),
    (
        "POST",
        "/v1/environments/{env}/rollback",
        Need::Env(P::FlagRollback),
    ),
    (
        "POST",
        "/v1/environments/{env}/flags/{key}/kill",
        Need::Env(P::FlagKill),
    ),
    (
        "POST",
        "/v1/environments/{env}/flags/{key}/restore",
        Need::Env(P::FlagKill),
    ),
    (
        "GET",
        "/v1/environments/{env}/versions",
        Need::Env(P::FlagRead),
    ),
    (
        "GET",
        "/v1/environments/{env}/versions/{version}",
        Need::Env(P::FlagRead),
    ),
    (
        "GET",
        "/v1/sdk/environments/{env}/snapshot",
        Need::Env(P::SnapshotRead),
    ),
    (
        "GET",
        "/v1/environments/{env}/export",
        Need::Env(P::ExportRead),
    ),
    ("GET", "/v1/environments/{env}/fleet", Need::Env(P::EnvRead)),
    (
        "GET",
        "/v1/environments/{env}/sdk-status",
        Need::Env(P::EnvRead),
    ),
    (
        "POST",
        "/v1/environments/{env}/evaluate",
        Need::Env(P::FlagRead),
    ),
    (
        "GET",
        "/v1/environments/{env}/sdk-keys",
        Need::Env(P::SdkKeyManage),
    ),
    (
        "POST",
        "/v1/environments/{env}/sdk-keys",
        Need::Env(P::SdkKeyManage),
    ),
    (
        "DELETE",
        "/v1/environments/{env}/sdk-keys/{id}",
        Need::Env(P::SdkKeyManage),
    ),
    ("GET", "/v1/roles", Need::Cluster(P::RoleManage)),
    ("GET", "/v1/roles/{name}", Need::Cluster(P::RoleManage)),
    ("PUT", "/v1/roles/{name}", Need::Cluster(P::RoleManage)),
    ("DELETE", "/v1/roles/{name}", Need::Cluster(P::RoleManage)),
    ("GET", "/v1/bindings", Need::Cluster(P::RoleManage)),
    (
        "GET",
        "/v1/bindings/{subject}",
        Need::Cluster(P::RoleManage),
    ),
    (
        "PUT",
        "/v1/bindings/{subject}",
        Need::Cluster(P::RoleManage),
    ),
    (
        "DELETE",
        "/v1/bindings/{subject}",
        Need::Cluster(P::RoleManage),
    ),
    ("GET", "/v1/audit", Need::Handler(P::AuditRead)),
    ("GET", "/admin/v1/cluster", Need::Cluster(P::ClusterRead)),
    ("GET", "/admin/v1/node", Need::Cluster(P::ClusterRead)),
    ("GET", "/admin/v1/settings", Need::Cluster(P::ClusterRead)),
    ("PUT", "/admin/v1/settings", Need::Cluster(P::ClusterManage)),
    (
        "POST",
        "/admin/v1/snapshot",
        Need::Cluster(P::ClusterManage),
    ),
    ("GET", "/admin/v1/backup", Need::Cluster(P::ClusterManage)),
    (
        "POST",
        "/admin/v1/cluster/nodes",
        Need::Cluster(P::ClusterManage),
    ),
    (
        "DELETE",
        "/admin/v1/cluster/nodes/{id}",
        Need::Cluster(P::ClusterManage),
    ),
    // Open unless the node is told to protect them (see `health`).
    ("GET", "/metrics", Need::Cluster(P::ClusterRead)),
    ("GET", "/healthz", Need::Cluster(P::ClusterRead)),
    ("GET", "/readyz", Need::Cluster(P::ClusterRead)),
];

/// What `method` on `route` needs; `None` for a route not in the table.
pub fn need(method: &Method, route: &str) -> Option<Need> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, n)| *n)
}

/// The permission a request was let through with, for its audit entry.
#[derive(Debug, Clone, Copy)]
pub struct Granted(pub Option<Permission>);

/// The author of a write: the caller's subject and the permission used.
#[derive(Debug, Clone)]
pub struct Actor {
    pub subject: String,
    pub permission: Option<Permission>,
}

/// The authenticated caller, for handlers that check environments
/// themselves.
#[derive(Debug, Clone)]
pub struct CallerRef(pub Arc<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for CallerRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Caller>>()
            .cloned()
            .map(CallerRef)
            .ok_or_else(|| ApiError::unauthorized(AuthFailure::Missing.message()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = CallerRef::from_request_parts(parts, state).await?;
        let permission = parts.extensions.get::<Granted>().and_then(|g| g.0);
        Ok(Actor {
            subject: caller.0.principal.subject(),
            permission,
        })
    }
}

/// The 403 answer for `caller` lacking `permission` in `env`, logged to
/// the local audit stream and counted.
pub fn deny(node: &Node, caller: &Caller, permission: Permission, env: Option<&str>) -> ApiError {
    node.metrics.access.denied(permission);
    let subject = caller.principal.subject();
    info!(
        target: "pulseplane::audit",
        outcome = "denied",
        subject = %subject,
        permission = %permission,
        env = env.unwrap_or(""),
        request_id = %request_id::current().as_deref().unwrap_or(""),
        "request denied"
    );
    let where_ = match (permission.scope(), env) {
        (PermissionScope::Environment, Some(e)) => format!(" in environment {e:?}"),
        _ => " cluster-wide (a role for \"*\")".to_owned(),
    };
    ApiError::forbidden(format!("{subject:?} lacks {permission}{where_}"))
}

/// Authenticates the caller and checks the route's permission.
pub async fn authorize(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some(need) = need(req.method(), &route) else {
        warn!(route = %route, method = %req.method(), "route without a permission refused");
        return ApiError::forbidden("this endpoint grants no permission").into_response();
    };
    let (mut parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let principal = node.auth.authenticate(&parts.headers, peer, |id| {
        node.sm
            .read(|_, state| state.access.sdk_keys.get(id).cloned())
    });
    let principal = match principal {
        Ok(p) => p,
        Err(failure) => {
            node.metrics.access.failed(failure);
            info!(
                target: "pulseplane::audit",
                outcome = "unauthenticated",
                reason = failure.reason(),
                peer = ?peer,
                route = %route,
                request_id = %request_id::current().as_deref().unwrap_or(""),
                "request not authenticated"
            );
            let mut r = ApiError::unauthorized(failure.message()).into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    // Only users have roles to look up.
    let caller = match principal {
        Principal::User { .. } => node
            .sm
            .read(|_, state| Caller::resolve(principal, &state.access)),
        other => Caller {
            principal: other,
            roles: Vec::new(),
        },
    };
    let env = match need {
        Need::Env(_) => RawPathParams::from_request_parts(&mut parts, &())
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(k, _)| *k == "env")
                    .map(|(_, v)| v.to_owned())
            }),
        _ => None,
    };
    let allowed = match need {
        Need::Env(p) => env.as_deref().is_some_and(|e| caller.allows(p, Some(e))),
        Need::Cluster(p) => caller.allows(p, None),
        Need::Handler(p) => caller.holds_anywhere(p),
        Need::Known => true,
    };
    if let (false, Some(p)) = (allowed, need.permission()) {
        return deny(&node, &caller, p, env.as_deref()).into_response();
    }
    parts.extensions.insert(Arc::new(caller));
    parts.extensions.insert(Granted(need.permission()));
    next.run(Request::from_parts(parts, body)).await
}

//! `/v1/roles` and `/v1/bindings`: the consumer's roles and who holds them;
//! `/v1/whoami` and `/v1/permissions` for any authenticated caller.
//!
//! Roles and bindings live in the replicated state: a change holds on
//! every node as soon as it commits.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use pulseplane_core::access::{Binding, Environments, Role};
use pulseplane_core::{Command, Permission};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::{Actor, CallerRef};
use crate::api::common::{
    Page, PageQuery, Query, WriteBody, WriteOk, paginate, parse_body, read_barrier, read_response,
    submit,
};
use crate::api::environments::ReadQuery;
use crate::api::error::ErrorBody;
use crate::identity::{Principal, Source};
use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/roles", get(list_roles))
        .route(
            "/v1/roles/{name}",
            get(read_role).put(put_role).delete(delete_role),
        )
        .route("/v1/bindings", get(list_bindings))
        .route(
            "/v1/bindings/{subject}",
            get(read_binding).put(put_binding).delete(delete_binding),
        )
        .route("/v1/whoami", get(whoami))
        .route("/v1/permissions", get(permissions))
}

/// A role as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    /// Permission names, such as `flag.publish`.
    pub permissions: Vec<String>,
    /// `"*"` or a list of environment keys.
    #[schema(value_type = Object)]
    pub environments: Environments,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl RoleView {
    fn of(r: &Role) -> RoleView {
        RoleView {
            name: r.name.clone(),
            permissions: r.permissions.iter().map(|p| p.name().to_owned()).collect(),
            environments: r.environments.clone(),
            updated_at_ms: r.updated_at_ms,
            updated_by: r.updated_by.clone(),
        }
    }
}

/// A binding as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BindingView {
    /// A token's `sub`, or `group:<name>` for a group claim.
    pub subject: String,
    pub roles: Vec<String>,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl BindingView {
    fn of(b: &Binding) -> BindingView {
        BindingView {
            subject: b.subject.clone(),
            roles: b.roles.iter().cloned().collect(),
            updated_at_ms: b.updated_at_ms,
            updated_by: b.updated_by.clone(),
        }
    }
}

/// The body of `PUT /v1/roles/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutRole {
    /// Permission names; see `GET /v1/permissions`.
    #[schema(value_type = Vec<String>)]
    permissions: BTreeSet<Permission>,
    /// `"*"` (every environment, and the cluster-wide permissions) or a
    /// list of environment keys.
    #[schema(value_type = Object)]
    environments: Environments,
}

/// The body of `PUT /v1/bindings/{subject}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutBinding {
    roles: BTreeSet<String>,
}

#[utoipa::path(
    get,
    path = "/v1/roles",
    tag = "access",
    summary = "List roles",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of roles", body = Page<RoleView>),
        (status = "4XX", description = "Bad input, unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "Catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list_roles(
    State(node): State<Arc<Node>>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let page = paginate(
            state.access.roles.iter().map(|(k, r)| (k, RoleView::of(r))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[utoipa::path(
    get,
    path = "/v1/roles/{name}",
    tag = "access",
    summary = "Read a role",
    params(("name" = String, Path, description = "Role name"), ReadQuery),
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = "4XX", description = "Bad input, unauthenticated, not allowed or not found", body = ErrorBody),
        (status = 503, description = "Catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn read_role(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let role = state.access.roles.get(&name).ok_or_else(|| {
            ApiError::not_found("role_not_found", format!("role {name:?} not found"))
        })?;
        Ok(read_response(
            applied.map_or(0, |l| l.index),
            &RoleView::of(role),
        ))
    })
}

#[utoipa::path(
    put,
    path = "/v1/roles/{name}",
    tag = "access",
    summary = "Create or replace a role",
    params(
        ("name" = String, Path, description = "Role name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = PutRole, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = WriteBody),
        (status = 200, description = "Replaced", body = WriteBody),
        (status = "4XX", description = "Bad input, unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn put_role(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let req: PutRole = parse_body(&body)?;
    let command = Command::PutRole {
        name,
        permissions: req.permissions,
        environments: req.environments,
    };
    let mut ok = submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await?;
    if ok.body.outcome.created && !ok.body.outcome.replayed {
        ok.status = StatusCode::CREATED;
    }
    Ok(ok)
}

#[utoipa::path(
    delete,
    path = "/v1/roles/{name}",
    tag = "access",
    summary = "Delete a role (refused while a binding names it)",
    params(
        ("name" = String, Path, description = "Role name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    responses(
        (status = 200, description = "Deleted", body = WriteBody),
        (status = "4XX", description = "Unauthenticated, not allowed, not found or in use", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn delete_role(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<WriteOk, ApiError> {
    submit(
        &node,
        &headers,
        &actor,
        Command::DeleteRole { name },
        0,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/bindings",
    tag = "access",
    summary = "List bindings",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of bindings", body = Page<BindingView>),
        (status = "4XX", description = "Bad input, unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "Catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list_bindings(
    State(node): State<Arc<Node>>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let page = paginate(
            state
                .access
                .bindings
                .iter()
                .map(|(k, b)| (k, BindingView::of(b))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[utoipa::path(
    get,
    path = "/v1/bindings/{subject}",
    tag = "access",
    summary = "Read a subject's binding",
    params(("subject" = String, Path, description = "A token's sub, or group:<name>"), ReadQuery),
    responses(
        (status = 200, description = "The binding", body = BindingView),
        (status = "4XX", description = "Bad input, unauthenticated, not allowed or not found", body = ErrorBody),
        (status = 503, description = "Catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn read_binding(
    State(node): State<Arc<Node>>,
    Path(subject): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let binding = state.access.bindings.get(&subject).ok_or_else(|| {
            ApiError::not_found(
                "binding_not_found",
                format!("no binding for subject {subject:?}"),
            )
        })?;
        Ok(read_response(
            applied.map_or(0, |l| l.index),
            &BindingView::of(binding),
        ))
    })
}

#[utoipa::path(
    put,
    path = "/v1/bindings/{subject}",
    tag = "access",
    summary = "Bind roles to a subject or group (replacing its roles)",
    params(
        ("subject" = String, Path, description = "A token's sub, or group:<name>"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = PutBinding, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = WriteBody),
        (status = 200, description = "Replaced", body = WriteBody),
        (status = "4XX", description = "Bad input (an unknown role), unauthenticated or not allowed", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn put_binding(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let req: PutBinding = parse_body(&body)?;
    let command = Command::PutBinding {
        subject,
        roles: req.roles,
    };
    let mut ok = submit(&node, &headers, &actor, command, body.len(), StatusCode::OK).await?;
    if ok.body.outcome.created && !ok.body.outcome.replayed {
        ok.status = StatusCode::CREATED;
    }
    Ok(ok)
}

#[utoipa::path(
    delete,
    path = "/v1/bindings/{subject}",
    tag = "access",
    summary = "Remove a subject's binding",
    params(
        ("subject" = String, Path, description = "A token's sub, or group:<name>"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    responses(
        (status = 200, description = "Deleted", body = WriteBody),
        (status = "4XX", description = "Unauthenticated, not allowed or not found", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn delete_binding(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path(subject): Path<String>,
) -> Result<WriteOk, ApiError> {
    submit(
        &node,
        &headers,
        &actor,
        Command::DeleteBinding { subject },
        0,
        StatusCode::OK,
    )
    .await
}

/// Who the caller is and what its roles grant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub subject: String,
    /// `admin_token`, `jwt`, `trusted_proxy` or `sdk_key`.
    pub source: &'static str,
    pub groups: Vec<String>,
    /// The roles bound to the subject and its groups.
    pub roles: Vec<RoleView>,
    /// For an SDK key: its environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "access",
    summary = "The caller's identity and roles",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    )
)]
pub(crate) async fn whoami(caller: CallerRef) -> Json<WhoAmI> {
    let c = &caller.0;
    let (source, groups, environment) = match &c.principal {
        Principal::Admin => ("admin_token", Vec::new(), None),
        Principal::User { groups, source, .. } => (
            match source {
                Source::Jwt => "jwt",
                Source::Proxy => "trusted_proxy",
            },
            groups.clone(),
            None,
        ),
        Principal::SdkKey { env, .. } => ("sdk_key", Vec::new(), Some(env.clone())),
    };
    Json(WhoAmI {
        subject: c.principal.subject(),
        source,
        groups,
        roles: c.roles.iter().map(RoleView::of).collect(),
        environment,
    })
}

/// One platform permission.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PermissionView {
    pub name: &'static str,
    /// `environment` (granted per environment) or `cluster` (granted only by
    /// a role for `"*"`).
    pub scope: &'static str,
    pub description: &'static str,
}

#[utoipa::path(
    get,
    path = "/v1/permissions",
    tag = "access",
    summary = "The platform's permissions",
    responses(
        (status = 200, description = "Every permission", body = Vec<PermissionView>),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    )
)]
pub(crate) async fn permissions() -> Json<Vec<PermissionView>> {
    Json(
        Permission::ALL
            .iter()
            .map(|p| PermissionView {
                name: p.name(),
                scope: match p.scope() {
                    pulseplane_core::access::PermissionScope::Environment => "environment",
                    pulseplane_core::access::PermissionScope::Cluster => "cluster",
                },
                description: p.description(),
            })
            .collect(),
    )
}

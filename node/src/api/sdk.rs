//! Distribution: the SDK snapshot with long-poll, the CI/CD export, the
//! fleet report and preview evaluation.
//!
//! - `GET /v1/sdk/environments/{env}/snapshot[?min_version=N&wait=30s]`
//! - `GET /v1/environments/{env}/export`
//! - `GET /v1/environments/{env}/fleet`
//! - `GET /v1/environments/{env}/sdk-status`
//! - `POST /v1/environments/{env}/evaluate`
//!
//! Snapshots come from the environment's actor (see `crate::envs`): a
//! request clones the current `Arc` and answers with its pre-serialized
//! bytes, or with the pre-compressed ones when the client accepts gzip.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pulseplane_core::limits::MAX_TOKEN_LEN;
use pulseplane_core::{Context, FlagSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::api::ApiError;
use crate::api::common::Query;
use crate::api::common::{APPLIED_INDEX_HEADER, parse_body, read_barrier, read_response};
use crate::api::common::{PageQuery, paginate};
use crate::api::error::ErrorBody;
use crate::envs::{EnvActor, InstanceSeen, Published};
use crate::node::Node;
use crate::raft::server::PATH_FLEET;
use pulseplane_core::Snapshot;
use pulseplane_core::time::format_rfc3339_millis;

pub const VERSION_HEADER: &str = "x-pulseplane-version";
pub const NODE_HEADER: &str = "x-pulseplane-node";
pub const INSTANCE_HEADER: &str = "x-pulseplane-instance";
pub const HAVE_VERSION_HEADER: &str = "x-pulseplane-have-version";

/// The longest a snapshot request may wait; longer `wait`s are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/sdk/environments/{env}/snapshot", get(snapshot))
        .route("/v1/environments/{env}/export", get(export))
        .route("/v1/environments/{env}/fleet", get(fleet))
        .route("/v1/environments/{env}/sdk-status", get(sdk_status))
        .route("/v1/environments/{env}/evaluate", post(evaluate))
}

/// `?min_version=&wait=` of the snapshot and export endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// Wait (with `wait`) until this node has this version or newer.
    pub min_version: Option<u64>,
    /// How long to wait: `30s`, `500ms`, `2m`, or whole seconds; at most 60 s.
    pub wait: Option<String>,
}

impl SnapshotQuery {
    fn wait(&self) -> Result<Duration, ApiError> {
        let Some(text) = self.wait.as_deref() else {
            return Ok(Duration::ZERO);
        };
        let parsed = match text.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(text),
        };
        parsed.map(|d| d.min(MAX_WAIT)).map_err(|_| {
            ApiError::field(
                "/wait",
                format!("{text:?} is not a duration such as 30s, 500ms or 2m"),
            )
        })
    }
}

fn not_found(env: &str) -> ApiError {
    ApiError::not_found(
        "environment_not_found",
        format!("environment {env:?} not found on this node"),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::bad_request("invalid_header", format!("{name} must be visible ASCII"))
        }),
    }
}

/// True when `If-None-Match` names `etag` (or is `*`).
fn matches_etag(if_none_match: Option<&str>, etag: &HeaderValue) -> bool {
    let Some(inm) = if_none_match else {
        return false;
    };
    let etag = etag.to_str().unwrap_or("");
    inm.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/").is_some_and(|t| t == etag))
}

/// True when `Accept-Encoding` accepts gzip.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// What the caller wants to wait for.
struct Want<'a> {
    min_version: Option<u64>,
    if_none_match: Option<&'a str>,
    wait: Duration,
}

impl Want<'_> {
    /// True when `p` answers the request now.
    fn satisfied_by(&self, p: &Published) -> bool {
        match self.min_version {
            Some(min) => p.version >= min,
            // Without a minimum, a waiting request with the current ETag
            // waits for the next change (a classic long-poll).
            None => self.wait.is_zero() || !matches_etag(self.if_none_match, &p.etag),
        }
    }
}

/// Waits, at most until `deadline`, for the environment to have a snapshot
/// that satisfies `want`. `Ok(None)`: the environment is unknown (or was
/// deleted) at the deadline.
async fn await_snapshot(
    node: &Node,
    env: &str,
    want: &Want<'_>,
) -> Result<Option<Arc<Published>>, ApiError> {
    let deadline = Instant::now() + want.wait;
    let stopping = || ApiError::unavailable("shutting_down", "this node is stopping");
    let mut appeared = node.envs.watch_appeared();
    loop {
        appeared.borrow_and_update();
        let actor: Option<Arc<EnvActor>> = node.envs.get(env);
        let Some(actor) = actor else {
            // Wait for the environment to appear.
            tokio::select! {
                r = appeared.changed() => if r.is_err() { return Ok(None) },
                () = tokio::time::sleep_until(deadline) => return Ok(None),
                () = node.shutdown.cancelled() => return Err(stopping()),
            }
            continue;
        };
        let mut rx = actor.subscribe();
        drop(actor);
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(p) = &current
                && want.satisfied_by(p)
            {
                return Ok(current);
            }
            let timed_out = tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        // The environment was deleted: it may come back
                        // before the deadline.
                        break;
                    }
                    false
                }
                () = tokio::time::sleep_until(deadline) => true,
                () = node.shutdown.cancelled() => true,
            };
            if timed_out {
                // Out of time: the current state, whatever it is.
                return match rx.borrow().clone() {
                    Some(p) => Ok(Some(p)),
                    None if node.envs.get(env).is_some() => Err(not_built(env)),
                    None => Ok(None),
                };
            }
        }
    }
}

/// The environment exists here but its snapshot is still being built (just
/// created, or the node just started).
fn not_built(env: &str) -> ApiError {
    ApiError::unavailable(
        "catching_up",
        format!("the snapshot of environment {env:?} is being built on this node"),
    )
}

/// The snapshot (or 304) with the distribution headers.
async fn snapshot_response(
    node: &Node,
    p: &Arc<Published>,
    headers: &HeaderMap,
    not_modified: bool,
) -> Response {
    let mut r = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) && !p.gzip.is_empty() {
        let mut r = Body::from(p.gzip.clone()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        match p.body().await {
            Some(body) => Body::from(body).into_response(),
            // Only if decompressing our own gzip form failed (logged).
            None => {
                return ApiError::unavailable(
                    "snapshot_unavailable",
                    format!(
                        "the snapshot of environment {:?} cannot be served uncompressed; ask with Accept-Encoding: gzip",
                        p.env
                    ),
                )
                .into_response();
            }
        }
    };
    let h = r.headers_mut();
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    h.insert(header::ETAG, p.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        HeaderName::from_static(VERSION_HEADER),
        HeaderValue::from(p.version),
    );
    h.insert(
        HeaderName::from_static(APPLIED_INDEX_HEADER),
        HeaderValue::from(p.applied_index),
    );
    h.insert(
        HeaderName::from_static(NODE_HEADER),
        node.envs.node_header().clone(),
    );
    r
}

/// The common part of the snapshot and export endpoints.
async fn serve_snapshot(
    node: &Node,
    env: &str,
    q: &SnapshotQuery,
    headers: &HeaderMap,
) -> Result<(Arc<Published>, bool), ApiError> {
    let wait = q.wait()?;
    let want = Want {
        min_version: q.min_version,
        if_none_match: header_str(headers, header::IF_NONE_MATCH.as_str())?,
        wait,
    };
    read_barrier(node, None).await?;
    let p = await_snapshot(node, env, &want)
        .await?
        .ok_or_else(|| not_found(env))?;
    let not_modified = matches_etag(want.if_none_match, &p.etag);
    Ok((p, not_modified))
}

#[utoipa::path(
    get,
    path = "/v1/sdk/environments/{env}/snapshot",
    tag = "distribution",
    summary = "The SDK snapshot, with long-poll",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        SnapshotQuery,
        ("If-None-Match" = Option<String>, Header, description = "The current ETag gets 304"),
        ("X-Pulseplane-Instance" = Option<String>, Header, description = "SDK instance id"),
        ("X-Pulseplane-Have-Version" = Option<u64>, Header, description = "Version the instance has")
    ),
    responses(
        (status = 200, description = "The snapshot", body = Snapshot),
        (status = 304, description = "Not modified"),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn snapshot(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<SnapshotQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    // The headers are read in place: this is the hottest endpoint.
    let headers = request.headers();
    let instance = header_str(headers, INSTANCE_HEADER)?;
    let have = match header_str(headers, HAVE_VERSION_HEADER)? {
        None => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_header",
                format!("{HAVE_VERSION_HEADER} must be a version number"),
            )
        })?),
    };
    if let Some(i) = instance
        && (i.is_empty() || i.len() > MAX_TOKEN_LEN)
    {
        return Err(ApiError::bad_request(
            "invalid_header",
            format!("{INSTANCE_HEADER} must be 1 to {MAX_TOKEN_LEN} bytes"),
        ));
    }
    let actor = node.envs.get(&env);
    if let (Some(i), Some(actor)) = (instance, &actor) {
        actor.saw_instance(i, have.unwrap_or(0));
    }
    let (p, not_modified) = serve_snapshot(&node, &env, &q, headers).await?;
    // An environment that appeared while the poll waited is counted from
    // its next poll.
    if let Some(actor) = actor {
        // An instance sent a whole snapshot holds that version from now on
        // (or a newer one it already had).
        if let (Some(i), false) = (instance, not_modified) {
            actor.saw_instance(i, p.version.max(have.unwrap_or(0)));
        }
        actor.count_poll(not_modified, q.wait.is_some());
    }
    Ok(snapshot_response(&node, &p, headers, not_modified).await)
}

/// The bootstrap file: the snapshot, digest included, as a download.
#[utoipa::path(
    get,
    path = "/v1/environments/{env}/export",
    tag = "distribution",
    summary = "The bootstrap file (the snapshot with its digest)",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        SnapshotQuery,
        ("If-None-Match" = Option<String>, Header, description = "The current ETag gets 304")
    ),
    responses(
        (status = 200, description = "The bootstrap file", body = Snapshot),
        (status = 304, description = "Not modified"),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn export(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<SnapshotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (p, not_modified) = serve_snapshot(&node, &env, &q, &headers).await?;
    let mut r = snapshot_response(&node, &p, &headers, not_modified).await;
    let name = format!(
        "attachment; filename=\"pulseplane-{}-v{}.json\"",
        p.env, p.version
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/fleet",
    tag = "distribution",
    summary = "SDK instances polling this node, by version",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    ),
    responses(
        (status = 200, description = "The fleet report", body = FleetBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn fleet(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
) -> Result<Response, ApiError> {
    read_barrier(&node, None).await?;
    let actor = node.envs.get(&env).ok_or_else(|| not_found(&env))?;
    let body = FleetBody {
        env,
        node: node.id,
        report: actor.fleet(),
    };
    Ok(read_response(node.sm.applied_index(), &body))
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/sdk-status",
    tag = "distribution",
    summary = "Every SDK instance across the cluster: last seen, version held, on the latest or not",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        PageQuery
    ),
    responses(
        (status = 200, description = "The instances, by id", body = SdkStatus),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn sdk_status(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    q.limit()?;
    read_barrier(&node, None).await?;
    let actor = node.envs.get(&env).ok_or_else(|| not_found(&env))?;
    let mut views: Vec<(u64, u64, Vec<InstanceSeen>)> = vec![(
        node.id,
        actor.current().map_or(0, |p| p.version),
        actor.instances(),
    )];
    drop(actor);
    // Every other member's view, asked at once; a node that does not answer
    // in time is listed as unreachable.
    let members: Vec<(u64, String)> = {
        let m = node.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .nodes()
            .filter(|(id, _)| **id != node.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    };
    let mut asks = tokio::task::JoinSet::new();
    for (id, address) in members {
        let (node, env) = (node.clone(), env.clone());
        asks.spawn(async move {
            let view = node
                .peers
                .call::<_, (u64, Vec<InstanceSeen>)>(
                    &address,
                    id,
                    PATH_FLEET,
                    &env,
                    FLEET_ASK_TIMEOUT,
                )
                .await;
            (id, view.ok())
        });
    }
    let mut unreachable = Vec::new();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((id, Some((version, seen)))) => views.push((id, version, seen)),
            Ok((id, None)) => unreachable.push(id),
            Err(_) => {}
        }
    }
    unreachable.sort_unstable();
    let latest = views.iter().map(|v| v.1).max().unwrap_or(0);
    let mut answered: Vec<u64> = views.iter().map(|v| v.0).collect();
    answered.sort_unstable();
    // Each instance as last seen by any node.
    let mut by_id: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
    for (node_id, _, seen) in views {
        for s in seen {
            let slot = by_id
                .entry(s.instance)
                .or_insert((s.version, s.ago_ms, node_id));
            if s.ago_ms < slot.1 {
                *slot = (s.version, s.ago_ms, node_id);
            }
        }
    }
    let total = by_id.len();
    let converged = by_id.values().filter(|v| v.0 >= latest).count();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let page = paginate(
        by_id.iter().map(|(id, (version, ago, seen_by))| {
            (
                id,
                SdkInstance {
                    instance: id.clone(),
                    version: *version,
                    on_latest: *version >= latest,
                    last_seen: format_rfc3339_millis(
                        now_ms.saturating_sub(i64::try_from(*ago).unwrap_or(i64::MAX)),
                    ),
                    seconds_ago: *ago as f64 / 1000.0,
                    node: *seen_by,
                },
            )
        }),
        &q,
    )?;
    let body = SdkStatus {
        env,
        version: latest,
        instances: total,
        converged,
        nodes_answered: answered,
        nodes_unreachable: unreachable,
        window_seconds: crate::envs::FLEET_WINDOW.as_secs(),
        items: page.items,
        next_cursor: page.next_cursor,
    };
    Ok(read_response(node.sm.applied_index(), &body))
}

/// How long `sdk-status` waits for each other node's view.
const FLEET_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The SDK instances of an environment across the cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SdkStatus {
    env: String,
    /// The newest version any answering node serves.
    version: u64,
    /// Instances seen by any node within the window.
    instances: usize,
    /// Of those, how many hold `version` or newer.
    converged: usize,
    nodes_answered: Vec<u64>,
    /// Members that did not answer in time: instances polling only them
    /// are missing.
    nodes_unreachable: Vec<u64>,
    window_seconds: u64,
    /// This page, by instance id.
    items: Vec<SdkInstance>,
    next_cursor: Option<String>,
}

/// One SDK instance, as last seen by any node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SdkInstance {
    instance: String,
    /// The version it said it holds.
    version: u64,
    on_latest: bool,
    /// RFC 3339 time of its last poll.
    last_seen: String,
    seconds_ago: f64,
    /// The node it last polled.
    node: u64,
}

/// The fleet report of one node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct FleetBody {
    env: String,
    node: u64,
    #[serde(flatten)]
    report: crate::envs::FleetReport,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvaluateBody {
    /// `{"targeting_key": "...", "attributes": {...}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<Context>,
    /// Only these flags (default: all).
    #[serde(default)]
    flags: Option<Vec<String>>,
    /// Evaluate the drafts instead of the published version.
    #[serde(default)]
    draft: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Evaluated {
    env: String,
    /// The published version evaluated, or null for drafts.
    version: Option<u64>,
    draft: bool,
    results: Vec<Value>,
}

#[utoipa::path(
    post,
    path = "/v1/environments/{env}/evaluate",
    tag = "distribution",
    summary = "Preview evaluation (operators and the console; rate-limited)",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    ),
    request_body(content = EvaluateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Results", body = Evaluated),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn evaluate(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    node.evaluate_limiter.try_take().map_err(|after| ApiError {
        retry_after: Some(after.as_secs().max(1) as u32),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many preview evaluations on this node; evaluate in the SDK instead",
        )
    })?;
    let b: EvaluateBody = parse_body(&body)?;
    read_barrier(&node, None).await?;
    let ctx = b.context.unwrap_or_default();
    let (set, version): (Arc<FlagSet>, Option<u64>) = if b.draft {
        let (flags, segments) = node.sm.read(|_, state| {
            let e = state.env(&env)?;
            Ok::<_, ApiError>((
                e.draft_flags
                    .values()
                    .map(|d| (*d.item).clone())
                    .collect::<Vec<_>>(),
                e.draft_segments
                    .values()
                    .map(|d| (*d.item).clone())
                    .collect::<Vec<_>>(),
            ))
        })?;
        let set = FlagSet::compile(&env, 0, &flags, &segments).map_err(ApiError::invalid)?;
        (Arc::new(set), None)
    } else {
        let actor = node.envs.get(&env).ok_or_else(|| not_found(&env))?;
        let p = actor.current().ok_or_else(|| not_built(&env))?;
        // Compiled on the first preview of this version, off the async
        // workers.
        let compiled = p.clone();
        let set = tokio::task::spawn_blocking(move || compiled.flag_set())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "snapshot_unavailable",
                    "the published snapshot could not be compiled on this node",
                )
            })?;
        (set, Some(p.version))
    };
    let keys: Vec<String> = match b.flags {
        Some(keys) => keys,
        None => set.keys().map(str::to_owned).collect(),
    };
    let null = Value::Null;
    let results = keys
        .iter()
        .map(|k| {
            let d = set.json_details(k, &ctx, &null);
            let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("flag".into(), Value::from(k.as_str()));
            }
            v
        })
        .collect();
    let out = Evaluated {
        env,
        version,
        draft: b.draft,
        results,
    };
    Ok(read_response(node.sm.applied_index(), &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_acceptance() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn etag_matching() {
        let etag = HeaderValue::from_static("\"3-abcd\"");
        assert!(matches_etag(Some("\"3-abcd\""), &etag));
        assert!(matches_etag(Some("W/\"3-abcd\", \"x\""), &etag));
        assert!(matches_etag(Some("*"), &etag));
        assert!(!matches_etag(Some("\"2-abcd\""), &etag));
        assert!(!matches_etag(None, &etag));
    }

    #[test]
    fn waits_are_parsed_and_capped() {
        let q = |w: &str| SnapshotQuery {
            min_version: None,
            wait: Some(w.into()),
        };
        assert_eq!(q("30s").wait().unwrap(), Duration::from_secs(30));
        assert_eq!(q("250ms").wait().unwrap(), Duration::from_millis(250));
        assert_eq!(q("5").wait().unwrap(), Duration::from_secs(5));
        assert_eq!(q("1h").wait().unwrap(), MAX_WAIT);
        assert_eq!(
            q("soon").wait().unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}

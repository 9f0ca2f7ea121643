//! What the resource modules share: JSON bodies, paging, read consistency,
//! and submitting writes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pulseplane_core::audit::AuditContext;
use pulseplane_core::issue::pointer_from_serde_path;
use pulseplane_core::limits::MAX_TOKEN_LEN;
use pulseplane_core::{Command, CommandEnvelope, Outcome};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::error::Detail;
use crate::node::Node;

pub const APPLIED_INDEX_HEADER: &str = "x-pulseplane-applied-index";
pub const LOG_INDEX_HEADER: &str = "x-pulseplane-log-index";
pub const ENV_VERSION_HEADER: &str = "x-pulseplane-env-version";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Parses a JSON body: malformed JSON is 400; JSON of the wrong shape is
/// 422 naming the field, and so is a field the type does not know (every
/// unknown field is listed).
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let malformed = |e: serde_json::Error| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    };
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(
        &mut de,
        &mut |path: serde_ignored::Path<'_>| unknown.push(pointer_of(&path)),
    ));
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let path = pointer_from_serde_path(e.path());
            let inner = e.into_inner();
            if inner.is_data() {
                return Err(ApiError::field(
                    if path.is_empty() { "/" } else { &path },
                    inner.to_string(),
                ));
            }
            return Err(malformed(inner));
        }
    };
    de.end().map_err(malformed)?;
    if !unknown.is_empty() {
        let details = unknown
            .iter()
            .map(|p| Detail {
                path: p.clone(),
                problem: "unknown field".into(),
            })
            .collect();
        return Err(ApiError {
            details,
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("unknown field {}", unknown.join(", ")),
            )
        });
    }
    Ok(value)
}

/// The JSON pointer of a path reported by `serde_ignored`.
fn pointer_of(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}/{index}", pointer_of(parent)),
        Path::Map { parent, key } => format!(
            "{}/{}",
            pointer_of(parent),
            key.replace('~', "~0").replace('/', "~1")
        ),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => pointer_of(parent),
    }
}

/// A query string parsed into `T`: a value of the wrong type or an unknown
/// parameter gets 422 naming the parameter (`/min_version`), not a bare 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(Query)
            .map_err(|e| {
                let path = pointer_from_serde_path(e.path());
                ApiError::field(
                    if path.is_empty() { "/" } else { &path },
                    format!("query string: {}", e.into_inner()),
                )
            })
    }
}

/// `?limit=&cursor=` on list endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `local` (default) or `linearizable`.
    pub consistency: Option<String>,
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<usize, ApiError> {
        page_limit(self.limit)
    }
}

/// A `?limit=`: the default when absent, else 1 to [`MAX_LIMIT`].
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field(
            "/limit",
            format!("must be 1 to {MAX_LIMIT}"),
        )),
    }
}

/// Pages over `(key, item)` pairs sorted by key: the items after the
/// cursor (a key), at most `limit` of them.
pub fn paginate<'a, T: 'a>(
    items: impl Iterator<Item = (&'a String, T)>,
    q: &PageQuery,
) -> Result<Page<T>, ApiError> {
    let limit = q.limit()?;
    let mut out = Vec::new();
    let mut next_cursor = None;
    let mut last_key: Option<&String> = None;
    for (key, item) in items {
        if q.cursor.as_ref().is_some_and(|c| key <= c) {
            continue;
        }
        if out.len() == limit {
            next_cursor = last_key.cloned();
            break;
        }
        last_key = Some(key);
        out.push(item);
    }
    Ok(Page {
        items: out,
        next_cursor,
    })
}

/// `?consistency=linearizable` waits until this node has applied
/// everything committed when the read began; the default reads local
/// state as it is.
pub async fn read_barrier(node: &Node, consistency: Option<&str>) -> Result<(), ApiError> {
    // A node that just started serves reads only once it has caught up.
    if let Err(why) = node.may_serve_reads().await {
        return Err(ApiError::unavailable(
            "catching_up",
            format!("this node is not serving reads yet: {why}"),
        ));
    }
    match consistency {
        None | Some("local") => Ok(()),
        Some("linearizable") => {
            // Boxed, so the common local read's future stays small.
            let index = Box::pin(node.read_index()).await?;
            if Box::pin(node.wait_applied(index, node.writer.timeout())).await {
                Ok(())
            } else {
                Err(ApiError::unavailable(
                    "read_timeout",
                    format!("this node did not apply index {index} in time"),
                ))
            }
        }
        Some(other) => Err(ApiError::field(
            "/consistency",
            format!("{other:?} is not local or linearizable"),
        )),
    }
}

/// A JSON read answer with the applied index it reflects.
pub fn read_response<T: Serialize>(applied: u64, value: &T) -> Response {
    let mut r = Json(value).into_response();
    r.headers_mut().insert(
        HeaderName::from_static(APPLIED_INDEX_HEADER),
        HeaderValue::from(applied),
    );
    r
}

/// What a committed write answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WriteBody {
    /// The log index of the entry that committed the write.
    pub log_index: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A committed write and the status to answer with.
pub struct WriteOk {
    pub status: StatusCode,
    pub body: WriteBody,
}

impl IntoResponse for WriteOk {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(&self.body)).into_response();
        let h = r.headers_mut();
        h.insert(
            HeaderName::from_static(LOG_INDEX_HEADER),
            HeaderValue::from(self.body.log_index),
        );
        h.insert(
            HeaderName::from_static(ENV_VERSION_HEADER),
            HeaderValue::from(self.body.outcome.env_version),
        );
        if let Some(rev) = self.body.outcome.revision
            && let Ok(v) = HeaderValue::from_str(&format!("\"{rev}\""))
        {
            h.insert(axum::http::header::ETAG, v);
        }
        r
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The request's `Idempotency-Key`, or a fresh one.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(IDEMPOTENCY_HEADER) {
        None => Ok(format!(
            "auto-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        )),
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::bad_request("invalid_header", "Idempotency-Key must be ASCII")
            })?;
            if key.is_empty() || key.len() > MAX_TOKEN_LEN {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    format!("Idempotency-Key must be 1 to {MAX_TOKEN_LEN} bytes"),
                ));
            }
            Ok(key.to_owned())
        }
    }
}

/// Commits `command` through the leader and maps its result. `body_len`
/// (the request body's size) sizes the command for batching.
pub async fn submit(
    node: &Arc<Node>,
    headers: &HeaderMap,
    actor: &Actor,
    command: Command,
    body_len: usize,
    status: StatusCode,
) -> Result<WriteOk, ApiError> {
    let envelope = CommandEnvelope {
        idempotency_key: idempotency_key(headers)?,
        actor: actor.subject.clone(),
        at_ms: now_ms(),
        command,
        audit: Some(AuditContext {
            permission: actor
                .permission
                .map(|p| p.name().to_owned())
                .unwrap_or_default(),
            request_id: crate::api::request_id::current()
                .as_deref()
                .unwrap_or("")
                .to_owned(),
        }),
    };
    let committed = node.writer.write(envelope, body_len).await?;
    let outcome = committed.result?;
    Ok(WriteOk {
        status: if outcome.replayed {
            StatusCode::OK
        } else {
            status
        },
        body: WriteBody {
            log_index: committed.log_index,
            outcome,
        },
    })
}

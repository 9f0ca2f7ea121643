//! Draft flags: `/v1/environments/{env}/flags[/{key}]`. A write edits the
//! draft; publishing makes drafts live (see `publish`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use pulseplane_core::state::EnvState;
use pulseplane_core::{Command, Flag};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::common::Query;
use crate::api::common::{Page, WriteBody};
use crate::api::common::{
    PageQuery, WriteOk, paginate, parse_body, read_barrier, read_response, submit,
};
use crate::api::error::ErrorBody;
use crate::node::Node;
use pulseplane_core::diff::{Change, diff_items};

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments/{env}/flags", get(list))
        .route(
            "/v1/environments/{env}/flags/{key}",
            get(read).put(upsert).delete(remove),
        )
}

/// A flag with its draft and published state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagView {
    pub key: String,
    /// The draft's revision (its ETag); absent when only published.
    pub revision: Option<u64>,
    pub draft: Option<Flag>,
    pub published_revision: Option<u64>,
    /// As served, kill switch applied.
    pub published: Option<Flag>,
    pub unpublished_changes: bool,
    pub killed: bool,
    pub updated_at_ms: Option<i64>,
    pub updated_by: Option<String>,
}

impl FlagView {
    fn of(e: &EnvState, key: &str) -> Option<FlagView> {
        let draft = e.draft_flags.get(key);
        let published = e.published_flag(key);
        if draft.is_none() && published.is_none() {
            return None;
        }
        Some(FlagView {
            key: key.to_owned(),
            revision: draft.map(|d| d.item.version),
            draft: draft.map(|d| (*d.item).clone()),
            published_revision: published.as_ref().map(|f| f.version),
            published,
            unpublished_changes: e.has_unpublished_changes(key),
            killed: e.kills.contains_key(key),
            updated_at_ms: draft.map(|d| d.updated_at_ms),
            updated_by: draft.map(|d| d.updated_by.clone()),
        })
    }
}

/// A flag as read, with `diff` when `?diff=published` asked for it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagViewWithDiff {
    #[serde(flatten)]
    pub view: FlagView,
    /// The draft's changes against the published version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Vec<Change>>,
}

fn flag_not_found(env: &str, key: &str) -> ApiError {
    ApiError::not_found(
        "flag_not_found",
        format!("flag {key:?} not found in environment {env:?}"),
    )
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/flags",
    tag = "flags",
    summary = "List flags with their draft and published state",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of flags", body = Page<FlagView>),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let e = state.env(&env)?;
        let mut keys: Vec<&String> = e.draft_flags.keys().collect();
        let published = e.current_flags();
        keys.extend(
            published
                .keys()
                .filter(|k| !e.draft_flags.contains_key(*k))
                .filter_map(|k| e.flag_revisions.get_key_value(k).map(|(k, _)| k)),
        );
        keys.sort();
        let page = paginate(
            keys.into_iter()
                .filter_map(|k| Some((k, FlagView::of(e, k)?))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

/// `GET .../flags/{key}[?diff=published]`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ItemQuery {
    /// `local` (default) or `linearizable`.
    pub consistency: Option<String>,
    /// `published`: add the draft's diff against the published version.
    pub diff: Option<String>,
}

impl ItemQuery {
    /// True when the diff against the published version is asked for.
    pub fn wants_diff(&self) -> Result<bool, ApiError> {
        match self.diff.as_deref() {
            None => Ok(false),
            Some("published") => Ok(true),
            Some(other) => Err(ApiError::field(
                "/diff",
                format!("{other:?} is not a diff this endpoint gives (use published)"),
            )),
        }
    }
}

/// A read answer with the draft's revision as its ETag.
pub(crate) fn item_response<T: Serialize>(
    applied: u64,
    view: &T,
    revision: Option<u64>,
) -> Response {
    let mut r = read_response(applied, view);
    if let Some(rev) = revision
        && let Ok(v) = header::HeaderValue::from_str(&format!("\"{rev}\""))
    {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/flags/{key}",
    tag = "flags",
    summary = "Read a flag (optionally with the draft diff)",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ItemQuery
    ),
    responses(
        (status = 200, description = "The flag; ETag is the draft revision", body = FlagViewWithDiff),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn read(
    State(node): State<Arc<Node>>,
    Path((env, key)): Path<(String, String)>,
    Query(q): Query<ItemQuery>,
) -> Result<Response, ApiError> {
    let with_diff = q.wants_diff()?;
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let e = state.env(&env)?;
        let view = FlagView::of(e, &key).ok_or_else(|| flag_not_found(&env, &key))?;
        let applied = applied.map_or(0, |l| l.index);
        let diff = with_diff.then(|| {
            // The versioned content, without the kill switch applied.
            let published = e
                .published_flags
                .get(&key)
                .and_then(|rev| e.flag_revision(&key, *rev));
            diff_items(published, view.draft.as_ref())
        });
        let revision = view.revision;
        Ok(item_response(
            applied,
            &FlagViewWithDiff { view, diff },
            revision,
        ))
    })
}

/// `If-Match: "3"` (or `3`) expects revision 3; `If-None-Match: *` expects
/// the flag not to exist.
pub(crate) fn expected_revision(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let text = v
            .to_str()
            .unwrap_or("")
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"');
        return text.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_header",
                "If-Match must be a draft revision, as given in its ETag",
            )
        });
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*")
    {
        return Ok(Some(0));
    }
    Ok(None)
}

#[utoipa::path(
    put,
    path = "/v1/environments/{env}/flags/{key}",
    tag = "flags",
    summary = "Create or replace a draft flag",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("If-Match" = Option<String>, Header, description = "The draft revision the write expects, as in its ETag"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = Flag, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = WriteBody),
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn upsert(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path((env, key)): Path<(String, String)>,
    body: Bytes,
) -> Result<WriteOk, ApiError> {
    let expected = expected_revision(&headers)?;
    let mut flag: Flag = parse_body(&body)?;
    if flag.key.is_empty() {
        flag.key = key;
    } else if flag.key != key {
        return Err(ApiError::field(
            "/key",
            format!("{:?} differs from the key in the path {key:?}", flag.key),
        ));
    }
    let mut ok = submit(
        &node,
        &headers,
        &actor,
        Command::UpsertFlag {
            env,
            flag,
            expected_revision: expected,
        },
        body.len(),
        StatusCode::OK,
    )
    .await?;
    if ok.body.outcome.created && !ok.body.outcome.replayed {
        ok.status = StatusCode::CREATED;
    }
    Ok(ok)
}

#[utoipa::path(
    delete,
    path = "/v1/environments/{env}/flags/{key}",
    tag = "flags",
    summary = "Delete a draft flag",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("If-Match" = Option<String>, Header, description = "The draft revision the write expects, as in its ETag"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    responses(
        (status = 200, description = "Committed", body = WriteBody),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn remove(
    State(node): State<Arc<Node>>,
    actor: Actor,
    headers: HeaderMap,
    Path((env, key)): Path<(String, String)>,
) -> Result<WriteOk, ApiError> {
    let expected = expected_revision(&headers)?;
    submit(
        &node,
        &headers,
        &actor,
        Command::DeleteFlag {
            env,
            key,
            expected_revision: expected,
        },
        0,
        StatusCode::OK,
    )
    .await
}

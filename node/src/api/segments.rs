//! Draft segments: `/v1/environments/{env}/segments[/{key}]`, the same shape
//! as flags. Publishing makes them live with the flags that use them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use pulseplane_core::state::EnvState;
use pulseplane_core::{Command, Segment};
use serde::Serialize;

use crate::api::ApiError;
use crate::api::auth::Actor;
use crate::api::common::Query;
use crate::api::common::{Page, WriteBody};
use crate::api::common::{
    PageQuery, WriteOk, paginate, parse_body, read_barrier, read_response, submit,
};
use crate::api::error::ErrorBody;
use crate::api::flags::{ItemQuery, expected_revision, item_response};
use crate::node::Node;
use pulseplane_core::diff::{Change, diff_items};

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments/{env}/segments", get(list))
        .route(
            "/v1/environments/{env}/segments/{key}",
            get(read).put(upsert).delete(remove),
        )
}

/// A segment with its draft and published state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentView {
    pub key: String,
    /// The draft's revision (its ETag); absent when only published.
    pub revision: Option<u64>,
    pub draft: Option<Segment>,
    pub published_revision: Option<u64>,
    pub published: Option<Segment>,
    pub unpublished_changes: bool,
    pub updated_at_ms: Option<i64>,
    pub updated_by: Option<String>,
}

impl SegmentView {
    fn of(e: &EnvState, key: &str) -> Option<SegmentView> {
        let draft = e.draft_segments.get(key);
        let published = e.published_segment(key);
        if draft.is_none() && published.is_none() {
            return None;
        }
        Some(SegmentView {
            key: key.to_owned(),
            revision: draft.map(|d| d.item.version),
            draft: draft.map(|d| (*d.item).clone()),
            published_revision: published.as_ref().map(|s| s.version),
            published,
            unpublished_changes: e.has_unpublished_segment_changes(key),
            updated_at_ms: draft.map(|d| d.updated_at_ms),
            updated_by: draft.map(|d| d.updated_by.clone()),
        })
    }
}

/// A segment as read, with `diff` when `?diff=published` asked for it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentViewWithDiff {
    #[serde(flatten)]
    pub view: SegmentView,
    /// The draft's changes against the published version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Vec<Change>>,
}

fn segment_not_found(env: &str, key: &str) -> ApiError {
    ApiError::not_found(
        "segment_not_found",
        format!("segment {key:?} not found in environment {env:?}"),
    )
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/segments",
    tag = "segments",
    summary = "List segments",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of segments", body = Page<SegmentView>),
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
        let mut keys: Vec<String> = e.draft_segments.keys().cloned().collect();
        keys.extend(
            e.current_segments()
                .into_keys()
                .filter(|k| !e.draft_segments.contains_key(k)),
        );
        keys.sort();
        let page = paginate(
            keys.iter()
                .filter_map(|k| Some((k, SegmentView::of(e, k)?))),
            &q,
        )?;
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/segments/{key}",
    tag = "segments",
    summary = "Read a segment (optionally with the draft diff)",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ItemQuery
    ),
    responses(
        (status = 200, description = "The segment", body = SegmentViewWithDiff),
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
        let view = SegmentView::of(e, &key).ok_or_else(|| segment_not_found(&env, &key))?;
        let applied = applied.map_or(0, |l| l.index);
        let diff = with_diff.then(|| diff_items(view.published.as_ref(), view.draft.as_ref()));
        let revision = view.revision;
        Ok(item_response(
            applied,
            &SegmentViewWithDiff { view, diff },
            revision,
        ))
    })
}

#[utoipa::path(
    put,
    path = "/v1/environments/{env}/segments/{key}",
    tag = "segments",
    summary = "Create or replace a draft segment",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("key" = String, Path, description = "Flag or segment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("If-Match" = Option<String>, Header, description = "The draft revision the write expects, as in its ETag"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key apply once")
    ),
    request_body(content = Segment, content_type = "application/json"),
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
    let mut segment: Segment = parse_body(&body)?;
    if segment.key.is_empty() {
        segment.key = key;
    } else if segment.key != key {
        return Err(ApiError::field(
            "/key",
            format!("{:?} differs from the key in the path {key:?}", segment.key),
        ));
    }
    let mut ok = submit(
        &node,
        &headers,
        &actor,
        Command::UpsertSegment {
            env,
            segment,
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
    path = "/v1/environments/{env}/segments/{key}",
    tag = "segments",
    summary = "Delete a draft segment",
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
        Command::DeleteSegment {
            env,
            key,
            expected_revision: expected,
        },
        0,
        StatusCode::OK,
    )
    .await
}

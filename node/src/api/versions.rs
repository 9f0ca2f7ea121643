//! Version history: `GET /v1/environments/{env}/versions` (newest first),
//! `GET .../versions/{v}` (a version's full content) and
//! `GET .../versions/{v}?diff_from={u}` (what changed from `u` to `v`).
//! Only the retained versions can be read (see the version retention
//! setting); version 0 is the empty content before the first publish.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use pulseplane_core::state::{EnvState, VersionAction, VersionRecord};
use pulseplane_core::{Flag, Segment};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::api::common::Query;
use crate::api::common::{Page, PageQuery, read_barrier, read_response};
use crate::api::error::ErrorBody;
use crate::node::Node;
use pulseplane_core::diff::{Change, diff_items};

pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/environments/{env}/versions", get(list))
        .route("/v1/environments/{env}/versions/{version}", get(read))
}

/// One version in the history list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    pub version: u64,
    pub at_ms: i64,
    pub author: String,
    pub message: String,
    pub action: VersionAction,
    pub changed_flags: Vec<String>,
    pub changed_segments: Vec<String>,
}

impl VersionSummary {
    fn of(r: &VersionRecord) -> VersionSummary {
        VersionSummary {
            version: r.version,
            at_ms: r.at_ms,
            author: r.author.clone(),
            message: r.message.clone(),
            action: r.action.clone(),
            changed_flags: r.changed_flags.clone(),
            changed_segments: r.changed_segments.clone(),
        }
    }
}

fn version_not_found(env: &str, v: u64) -> ApiError {
    ApiError::not_found(
        "version_not_found",
        format!("version {v} of environment {env:?} is not retained or does not exist"),
    )
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/versions",
    tag = "history",
    summary = "List versions, newest first",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of versions", body = Page<VersionSummary>),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    Path(env): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit()?;
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::field("/cursor", "not a cursor this list gave out"))?,
        ),
    };
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let e = state.env(&env)?;
        let mut items: Vec<VersionSummary> = e
            .versions
            .iter()
            .rev()
            .filter(|r| before.is_none_or(|b| r.version < b))
            .take(limit + 1)
            .map(VersionSummary::of)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| r.version.to_string())
        } else {
            None
        };
        let page = Page { items, next_cursor };
        Ok(read_response(applied.map_or(0, |l| l.index), &page))
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    /// Answer the diff from this version (0: the empty start) instead.
    diff_from: Option<u64>,
    /// `local` (default) or `linearizable`.
    consistency: Option<String>,
}

/// A version's full content.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionContent {
    #[serde(flatten)]
    summary: VersionSummary,
    /// The versioned flags (kill switches are kept apart from content).
    flags: Vec<Flag>,
    segments: Vec<Segment>,
    /// The flags whose kill switch is in force now (it overrides every
    /// version until restored).
    killed_now: Vec<String>,
}

/// What changed for one flag or segment between two versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ItemDiff {
    key: String,
    /// `added`, `removed` or `changed`.
    #[schema(value_type = String)]
    status: &'static str,
    from_revision: Option<u64>,
    to_revision: Option<u64>,
    changes: Vec<Change>,
}

/// What changed from one version to another.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionDiff {
    env: String,
    from: u64,
    to: u64,
    flags: Vec<ItemDiff>,
    segments: Vec<ItemDiff>,
}

/// `GET .../versions/{v}`: the content, or with `diff_from` the diff.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum VersionRead {
    Content(VersionContent),
    Diff(VersionDiff),
}

/// Key → published revision.
type Revisions = BTreeMap<String, u64>;

/// Flag and segment key → revision in version `v` (empty for version 0).
fn content(e: &EnvState, env: &str, v: u64) -> Result<(Revisions, Revisions), ApiError> {
    let c = e
        .version_content(v)
        .ok_or_else(|| version_not_found(env, v))?;
    Ok((c.flags, c.segments))
}

fn diff_maps<T: Serialize>(
    from: &BTreeMap<String, u64>,
    to: &BTreeMap<String, u64>,
    resolve: impl Fn(&str, u64) -> Option<T>,
) -> Vec<ItemDiff> {
    let mut keys: Vec<&String> = from.keys().chain(to.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (from.get(k).copied(), to.get(k).copied());
            if a == b {
                return None;
            }
            let old = a.and_then(|r| resolve(k, r));
            let new = b.and_then(|r| resolve(k, r));
            Some(ItemDiff {
                key: k.clone(),
                status: match (a, b) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    _ => "changed",
                },
                from_revision: a,
                to_revision: b,
                changes: diff_items(old.as_ref(), new.as_ref()),
            })
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/v1/environments/{env}/versions/{version}",
    tag = "history",
    summary = "A version's content, or a diff with diff_from",
    params(
        ("env" = String, Path, description = "Environment key", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        ("version" = u64, Path, description = "Version number"),
        VersionQuery
    ),
    responses(
        (status = 200, description = "The version's content, or with diff_from a VersionDiff", body = VersionRead),
        (status = "4XX", description = "Bad input, unknown resource or conflict", body = ErrorBody),
        (status = 503, description = "No leader, timeout, catching up or stopping (with Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn read(
    State(node): State<Arc<Node>>,
    Path((env, version)): Path<(String, u64)>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&node, q.consistency.as_deref()).await?;
    node.sm.read(|applied, state| {
        let e = state.env(&env)?;
        let applied = applied.map_or(0, |l| l.index);
        if let Some(from) = q.diff_from {
            let (ff, fs) = content(e, &env, from)?;
            let (tf, ts) = content(e, &env, version)?;
            let body = VersionDiff {
                env: env.clone(),
                from,
                to: version,
                flags: diff_maps(&ff, &tf, |k, r| e.flag_revision(k, r).cloned()),
                segments: diff_maps(&fs, &ts, |k, r| e.segment_revision(k, r).cloned()),
            };
            return Ok(read_response(applied, &VersionRead::Diff(body)));
        }
        let r = e
            .version_record(version)
            .ok_or_else(|| version_not_found(&env, version))?;
        let content = e
            .version_content(version)
            .ok_or_else(|| version_not_found(&env, version))?;
        let body = VersionContent {
            summary: VersionSummary::of(r),
            flags: e.flags_of(&content),
            segments: e.segments_of(&content),
            killed_now: e.kills.keys().cloned().collect(),
        };
        Ok(read_response(applied, &VersionRead::Content(body)))
    })
}

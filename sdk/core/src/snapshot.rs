//! The snapshot wire format: one environment's published content, as SDKs
//! download it and as the CI/CD bootstrap export writes it.
//!
//! `digest` is the lowercase hex SHA-256 of the RFC 8785 canonical JSON of
//! the snapshot object without its `digest` member, so any language can
//! recompute it. Members this version does not know are covered too.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::compile::FlagSet;
use crate::issue::{Issue, ValidationError, parse_json};
use crate::jcs::{canonical_sha256_of_text, hex, to_canonical_string};
use crate::model::{Flag, Segment};
use crate::time::format_rfc3339_millis;

/// What [`Snapshot::load_compact`] keeps: the header (flags and segments
/// emptied), each flag's key with what the caller kept of it, and the
/// compiled set.
pub type Compact<T> = (Snapshot, Vec<(String, T)>, FlagSet);

/// The two members read before the digest is checked; the rest is skipped.
#[derive(Deserialize)]
struct Header {
    format: Option<Value>,
    digest: Option<Value>,
}

/// The snapshot format this crate writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// One environment's published flags and segments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    pub format: u32,
    pub env: String,
    /// Environment version; 0 before the first publish.
    pub version: u64,
    /// RFC 3339 time of the publish that made this version; null for 0.
    pub published_at: Option<String>,
    /// Sorted by key; killed flags have `enabled: false, killed: true`.
    pub flags: Vec<Flag>,
    /// Sorted by key.
    pub segments: Vec<Segment>,
    pub digest: String,
}

/// Why a snapshot file or response was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is not valid JSON of the snapshot shape: {0}")]
    Parse(#[source] ValidationError),
    #[error("snapshot format {found} is not supported (this build reads {SNAPSHOT_FORMAT})")]
    UnsupportedFormat { found: u64 },
    #[error("snapshot digest mismatch: it says {stated}, its content hashes to {computed}")]
    DigestMismatch { stated: String, computed: String },
    #[error("snapshot content is invalid: {0}")]
    Invalid(#[source] ValidationError),
}

/// SHA-256 (lowercase hex) of the canonical JSON of `value`.
pub fn canonical_sha256(value: &Value) -> String {
    hex(&canonical_sha256_bytes(value))
}

/// [`canonical_sha256`] as bytes.
pub fn canonical_sha256_bytes(value: &Value) -> [u8; 32] {
    Sha256::digest(to_canonical_string(value).as_bytes()).into()
}

fn digest_of(mut value: Value) -> String {
    if let Value::Object(map) = &mut value {
        map.remove("digest");
    }
    canonical_sha256(&value)
}

/// The wire form of a [`Snapshot`] over borrowed or shared items: the
/// same members in the same order, so the same JSON.
#[derive(Serialize)]
struct SnapshotView<'a, F: Serialize, S: Serialize> {
    format: u32,
    env: &'a str,
    version: u64,
    published_at: Option<String>,
    flags: &'a [F],
    segments: &'a [S],
    digest: &'a str,
}

/// A snapshot's compact JSON and its digest, written from shared flags and
/// segments (sorted by key here) without copying them: the bytes and
/// digest [`Snapshot::new`] and [`Snapshot::to_json`] would give for the
/// same content. The JSON is written once, with an empty digest that is
/// then filled in.
pub fn snapshot_json(
    env: &str,
    version: u64,
    published_at_ms: Option<i64>,
    mut flags: Vec<Arc<Flag>>,
    mut segments: Vec<Arc<Segment>>,
) -> (Vec<u8>, String) {
    flags.sort_by(|a, b| a.key.cmp(&b.key));
    segments.sort_by(|a, b| a.key.cmp(&b.key));
    let view = SnapshotView {
        format: SNAPSHOT_FORMAT,
        env,
        version,
        published_at: published_at_ms.map(format_rfc3339_millis),
        flags: &flags,
        segments: &segments,
        digest: "",
    };
    let mut body = serde_json::to_vec(&view).unwrap_or_default();
    let digest = std::str::from_utf8(&body)
        .ok()
        .and_then(|text| canonical_sha256_of_text(text, Some("digest")).ok())
        .unwrap_or_default();
    // The digest is the last member: the text ends with `"digest":""}`.
    if body.ends_with(b"\"\"}") {
        body.truncate(body.len() - 2);
        body.extend_from_slice(digest.as_bytes());
        body.extend_from_slice(b"\"}");
        (body, digest)
    } else {
        // Unreachable with serde_json's compact writer; fall back to the
        // owned form rather than emit a snapshot without its digest.
        let snap = Snapshot::new(
            env,
            version,
            published_at_ms,
            flags.iter().map(|f| (**f).clone()).collect(),
            segments.iter().map(|s| (**s).clone()).collect(),
        );
        (snap.to_json(), snap.digest)
    }
}

impl Snapshot {
    /// Builds a snapshot and its digest; flags and segments are sorted by key.
    pub fn new(
        env: &str,
        version: u64,
        published_at_ms: Option<i64>,
        mut flags: Vec<Flag>,
        mut segments: Vec<Segment>,
    ) -> Snapshot {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        segments.sort_by(|a, b| a.key.cmp(&b.key));
        let mut snap = Snapshot {
            format: SNAPSHOT_FORMAT,
            env: env.to_owned(),
            version,
            published_at: published_at_ms.map(format_rfc3339_millis),
            flags,
            segments,
            digest: String::new(),
        };
        snap.digest = snap.compute_digest();
        snap
    }

    /// The digest of this snapshot's content, hashed from its JSON text
    /// level by level (no JSON tree of the whole snapshot, which for a
    /// large environment is many times its size).
    pub fn compute_digest(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        canonical_sha256_of_text(&text, Some("digest"))
            .unwrap_or_else(|_| digest_of(serde_json::to_value(self).unwrap_or(Value::Null)))
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a snapshot and checks its format and digest. The content is
    /// checked when it is compiled. The digest is computed from the text
    /// level by level, without a JSON tree, so that a large snapshot costs
    /// little more than its typed form.
    pub fn from_json(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let parse_error = |message: String| {
            SnapshotError::Parse(ValidationError {
                issues: vec![Issue::new("", message)],
            })
        };
        let text =
            std::str::from_utf8(bytes).map_err(|e| parse_error(format!("not UTF-8 text: {e}")))?;
        let header: Header = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => parse_error("expected a JSON object".into()),
            _ => parse_error(e.to_string()),
        })?;
        match header.format.as_ref().and_then(Value::as_u64) {
            Some(f) if f == u64::from(SNAPSHOT_FORMAT) => {}
            Some(f) => return Err(SnapshotError::UnsupportedFormat { found: f }),
            None => {
                return Err(SnapshotError::Parse(ValidationError {
                    issues: vec![Issue::new("/format", "missing or not an integer")],
                }));
            }
        }
        let stated = match header.digest {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let computed = canonical_sha256_of_text(text, Some("digest"))
            .map_err(|e| parse_error(e.to_string()))?;
        if stated != computed {
            return Err(SnapshotError::DigestMismatch { stated, computed });
        }
        parse_json(bytes).map_err(SnapshotError::Parse)
    }

    /// Validates and compiles the content for evaluation.
    pub fn compile(&self) -> Result<FlagSet, SnapshotError> {
        FlagSet::compile(&self.env, self.version, &self.flags, &self.segments)
            .map_err(SnapshotError::Invalid)
    }

    /// Parses, verifies and compiles in one step, keeping only what an SDK
    /// needs beside the compiled set: the snapshot's header (its flags and
    /// segments emptied) and each flag's key with `keep(flag)`. The flags
    /// are compiled in place, never copied: the least memory for a large
    /// snapshot.
    pub fn load_compact<T>(
        bytes: &[u8],
        keep: impl Fn(&Flag) -> T,
    ) -> Result<Compact<T>, SnapshotError> {
        let mut snap = Snapshot::from_json(bytes)?;
        let kept = snap
            .flags
            .iter()
            .map(|f| (f.key.clone(), keep(f)))
            .collect();
        let flags = std::mem::take(&mut snap.flags);
        let segments = std::mem::take(&mut snap.segments);
        let set = FlagSet::compile_owned(&snap.env, snap.version, flags, &segments)
            .map_err(SnapshotError::Invalid)?;
        Ok((snap, kept, set))
    }

    /// Parses, verifies and compiles in one step.
    pub fn load(bytes: &[u8]) -> Result<(Snapshot, FlagSet), SnapshotError> {
        let snap = Snapshot::from_json(bytes)?;
        let set = snap.compile()?;
        Ok((snap, set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FlagKind;

    #[test]
    fn the_shared_writer_gives_the_owned_form_bytes_and_digest() {
        let mut quoted = Flag::new("q\"uote/\u{e9}", FlagKind::Boolean);
        quoted.description = "line\nbreak \u{1f600}".into();
        let flags = vec![
            Flag::new("b", FlagKind::Boolean),
            quoted,
            Flag::new("a", FlagKind::Boolean),
        ];
        let segments: Vec<Segment> = ["s2", "s1"]
            .iter()
            .map(|k| {
                serde_json::from_value(serde_json::json!({"key": k, "included": ["u"]})).unwrap()
            })
            .collect();
        for published_at in [None, Some(1_795_827_723_456)] {
            let owned = Snapshot::new("prod", 7, published_at, flags.clone(), segments.clone());
            let (body, digest) = snapshot_json(
                "prod",
                7,
                published_at,
                flags.iter().cloned().map(Arc::new).collect(),
                segments.iter().cloned().map(Arc::new).collect(),
            );
            assert_eq!(digest, owned.digest);
            assert_eq!(
                String::from_utf8(body.clone()).unwrap(),
                String::from_utf8(owned.to_json()).unwrap()
            );
            assert_eq!(Snapshot::from_json(&body).unwrap(), owned);
        }
        let (empty, digest) = snapshot_json("dev", 0, None, vec![], vec![]);
        assert_eq!(Snapshot::from_json(&empty).unwrap().digest, digest);
    }

    #[test]
    fn round_trip_and_digest() {
        let snap = Snapshot::new(
            "prod",
            3,
            Some(1_795_827_723_456),
            vec![
                Flag::new("b", FlagKind::Boolean),
                Flag::new("a", FlagKind::Boolean),
            ],
            vec![],
        );
        assert_eq!(snap.flags[0].key, "a");
        assert_eq!(
            snap.published_at.as_deref(),
            Some("2026-11-28T01:02:03.456Z")
        );
        // The digest from the text equals the digest of the JSON tree.
        assert_eq!(snap.digest, digest_of(serde_json::to_value(&snap).unwrap()));
        let text = snap.to_json();
        let back = Snapshot::from_json(&text).unwrap();
        assert_eq!(back, snap);
        assert_eq!(back.compile().unwrap().len(), 2);
    }

    #[test]
    fn tampering_is_detected() {
        let snap = Snapshot::new(
            "prod",
            1,
            Some(0),
            vec![Flag::new("a", FlagKind::Boolean)],
            vec![],
        );
        let text = String::from_utf8(snap.to_json())
            .unwrap()
            .replace("\"enabled\":true", "\"enabled\":false");
        assert!(matches!(
            Snapshot::from_json(text.as_bytes()),
            Err(SnapshotError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn unknown_members_are_covered_by_the_digest() {
        let snap = Snapshot::new("prod", 1, Some(0), vec![], vec![]);
        let mut v = serde_json::to_value(&snap).unwrap();
        v["future_field"] = Value::from(7);
        v["digest"] = Value::from(digest_of(v.clone()));
        let back = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back.version, 1);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            Snapshot::from_json(b"{"),
            Err(SnapshotError::Parse(_))
        ));
        assert!(matches!(
            Snapshot::from_json(b"[]"),
            Err(SnapshotError::Parse(_))
        ));
        assert!(matches!(
            Snapshot::from_json(br#"{"format":2}"#),
            Err(SnapshotError::UnsupportedFormat { found: 2 })
        ));
    }
}

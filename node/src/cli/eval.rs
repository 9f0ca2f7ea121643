//! `pulseplane eval`: answers "why did this context get this variant" from a
//! snapshot or bootstrap file, with no control plane running.

use std::path::Path;

use pulseplane_core::{Context, Snapshot, issue::parse_json};
use serde_json::{Value, json};

/// Why `eval` could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Snapshot {
        path: String,
        #[source]
        source: pulseplane_core::SnapshotError,
    },
    #[error("--context: {0}")]
    Context(#[source] pulseplane_core::ValidationError),
    #[error("--default: {0}")]
    Default(#[source] pulseplane_core::ValidationError),
}

/// Evaluates `flag` in the snapshot at `path` for `context` (JSON) and
/// returns the evaluation details as JSON. `default` is the caller's default
/// as JSON (null when absent).
pub fn run(
    path: &Path,
    flag: &str,
    context: &str,
    default: Option<&str>,
) -> Result<Value, EvalError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
        path: display.clone(),
        source,
    })?;
    let (_, set) = Snapshot::load(&bytes).map_err(|source| EvalError::Snapshot {
        path: display,
        source,
    })?;
    let ctx: Context = parse_json(context.as_bytes()).map_err(EvalError::Context)?;
    let default: Value = match default {
        Some(d) => parse_json(d.as_bytes()).map_err(EvalError::Default)?,
        None => Value::Null,
    };
    let d = set.json_details(flag, &ctx, &default);
    Ok(json!({
        "flag": flag,
        "env": set.env(),
        "value": d.value,
        "variant": d.variant,
        "reason": d.reason,
        "error_code": d.error_code,
        "error_message": d.error_message,
        "rule_index": d.rule_index,
        "flag_version": d.flag_version,
        "env_version": d.env_version,
    }))
}

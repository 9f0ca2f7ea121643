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

/// The typed call to make, as an SDK would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueType {
    Bool,
    String,
    Int,
    Float,
    Json,
}

/// Evaluates `flag` in the snapshot at `path` for `context` (JSON) with the
/// typed call `ty`, and returns the evaluation details as JSON. `default` is
/// the caller's default as JSON (false, "", 0, 0.0 or null when absent).
pub fn run(
    path: &Path,
    flag: &str,
    context: &str,
    ty: ValueType,
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
        None => match ty {
            ValueType::Bool => Value::Bool(false),
            ValueType::String => Value::from(""),
            ValueType::Int => Value::from(0),
            ValueType::Float => Value::from(0.0),
            ValueType::Json => Value::Null,
        },
    };
    let wrong = |what: &str| {
        EvalError::Default(pulseplane_core::ValidationError {
            issues: vec![pulseplane_core::Issue::new(
                "",
                format!("expected {what} for --type"),
            )],
        })
    };
    let details = match ty {
        ValueType::Bool => {
            let b = default.as_bool().ok_or_else(|| wrong("true or false"))?;
            report(set.bool_details(flag, &ctx, b))
        }
        ValueType::String => {
            let s = default.as_str().ok_or_else(|| wrong("a JSON string"))?;
            report(set.string_details(flag, &ctx, s))
        }
        ValueType::Int => {
            let i = default.as_i64().ok_or_else(|| wrong("an integer"))?;
            report(set.int_details(flag, &ctx, i))
        }
        ValueType::Float => {
            let f = default.as_f64().ok_or_else(|| wrong("a number"))?;
            report(set.float_details(flag, &ctx, f))
        }
        ValueType::Json => report(set.json_details(flag, &ctx, &default)),
    };
    let mut out = json!({"flag": flag, "env": set.env()});
    if let (Some(out), Value::Object(details)) = (out.as_object_mut(), details) {
        out.extend(details);
    }
    Ok(out)
}

fn report<T: serde::Serialize>(d: pulseplane_core::EvaluationDetails<'_, T>) -> Value {
    serde_json::to_value(&d).unwrap_or(Value::Null)
}

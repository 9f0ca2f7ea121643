//! Validation problems: each names the JSON pointer of the offending field.

use serde::{Deserialize, Serialize};

/// One problem in operator input or in a snapshot, e.g.
/// `/rules/2/clauses/0/values/0: invalid regex: ...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Issue {
    /// JSON pointer (RFC 6901) into the checked document; "" is the document.
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one document, reported together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} validation problem(s): {}", .issues.len(), join(.issues))]
pub struct ValidationError {
    pub issues: Vec<Issue>,
}

fn join(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationError {
    /// `Ok(())` when `issues` is empty.
    pub fn check(issues: Vec<Issue>) -> Result<(), ValidationError> {
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { issues })
        }
    }

    /// The same problems with `prefix` put before every path.
    pub fn prefixed(mut self, prefix: &str) -> ValidationError {
        for issue in &mut self.issues {
            issue.path.insert_str(0, prefix);
        }
        self
    }
}

/// Collects issues under a path prefix.
pub(crate) struct Issues<'a> {
    pub(crate) out: &'a mut Vec<Issue>,
}

impl Issues<'_> {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Issue::new(path, message));
    }

    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }
}

/// Parses JSON into `T`, turning a syntax or shape error into an [`Issue`]
/// that names the field (`/rules/0/serve: unknown variant ...`).
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            let path = pointer_from_serde_path(e.path());
            return Err(ValidationError {
                issues: vec![Issue::new(path, e.into_inner().to_string())],
            });
        }
    };
    if let Err(e) = de.end() {
        return Err(ValidationError {
            issues: vec![Issue::new("", e.to_string())],
        });
    }
    Ok(value)
}

/// The JSON pointer of a serde path, as used in validation issues.
pub fn pointer_from_serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => {}
        }
    }
    out
}

//! Structural JSON diffs: the node's `?diff=published` and `?diff_from=`,
//! and the compact diffs of audit entries.
//!
//! A diff is a list of changes, each located by JSON pointer: `add` (only
//! in the new value), `remove` (only in the old one) or `replace`. Arrays
//! are compared item by item; a longer or shorter array shows the extra
//! items as added or removed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One difference between two JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    pub path: String,
    pub op: ChangeOp,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub from: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub to: Option<Value>,
}

/// A field that is there, even as `null`, is `Some`: a change from or to
/// `null` must read back as it was written.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What a [`Change`] does at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// Only in the new value.
    Add,
    /// Only in the old value.
    Remove,
    Replace,
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(&mut String::new(), old, new, &mut out);
    out
}

/// Appends `/key` to `path`, escaped as a JSON pointer token.
fn push_token(path: &mut String, key: &str) {
    path.push('/');
    if key.contains(['~', '/']) {
        path.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        path.push_str(key);
    }
}

fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write;
    let _ = write!(path, "/{i}");
}

fn change(path: &str, op: ChangeOp, from: Option<&Value>, to: Option<&Value>) -> Change {
    Change {
        path: path.to_owned(),
        op,
        from: from.cloned(),
        to: to.cloned(),
    }
}

/// Walks `old` and `new` below `path` (restored on return); equal subtrees
/// are skipped without building their paths.
fn walk(path: &mut String, old: &Value, new: &Value, out: &mut Vec<Change>) {
    let len = path.len();
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let vb = b.get(k);
                if vb == Some(va) {
                    continue;
                }
                push_token(path, k);
                match vb {
                    Some(vb) => walk(path, va, vb, out),
                    None => out.push(change(path, ChangeOp::Remove, Some(va), None)),
                }
                path.truncate(len);
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    push_token(path, k);
                    out.push(change(path, ChangeOp::Add, None, Some(vb)));
                    path.truncate(len);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                if va != vb {
                    push_index(path, i);
                    walk(path, va, vb, out);
                    path.truncate(len);
                }
            }
            for (i, va) in a.iter().enumerate().skip(b.len()) {
                push_index(path, i);
                out.push(change(path, ChangeOp::Remove, Some(va), None));
                path.truncate(len);
            }
            for (i, vb) in b.iter().enumerate().skip(a.len()) {
                push_index(path, i);
                out.push(change(path, ChangeOp::Add, None, Some(vb)));
                path.truncate(len);
            }
        }
        _ if old == new => {}
        _ => out.push(change(path, ChangeOp::Replace, Some(old), Some(new))),
    }
}

/// The diff of two optional flags or segments: a missing side diffs as
/// `null`. Their revision numbers (`/version`) are left out: they differ
/// whenever the content was written twice.
pub fn diff_items<T: Serialize>(old: Option<&T>, new: Option<&T>) -> Vec<Change> {
    let to_value = |t: Option<&T>| {
        let mut v = t.map_or(Value::Null, |t| {
            serde_json::to_value(t).unwrap_or(Value::Null)
        });
        if let Value::Object(m) = &mut v {
            m.remove("version");
        }
        v
    };
    diff(&to_value(old), &to_value(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_arrays_and_scalars() {
        let old = json!({"a": 1, "b": [1, 2, 3], "c": {"x/y": true}, "gone": "z"});
        let new = json!({"a": 2, "b": [1, 5], "c": {"x/y": true}, "new": null});
        let d = diff(&old, &new);
        let summary: Vec<(&str, ChangeOp)> = d.iter().map(|c| (c.path.as_str(), c.op)).collect();
        assert_eq!(
            summary,
            [
                ("/a", ChangeOp::Replace),
                ("/b/1", ChangeOp::Replace),
                ("/b/2", ChangeOp::Remove),
                ("/gone", ChangeOp::Remove),
                ("/new", ChangeOp::Add)
            ]
        );
        assert!(diff(&old, &old).is_empty());
        assert_eq!(
            diff(&Value::Null, &json!({"k": 1}))[0].op,
            ChangeOp::Replace
        );
    }
}

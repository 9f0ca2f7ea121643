//! Structural JSON diffs for `?diff=published` and `?diff_from=`.
//!
//! A diff is a list of changes, each located by JSON pointer: `add` (only
//! in the new value), `remove` (only in the old one) or `replace`. Arrays
//! are compared item by item; a longer or shorter array shows the extra
//! items as added or removed.

use serde::Serialize;
use serde_json::Value;

/// One difference between two JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub path: String,
    /// `add`, `remove` or `replace`.
    #[schema(value_type = String)]
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), old, new, &mut out);
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(path: String, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}/{}", escape(k));
                match b.get(k) {
                    Some(vb) => walk(p, va, vb, out),
                    None => out.push(Change {
                        path: p,
                        op: "remove",
                        from: Some(va.clone()),
                        to: None,
                    }),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    out.push(Change {
                        path: format!("{path}/{}", escape(k)),
                        op: "add",
                        from: None,
                        to: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                walk(format!("{path}/{i}"), va, vb, out);
            }
            for (i, va) in a.iter().enumerate().skip(b.len()) {
                out.push(Change {
                    path: format!("{path}/{i}"),
                    op: "remove",
                    from: Some(va.clone()),
                    to: None,
                });
            }
            for (i, vb) in b.iter().enumerate().skip(a.len()) {
                out.push(Change {
                    path: format!("{path}/{i}"),
                    op: "add",
                    from: None,
                    to: Some(vb.clone()),
                });
            }
        }
        _ if old == new => {}
        _ => out.push(Change {
            path,
            op: "replace",
            from: Some(old.clone()),
            to: Some(new.clone()),
        }),
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
        let summary: Vec<(&str, &str)> = d.iter().map(|c| (c.path.as_str(), c.op)).collect();
        assert_eq!(
            summary,
            [
                ("/a", "replace"),
                ("/b/1", "replace"),
                ("/b/2", "remove"),
                ("/gone", "remove"),
                ("/new", "add")
            ]
        );
        assert!(diff(&old, &old).is_empty());
        assert_eq!(diff(&Value::Null, &json!({"k": 1}))[0].op, "replace");
    }
}

//! The evaluation context: a targeting key plus typed attributes.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

/// One attribute value. Lists hold strings; a clause on a list matches when
/// any element matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<String>),
}

/// Who or what a flag is evaluated for.
///
/// JSON form: `{"targeting_key": "user-42", "attributes": {"country": "NL",
/// "age": 31, "beta": true, "groups": ["a", "b"]}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting_key: Option<String>,
    #[serde(default)]
    pub attributes: AHashMap<String, AttrValue>,
}

/// A borrowed view of an attribute, as evaluation sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AttrRef<'a> {
    Bool(bool),
    Number(f64),
    Str(&'a str),
    List(&'a [String]),
}

impl Context {
    /// A context with only a targeting key.
    pub fn new(targeting_key: impl Into<String>) -> Context {
        Context {
            targeting_key: Some(targeting_key.into()),
            attributes: AHashMap::new(),
        }
    }

    /// Adds or replaces an attribute.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<AttrValue>) -> Context {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Context, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[inline]
    pub(crate) fn targeting_key_ref(&self) -> Option<AttrRef<'_>> {
        self.targeting_key.as_deref().map(AttrRef::Str)
    }
}

impl AttrValue {
    #[inline]
    pub(crate) fn as_ref(&self) -> AttrRef<'_> {
        match self {
            AttrValue::Bool(b) => AttrRef::Bool(*b),
            AttrValue::Number(n) => AttrRef::Number(*n),
            AttrValue::String(s) => AttrRef::Str(s),
            AttrValue::List(l) => AttrRef::List(l),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::String(s.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::String(s)
    }
}

impl From<f64> for AttrValue {
    fn from(n: f64) -> Self {
        AttrValue::Number(n)
    }
}

impl From<i64> for AttrValue {
    fn from(n: i64) -> Self {
        AttrValue::Number(n as f64)
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> Self {
        AttrValue::Bool(b)
    }
}

impl From<Vec<String>> for AttrValue {
    fn from(l: Vec<String>) -> Self {
        AttrValue::List(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_form() {
        let c = Context::from_json(
            r#"{"targeting_key":"u1","attributes":{"country":"NL","age":31,"beta":true,"groups":["a","b"]}}"#,
        )
        .unwrap();
        assert_eq!(c.targeting_key.as_deref(), Some("u1"));
        assert_eq!(c.attributes["age"], AttrValue::Number(31.0));
        assert_eq!(c.attributes["beta"], AttrValue::Bool(true));
        assert_eq!(
            c.attributes["groups"],
            AttrValue::List(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn rejects_unsupported_attribute_values() {
        assert!(Context::from_json(r#"{"attributes":{"x":{"nested":1}}}"#).is_err());
        assert!(Context::from_json(r#"{"attributes":{"x":[1,2]}}"#).is_err());
        assert!(Context::from_json(r#"{"attributes":{"x":null}}"#).is_err());
        assert!(Context::from_json("not json").is_err());
    }
}

//! The evaluation context: a targeting key plus typed attributes.
//!
//! All text of a context (the key, attribute names, string values, list
//! items) lives in one buffer, and attributes are found by a linear scan of
//! a small table. Both are stored inline up to [`INLINE_TEXT`] bytes and
//! [`INLINE_ATTRIBUTES`] attributes, so a typical context needs no heap
//! allocation and evaluation reads adjacent cache lines instead of chasing
//! one pointer per attribute. [`Context::clear`] keeps any spilled buffers
//! for reuse.

use core::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use smallstr::SmallString;

use crate::text::{Fingerprint, Key, bytes_eq};

/// Bytes of context text stored inline before spilling to the heap.
pub const INLINE_TEXT: usize = 160;
/// Attributes stored inline before spilling to the heap.
pub const INLINE_ATTRIBUTES: usize = 8;

/// One attribute value, as callers provide it. Lists hold strings; a clause
/// on a list matches when any element matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<String>),
}

/// A borrowed attribute value, as evaluation sees it.
#[derive(Clone, Copy, Debug)]
pub enum AttrRef<'a> {
    Bool(bool),
    Number(f64),
    Str(&'a str),
    List(ListRef<'a>),
}

/// A borrowed list of strings.
#[derive(Clone, Copy, Debug)]
pub struct ListRef<'a> {
    buf: &'a str,
    spans: &'a [Span],
}

impl<'a> ListRef<'a> {
    /// The items in order.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        self.spans.iter().map(move |s| s.of(self.buf))
    }

    /// Number of items.
    pub fn len(self) -> usize {
        self.spans.len()
    }

    /// True when the list has no items.
    pub fn is_empty(self) -> bool {
        self.spans.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    #[inline]
    fn of(self, buf: &str) -> &str {
        buf.get(self.start as usize..(self.start + self.len) as usize)
            .unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Bool(bool),
    Number(f64),
    Str(Span),
    /// Range of `items`.
    List {
        first: u32,
        len: u32,
    },
}

/// An attribute found by evaluation, before its text is read.
#[derive(Clone, Copy)]
pub(crate) struct Found<'a> {
    ctx: &'a Context,
    slot: Slot,
    /// The fingerprint of a string value.
    pub(crate) fp: Fingerprint,
}

impl<'a> Found<'a> {
    /// True for a string value.
    #[inline(always)]
    pub(crate) fn is_str(&self) -> bool {
        matches!(self.slot, Slot::Str(_))
    }

    /// The value.
    #[inline(always)]
    pub(crate) fn value(&self) -> AttrRef<'a> {
        self.ctx.view(self.slot)
    }
}

/// An attribute's value. Names live in separate arrays so that a lookup
/// scans a few adjacent fingerprints and then reads one entry.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    value: Slot,
    /// Fingerprint of a string value, computed once when it is set.
    value_fp: Fingerprint,
}

/// The attribute table: the first [`INLINE_ATTRIBUTES`] attributes inline,
/// the rest in vectors. Names, values and name positions are kept in
/// separate arrays so that a lookup scans adjacent name fingerprints and
/// then reads one value, and the count sits beside them, so a lookup in a
/// small context reads two or three cache lines.
#[derive(Clone)]
#[repr(C)]
struct Attrs {
    len: u32,
    names: [Fingerprint; INLINE_ATTRIBUTES],
    entries: [Entry; INLINE_ATTRIBUTES],
    spans: [Span; INLINE_ATTRIBUTES],
    more_names: Vec<Fingerprint>,
    more_entries: Vec<Entry>,
    more_spans: Vec<Span>,
}

const EMPTY_ENTRY: Entry = Entry {
    value: Slot::Bool(false),
    value_fp: Fingerprint::EMPTY,
};
const EMPTY_SPAN: Span = Span { start: 0, len: 0 };

impl Attrs {
    fn new() -> Attrs {
        Attrs {
            len: 0,
            names: [Fingerprint::EMPTY; INLINE_ATTRIBUTES],
            entries: [EMPTY_ENTRY; INLINE_ATTRIBUTES],
            spans: [EMPTY_SPAN; INLINE_ATTRIBUTES],
            more_names: Vec::new(),
            more_entries: Vec::new(),
            more_spans: Vec::new(),
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len as usize
    }

    fn push(&mut self, name: Fingerprint, entry: Entry, span: Span) {
        let i = self.len();
        if i < INLINE_ATTRIBUTES {
            self.names[i] = name;
            self.entries[i] = entry;
            self.spans[i] = span;
        } else {
            self.more_names.push(name);
            self.more_entries.push(entry);
            self.more_spans.push(span);
        }
        self.len += 1;
    }

    fn clear(&mut self) {
        self.len = 0;
        self.more_names.clear();
        self.more_entries.clear();
        self.more_spans.clear();
    }

    /// Name fingerprints in order.
    #[inline(always)]
    fn names(&self) -> impl Iterator<Item = &Fingerprint> {
        let inline = self.len().min(INLINE_ATTRIBUTES);
        self.names[..inline].iter().chain(self.more_names.iter())
    }

    #[inline(always)]
    fn entry(&self, i: usize) -> Option<&Entry> {
        match i.checked_sub(INLINE_ATTRIBUTES) {
            None => self.entries[..self.len().min(INLINE_ATTRIBUTES)].get(i),
            Some(j) => self.more_entries.get(j),
        }
    }

    fn entry_mut(&mut self, i: usize) -> Option<&mut Entry> {
        let inline = self.len().min(INLINE_ATTRIBUTES);
        match i.checked_sub(INLINE_ATTRIBUTES) {
            None => self.entries[..inline].get_mut(i),
            Some(j) => self.more_entries.get_mut(j),
        }
    }

    #[inline]
    fn span(&self, i: usize) -> Option<Span> {
        match i.checked_sub(INLINE_ATTRIBUTES) {
            None => self.spans[..self.len().min(INLINE_ATTRIBUTES)]
                .get(i)
                .copied(),
            Some(j) => self.more_spans.get(j).copied(),
        }
    }
}

/// Who or what a flag is evaluated for.
///
/// JSON form: `{"targeting_key": "user-42", "attributes": {"country": "NL",
/// "age": 31, "beta": true, "groups": ["a", "b"]}}`.
#[derive(Clone)]
#[repr(C)] // the fields evaluation reads first share the first cache lines
pub struct Context {
    key: Option<Span>,
    key_fp: Fingerprint,
    attrs: Attrs,
    buf: SmallString<[u8; INLINE_TEXT]>,
    items: Vec<Span>,
}

impl Default for Context {
    fn default() -> Context {
        Context {
            buf: SmallString::new(),
            key: None,
            key_fp: Fingerprint::of(b""),
            attrs: Attrs::new(),
            items: Vec::new(),
        }
    }
}

impl Context {
    /// A context with only a targeting key.
    pub fn new(targeting_key: impl AsRef<str>) -> Context {
        let mut c = Context::default();
        c.set_targeting_key(targeting_key.as_ref());
        c
    }

    /// Adds or replaces an attribute (builder style).
    pub fn with(mut self, name: &str, value: impl Into<AttrValue>) -> Context {
        self.set(name, value.into());
        self
    }

    fn push_text(&mut self, text: &str) -> Span {
        let start = self.buf.len() as u32;
        self.buf.push_str(text);
        Span {
            start,
            len: text.len() as u32,
        }
    }

    /// Sets the targeting key.
    pub fn set_targeting_key(&mut self, key: &str) {
        self.key = Some(self.push_text(key));
        self.key_fp = Fingerprint::of(key.as_bytes());
    }

    /// The targeting key.
    #[inline]
    pub fn targeting_key(&self) -> Option<&str> {
        self.key.map(|s| s.of(self.buf.as_str()))
    }

    /// Adds or replaces an attribute.
    pub fn set(&mut self, name: &str, value: AttrValue) {
        let slot = match value {
            AttrValue::Bool(b) => Slot::Bool(b),
            AttrValue::Number(n) => Slot::Number(n),
            AttrValue::String(s) => return self.set_str(name, &s),
            AttrValue::List(items) => {
                let first = self.items.len() as u32;
                for item in &items {
                    let span = self.push_text(item);
                    self.items.push(span);
                }
                Slot::List {
                    first,
                    len: items.len() as u32,
                }
            }
        };
        self.set_slot(name, slot);
    }

    /// Adds or replaces a string attribute without building an [`AttrValue`].
    pub fn set_str(&mut self, name: &str, value: &str) {
        let slot = Slot::Str(self.push_text(value));
        self.put(name, slot, Fingerprint::of(value.as_bytes()));
    }

    fn set_slot(&mut self, name: &str, value: Slot) {
        self.put(name, value, Fingerprint::of(b""));
    }

    fn put(&mut self, name: &str, value: Slot, value_fp: Fingerprint) {
        if let Some(i) = self.position(name) {
            if let Some(e) = self.attrs.entry_mut(i) {
                *e = Entry { value, value_fp };
            }
        } else {
            let fp = Fingerprint::of(name.as_bytes());
            let span = self.push_text(name);
            self.attrs.push(fp, Entry { value, value_fp }, span);
        }
    }

    /// Removes everything, keeping the allocated buffers for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.key = None;
        self.attrs.clear();
        self.items.clear();
    }

    #[inline]
    fn position(&self, name: &str) -> Option<usize> {
        self.position_of(name, &Fingerprint::of(name.as_bytes()))
    }

    #[inline]
    fn position_of(&self, name: &str, fp: &Fingerprint) -> Option<usize> {
        self.find(name, fp).map(|(i, _)| i)
    }

    #[inline(always)]
    fn find(&self, name: &str, fp: &Fingerprint) -> Option<(usize, &Entry)> {
        for (i, n) in self.attrs.names().enumerate() {
            if n == fp {
                let long_name_differs = fp.len > 16
                    && !self.attrs.span(i).is_some_and(|s| {
                        bytes_eq(s.of(self.buf.as_str()).as_bytes(), name.as_bytes())
                    });
                if !long_name_differs {
                    return self.attrs.entry(i).map(|e| (i, e));
                }
            }
        }
        None
    }

    /// An attribute by a compiled name, unresolved: the caller may decide on
    /// the fingerprint of a string value without reading its text.
    #[inline(always)]
    pub(crate) fn lookup(&self, key: &Key) -> Option<Found<'_>> {
        let (_, e) = self.find(&key.text, &key.fp)?;
        Some(Found {
            ctx: self,
            slot: e.value,
            fp: e.value_fp,
        })
    }

    /// The targeting key, unresolved.
    #[inline(always)]
    pub(crate) fn lookup_targeting_key(&self) -> Option<Found<'_>> {
        let span = self.key?;
        Some(Found {
            ctx: self,
            slot: Slot::Str(span),
            fp: self.key_fp,
        })
    }

    /// An attribute by name.
    #[inline]
    pub fn get(&self, name: &str) -> Option<AttrRef<'_>> {
        let i = self.position(name)?;
        Some(self.view(self.attrs.entry(i)?.value))
    }

    #[inline(always)]
    fn view(&self, slot: Slot) -> AttrRef<'_> {
        match slot {
            Slot::Bool(b) => AttrRef::Bool(b),
            Slot::Number(n) => AttrRef::Number(n),
            Slot::Str(s) => AttrRef::Str(s.of(self.buf.as_str())),
            Slot::List { first, len } => AttrRef::List(ListRef {
                buf: self.buf.as_str(),
                spans: self
                    .items
                    .get(first as usize..(first + len) as usize)
                    .unwrap_or(&[]),
            }),
        }
    }

    /// All attributes, in the order they were first set.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, AttrRef<'_>)> {
        (0..self.attrs.len()).filter_map(move |i| {
            let name = self.attrs.span(i)?.of(self.buf.as_str());
            Some((name, self.view(self.attrs.entry(i)?.value)))
        })
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Context, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl PartialEq for AttrRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AttrRef::Bool(a), AttrRef::Bool(b)) => a == b,
            (AttrRef::Number(a), AttrRef::Number(b)) => a == b,
            (AttrRef::Str(a), AttrRef::Str(b)) => a == b,
            (AttrRef::List(a), AttrRef::List(b)) => a.len() == b.len() && a.iter().eq(b.iter()),
            _ => false,
        }
    }
}

/// Equal when the targeting keys and the attribute sets are equal, whatever
/// the order the attributes were set in.
impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.targeting_key() == other.targeting_key()
            && self.attrs.len() == other.attrs.len()
            && self.attributes().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("targeting_key", &self.targeting_key())
            .field("attributes", &Attributes(self))
            .finish()
    }
}

struct Attributes<'a>(&'a Context);

impl fmt::Debug for Attributes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.attributes()).finish()
    }
}

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.attrs.len()))?;
        for (name, value) in self.0.attributes() {
            match value {
                AttrRef::Bool(b) => map.serialize_entry(name, &b)?,
                AttrRef::Number(n) => map.serialize_entry(name, &n)?,
                AttrRef::Str(v) => map.serialize_entry(name, v)?,
                AttrRef::List(l) => map.serialize_entry(name, &l.iter().collect::<Vec<_>>())?,
            }
        }
        map.end()
    }
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(k) = self.targeting_key() {
            map.serialize_entry("targeting_key", k)?;
        }
        map.serialize_entry("attributes", &Attributes(self))?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Context, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            #[serde(default)]
            targeting_key: Option<String>,
            #[serde(default)]
            attributes: WireAttributes,
        }
        #[derive(Default)]
        struct WireAttributes(Vec<(String, AttrValue)>);
        impl<'de> Deserialize<'de> for WireAttributes {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = WireAttributes;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a map of attribute names to strings, numbers, booleans or lists of strings")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut m: A,
                    ) -> Result<WireAttributes, A::Error> {
                        let mut out = Vec::new();
                        while let Some((k, v)) = m.next_entry::<String, AttrValue>()? {
                            out.push((k, v));
                        }
                        Ok(WireAttributes(out))
                    }
                }
                d.deserialize_map(V)
            }
        }
        let wire = Wire::deserialize(d)?;
        let mut c = Context::default();
        if let Some(k) = wire.targeting_key {
            c.set_targeting_key(&k);
        }
        for (k, v) in wire.attributes.0 {
            c.set(&k, v);
        }
        Ok(c)
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
        assert_eq!(c.targeting_key(), Some("u1"));
        assert!(matches!(c.get("country"), Some(AttrRef::Str("NL"))));
        assert!(matches!(c.get("age"), Some(AttrRef::Number(n)) if n == 31.0));
        assert!(matches!(c.get("beta"), Some(AttrRef::Bool(true))));
        let Some(AttrRef::List(l)) = c.get("groups") else {
            panic!()
        };
        assert_eq!(l.iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(c.get("missing").is_none());
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["attributes"]["groups"], serde_json::json!(["a", "b"]));
        assert_eq!(Context::from_json(&back.to_string()).unwrap(), c);
    }

    #[test]
    fn set_replaces_and_clear_keeps_capacity() {
        let mut c = Context::new("k").with("a", "x").with("b", 1i64);
        c.set("a", AttrValue::Bool(false));
        assert!(matches!(c.get("a"), Some(AttrRef::Bool(false))));
        assert_eq!(c.attributes().count(), 2);
        let cap = c.buf.capacity();
        c.clear();
        assert_eq!(c.targeting_key(), None);
        assert!(c.get("b").is_none());
        assert_eq!(c.buf.capacity(), cap);
    }

    #[test]
    fn rejects_unsupported_attribute_values() {
        assert!(Context::from_json(r#"{"attributes":{"x":{"nested":1}}}"#).is_err());
        assert!(Context::from_json(r#"{"attributes":{"x":[1,2]}}"#).is_err());
        assert!(Context::from_json(r#"{"attributes":{"x":null}}"#).is_err());
        assert!(Context::from_json(r#"{"user":"x"}"#).is_err());
        assert!(Context::from_json("not json").is_err());
    }
}

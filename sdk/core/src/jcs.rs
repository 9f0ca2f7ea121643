//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Used for content digests (snapshot and state) and for the text of a
//! numeric bucketing value. Numbers are IEEE 754 doubles written as
//! ECMAScript's `Number.prototype.toString` writes them; object members are
//! sorted by their UTF-16 code units; strings use the minimal JSON escapes.

use core::fmt::{self, Write};

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The canonical text of `value`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            // serde_json numbers are always finite; as_f64 only fails for
            // arbitrary-precision builds, which this crate does not enable.
            let f = n.as_f64().unwrap_or(0.0);
            let _ = write_number(f, out);
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            if needs_sort(map) {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                write_members(members.into_iter(), out);
            } else {
                write_members(map.iter(), out);
            }
            out.push('}');
        }
    }
}

/// False when the map already iterates in canonical order: ascending by
/// UTF-8 bytes (serde_json's default map), with no key holding a character
/// from U+E000 up (a UTF-8 lead byte of 0xEE or more), where UTF-8 and
/// UTF-16 order part.
fn needs_sort(map: &serde_json::Map<String, Value>) -> bool {
    let mut prev: Option<&str> = None;
    for k in map.keys() {
        if k.bytes().any(|b| b >= 0xee) || prev.is_some_and(|p| p >= k.as_str()) {
            return true;
        }
        prev = Some(k);
    }
    false
}

fn write_members<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String) {
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        write_value(v, out);
    }
}

/// Lowercase hex of a SHA-256 digest.
pub fn hex(hash: &[u8]) -> String {
    let mut out = String::with_capacity(hash.len() * 2);
    for b in hash {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

/// Reads lowercase hex (exactly two digits per byte of `out`) into `out`.
pub fn unhex(text: &str, out: &mut [u8]) -> Option<()> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if text.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(())
}

/// SHA-256 (lowercase hex) of the canonical form of the JSON text `text`,
/// leaving out the top-level object's member `skip` (if any), without
/// building a tree: each level is read as borrowed raw slices and
/// canonicalized in turn, and the canonical text is hashed as it is made.
/// The same digest as [`to_canonical_string`] of the parsed value.
pub fn canonical_sha256_of_text(
    text: &str,
    skip: Option<&str>,
) -> Result<String, serde_json::Error> {
    let raw: &RawValue = serde_json::from_str(text)?;
    let mut w = HashWriter {
        hasher: Sha256::new(),
        buf: String::with_capacity(64 * 1024),
    };
    w.raw(raw, skip)?;
    w.flush();
    Ok(hex(&w.hasher.finalize()))
}

struct HashWriter {
    hasher: Sha256,
    buf: String,
}

impl HashWriter {
    fn flush(&mut self) {
        self.hasher.update(self.buf.as_bytes());
        self.buf.clear();
    }

    fn raw(&mut self, raw: &RawValue, skip: Option<&str>) -> Result<(), serde_json::Error> {
        if self.buf.len() >= 48 * 1024 {
            self.flush();
        }
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => {
                // Later duplicates win, as when parsing into a value.
                let map: std::collections::BTreeMap<String, &RawValue> =
                    serde_json::from_str(text)?;
                let mut members: Vec<(&String, &&RawValue)> = map
                    .iter()
                    .filter(|(k, _)| skip != Some(k.as_str()))
                    .collect();
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                self.buf.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        self.buf.push(',');
                    }
                    write_string(k, &mut self.buf);
                    self.buf.push(':');
                    self.raw(v, None)?;
                }
                self.buf.push('}');
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                self.buf.push('[');
                for (i, item) in items.into_iter().enumerate() {
                    if i > 0 {
                        self.buf.push(',');
                    }
                    self.raw(item, None)?;
                }
                self.buf.push(']');
            }
            Some(b'"') => {
                let s: std::borrow::Cow<'_, str> = serde_json::from_str::<Borrowed<'_>>(text)?.0;
                write_string(&s, &mut self.buf);
            }
            Some(b't') => self.buf.push_str("true"),
            Some(b'f') => self.buf.push_str("false"),
            Some(b'n') => self.buf.push_str("null"),
            _ => {
                let n: serde_json::Number = serde_json::from_str(text)?;
                let _ = write_number(n.as_f64().unwrap_or(0.0), &mut self.buf);
            }
        }
        Ok(())
    }
}

/// A string that borrows from the input unless it has escapes.
#[derive(serde::Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Runs of bytes that need no escape are copied at once.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes `f` as ECMAScript's `Number.prototype.toString` does (the JCS
/// number form): `3`, `2.5`, `1e+21`, `1e-7`, `-0` as `0`.
/// Non-finite values have no JSON form and are written as `null`.
pub fn write_number<W: Write>(f: f64, out: &mut W) -> fmt::Result {
    if !f.is_finite() {
        return out.write_str("null");
    }
    if f == 0.0 {
        return out.write_char('0');
    }
    if f < 0.0 {
        out.write_char('-')?;
    }
    // Shortest round-trip digits from the standard library, e.g. "1.2345e-7".
    let mut buf = StackBuf::new();
    write!(buf, "{:e}", f.abs())?;
    let text = buf.as_str();
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = StackBuf::new();
    for b in mantissa.bytes().filter(u8::is_ascii_digit) {
        digits.push(b);
    }
    let digits = digits.as_str();
    let k = digits.len() as i32;
    let n = exp + 1; // position of the decimal point relative to the digits
    if k <= n && n <= 21 {
        out.write_str(digits)?;
        for _ in 0..(n - k) {
            out.write_char('0')?;
        }
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.write_str(int)?;
        out.write_char('.')?;
        out.write_str(frac)?;
    } else if -6 < n && n <= 0 {
        out.write_str("0.")?;
        for _ in 0..(-n) {
            out.write_char('0')?;
        }
        out.write_str(digits)?;
    } else {
        let (first, rest) = digits.split_at(1);
        out.write_str(first)?;
        if !rest.is_empty() {
            out.write_char('.')?;
            out.write_str(rest)?;
        }
        let e = n - 1;
        out.write_char('e')?;
        out.write_char(if e < 0 { '-' } else { '+' })?;
        write!(out, "{}", e.abs())?;
    }
    Ok(())
}

/// A fixed-size text buffer, so number formatting needs no heap.
pub(crate) struct StackBuf {
    bytes: [u8; 64],
    len: usize,
}

impl StackBuf {
    pub(crate) fn new() -> Self {
        StackBuf {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(f: f64) -> String {
        let mut s = String::new();
        write_number(f, &mut s).unwrap();
        s
    }

    #[test]
    fn the_streaming_digest_matches_the_tree_digest() {
        let texts = [
            r#"{"b": [1, 2.50, -0, 1e21, {"z": null, "a": true}], "a": "x\u00e9\n\"y", "digest": "skip me", "\u20ac": 1, "\ud83d\ude00": 2, "a\u0000": 3}"#,
            r#"{"dup": 1, "dup": 2, "n": 18446744073709551615, "m": -9007199254740993, "s": "\u001f"}"#,
            r#"[{"k": {}}, [], "", 0.000001, 1e-7, false]"#,
            r#""plain""#,
        ];
        for text in texts {
            let mut value: Value = serde_json::from_str(text).unwrap();
            if let Value::Object(map) = &mut value {
                map.remove("digest");
            }
            let tree = hex(&Sha256::digest(to_canonical_string(&value).as_bytes()));
            assert_eq!(
                canonical_sha256_of_text(text, Some("digest")).unwrap(),
                tree,
                "{text}"
            );
        }
        assert!(canonical_sha256_of_text("{\"a\": ", None).is_err());
        assert!(canonical_sha256_of_text("[1,]", None).is_err());
    }

    #[test]
    fn numbers_follow_ecmascript() {
        let cases: &[(f64, &str)] = &[
            (3.0, "3"),
            (2.5, "2.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (-0.0, "0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (9007199254740992.0, "9007199254740992"),
            (4.5e-310, "4.5e-310"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (333_333_333.333_333_3, "333333333.3333333"),
            (1e23, "1e+23"),
            (5e-324, "5e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(num(*f), *want, "{f:e}");
        }
    }

    #[test]
    fn canonical_objects_and_strings() {
        let v =
            json!({"b": [1, 2.50, "x"], "a": {"\u{20ac}": 1, "\r": 2, "1": 3}, "c": "\u{1}\"\\/"});
        assert_eq!(
            to_canonical_string(&v),
            r#"{"a":{"\r":2,"1":3,"€":1},"b":[1,2.5,"x"],"c":"\u0001\"\\/"}"#
        );
    }

    #[test]
    fn strings_escape_only_what_they_must() {
        let v = json!(["caf\u{e9}\t\u{7f}\u{1f600}\u{8}\u{c}\n", "", "\u{0}x\u{1f}"]);
        assert_eq!(
            to_canonical_string(&v),
            "[\"caf\u{e9}\\t\u{7f}\u{1f600}\\b\\f\\n\",\"\",\"\\u0000x\\u001f\"]"
        );
    }

    #[test]
    fn keys_sort_by_utf16_units() {
        // U+1F600 (surrogates D83D..) sorts before U+FB01 in UTF-16 order,
        // though after it in UTF-8 byte order.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(to_canonical_string(&v), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }
}

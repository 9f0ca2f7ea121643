//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Used for content digests (snapshot and state) and for the text of a
//! numeric bucketing value. Numbers are IEEE 754 doubles written as
//! ECMAScript's `Number.prototype.toString` writes them; object members are
//! sorted by their UTF-16 code units; strings use the minimal JSON escapes.

use core::fmt::{self, Write};

use serde_json::Value;

/// The canonical text of `value`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
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
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_value(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
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
    fn keys_sort_by_utf16_units() {
        // U+1F600 (surrogates D83D..) sorts before U+FB01 in UTF-16 order,
        // though after it in UTF-8 byte order.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(to_canonical_string(&v), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }
}

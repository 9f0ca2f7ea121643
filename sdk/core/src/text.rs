//! Small-string helpers for the evaluation hot path: a word-at-a-time
//! equality that avoids a `memcmp` call for short keys, an 8-byte "head"
//! used as a cheap pre-filter, and the flag-key index.
//!
//! The hash here only places keys in the index; it is never used for
//! bucketing (see [`crate::bucket`]).

#[inline(always)]
fn load64(s: &[u8], i: usize) -> u64 {
    match s.get(i..i + 8) {
        Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
        None => 0,
    }
}

#[inline(always)]
fn load32(s: &[u8], i: usize) -> u32 {
    match s.get(i..i + 4) {
        Some(w) => u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
        None => 0,
    }
}

/// Byte equality, word at a time for short inputs.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        if n >= 4 {
            return load32(a, 0) == load32(b, 0) && load32(a, n - 4) == load32(b, n - 4);
        }
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    if n > 64 {
        return a == b;
    }
    let mut i = 0;
    while i + 8 < n {
        if load64(a, i) != load64(b, i) {
            return false;
        }
        i += 8;
    }
    load64(a, n - 8) == load64(b, n - 8)
}

/// A cheap summary of a string: its length and its first and last 8 bytes
/// (zero padded). Equal fingerprints of strings up to 16 bytes mean equal
/// strings; longer ones need a byte comparison.
#[derive(Clone, Copy, Debug, Eq)]
pub(crate) struct Fingerprint {
    head: u64,
    tail: u64,
    pub(crate) len: usize,
}

impl PartialEq for Fingerprint {
    /// Length first: it is the cheapest and most selective field.
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.head == other.head && self.tail == other.tail
    }
}

impl Fingerprint {
    /// The fingerprint of "".
    pub(crate) const EMPTY: Fingerprint = Fingerprint {
        head: 0,
        tail: 0,
        len: 0,
    };

    #[inline]
    pub(crate) fn of(s: &[u8]) -> Fingerprint {
        let n = s.len();
        let (head, tail) = if n >= 8 {
            (load64(s, 0), load64(s, n - 8))
        } else {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(s);
            (u64::from_le_bytes(w), 0)
        };
        Fingerprint { head, tail, len: n }
    }

    /// A string of at most 16 bytes as one little-endian integer (byte i
    /// in bits 8i..8i+8, zero above its length) and its length, rebuilt
    /// from the fingerprint alone: hashing it needs no memory access.
    #[inline(always)]
    pub(crate) fn short_word(&self) -> Option<(u128, u32)> {
        if self.len > 16 {
            return None;
        }
        let mut word = u128::from(self.head);
        if self.len > 8 {
            // tail holds bytes len-8..len; bytes 8..len are its last len-8,
            // which a shift brings down.
            word |= u128::from(self.tail >> (8 * (16 - self.len))) << 64;
        }
        Some((word, self.len as u32))
    }

    /// True when the fingerprints decide equality without the bytes.
    #[inline]
    fn complete(&self) -> bool {
        self.len <= 16
    }
}

/// A string with its precomputed fingerprint, for repeated comparisons.
#[derive(Debug)]
pub(crate) struct Key {
    pub(crate) fp: Fingerprint,
    pub(crate) text: Box<str>,
}

impl Key {
    pub(crate) fn new(s: &str) -> Key {
        Key {
            fp: Fingerprint::of(s.as_bytes()),
            text: s.into(),
        }
    }

    /// True when `s`, whose fingerprint is `fp`, equals this key.
    #[inline]
    pub(crate) fn matches(&self, s: &str, fp: &Fingerprint) -> bool {
        self.fp == *fp && (fp.complete() || bytes_eq(self.text.as_bytes(), s.as_bytes()))
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn hash(s: &[u8]) -> u64 {
    let n = s.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n < 8 {
        h = (h ^ Fingerprint::of(s).head).wrapping_mul(K);
    } else {
        let mut i = 0;
        while i + 8 < n {
            h = (h ^ load64(s, i)).wrapping_mul(K).rotate_left(31);
            i += 8;
        }
        h = (h ^ load64(s, n - 8)).wrapping_mul(K);
    }
    h ^ (h >> 32)
}

/// Open-addressing index from flag key to position, at most half full.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    mask: usize,
    /// `(hash >> 32) << 32 | position`, or `EMPTY`.
    slots: Box<[u64]>,
}

const EMPTY: u64 = u64::MAX;

impl KeyIndex {
    /// Indexes `keys`; position i maps to `keys[i]`. Later duplicates are
    /// not indexed (validation rejects them before this is built).
    pub(crate) fn new<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> KeyIndex {
        let cap = (keys.len() * 2).max(8).next_power_of_two();
        let mut idx = KeyIndex {
            mask: cap - 1,
            slots: vec![EMPTY; cap].into(),
        };
        for (pos, k) in keys.enumerate() {
            let h = hash(k.as_bytes());
            let mut i = h as usize & idx.mask;
            while idx.slots[i] != EMPTY {
                i = (i + 1) & idx.mask;
            }
            idx.slots[i] = (h >> 32) << 32 | pos as u64;
        }
        idx
    }

    /// The position of `key`, given the key at each position.
    #[inline]
    pub(crate) fn get<'k>(&self, key: &str, key_at: impl Fn(usize) -> &'k str) -> Option<u32> {
        let h = hash(key.as_bytes());
        let tag = h >> 32;
        let mut i = h as usize & self.mask;
        loop {
            let slot = *self.slots.get(i)?;
            if slot == EMPTY {
                return None;
            }
            if slot >> 32 == tag {
                let pos = (slot & 0xffff_ffff) as usize;
                if bytes_eq(key_at(pos).as_bytes(), key.as_bytes()) {
                    return Some(pos as u32);
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_eq_agrees_with_slices() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "anchor.constrained",
            "anchor.constrainee",
        ];
        for a in words {
            for b in words {
                assert_eq!(bytes_eq(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
        let long_a = "x".repeat(100);
        let mut long_b = long_a.clone();
        assert!(bytes_eq(long_a.as_bytes(), long_b.as_bytes()));
        long_b.replace_range(50..51, "y");
        assert!(!bytes_eq(long_a.as_bytes(), long_b.as_bytes()));
        for n in 8..70 {
            let a = "q".repeat(n);
            let mut b = a.clone();
            b.replace_range(n / 2..n / 2 + 1, "z");
            assert!(!bytes_eq(a.as_bytes(), b.as_bytes()), "{n}");
        }
    }

    #[test]
    fn key_matches() {
        let words = [
            "",
            "x",
            "env",
            "abcdefg",
            "abcdefg\0",
            "abcdefgh",
            "abcdefghi",
            "environment",
            "environmenT",
            "0123456789abcdef",
            "0123456789abcdeF",
            "0123456789abcdefg",
            "0123456789Xbcdefg",
            "a-very-long-attribute-name",
            "a-very-long-Attribute-name",
        ];
        for k in words {
            let key = Key::new(k);
            for s in words {
                assert_eq!(
                    key.matches(s, &Fingerprint::of(s.as_bytes())),
                    k == s,
                    "{k:?} {s:?}"
                );
            }
        }
    }

    #[test]
    fn short_word_rebuilds_the_string() {
        for n in 0..=20 {
            let s: String = (0..n).map(|i| char::from(b'a' + i as u8)).collect();
            let fp = Fingerprint::of(s.as_bytes());
            match fp.short_word() {
                Some((word, len)) => {
                    assert_eq!(len as usize, n);
                    assert_eq!(&word.to_le_bytes()[..n], s.as_bytes(), "{s}");
                    assert!(word.to_le_bytes()[n..].iter().all(|b| *b == 0), "{s}");
                }
                None => assert!(n > 16),
            }
        }
    }

    #[test]
    fn index_finds_every_key() {
        let keys: Vec<String> = (0..1000).map(|i| format!("flag.{i}")).collect();
        let idx = KeyIndex::new(keys.iter().map(String::as_str));
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(k, |p| &keys[p]), Some(i as u32));
        }
        assert_eq!(idx.get("flag.1000", |p| &keys[p]), None);
        assert_eq!(idx.get("", |p| &keys[p]), None);
        let empty: Vec<String> = Vec::new();
        assert_eq!(
            KeyIndex::new(empty.iter().map(String::as_str)).get("a", |p| &empty[p]),
            None
        );
    }
}

//! Rollout bucketing: normative, reproducible in any language.
//!
//! ```text
//! h      = MurmurHash3_x86_32(utf8(seed ++ value), 0)
//! bucket = (h as u64 * total_weight) >> 32
//! serve the first variant (declared order) whose cumulative weight > bucket
//! ```
//! A number is hashed as its RFC 8785 text, a boolean as `true`/`false`.
//! A missing attribute (or a list) cannot be bucketed: the rollout does not match.

use core::fmt::Write;

use crate::compile::{Attr, CRollout};
use crate::context::{AttrRef, Context};
use crate::jcs::{StackBuf, write_number};
use crate::murmur3::Murmur3;

/// The hash of `seed ++ value`.
#[inline]
pub fn bucket_hash(seed: &[u8], value: &[u8]) -> u32 {
    let mut m = Murmur3::new(0);
    m.write(seed);
    m.write(value);
    m.finish()
}

/// The bucket in `0..total` for a hash.
#[inline]
pub fn bucket_of(hash: u32, total: u64) -> u64 {
    (u64::from(hash) * total) >> 32
}

/// The bucket of a string value: `bucket_of(bucket_hash(seed, value), total)`.
pub fn bucket(seed: &str, value: &str, total: u64) -> u64 {
    bucket_of(bucket_hash(seed.as_bytes(), value.as_bytes()), total)
}

/// The text a bucketing value is hashed as, for the value kinds that can be
/// bucketed, written into `buf`. Returns false for lists.
fn bucket_text(v: AttrRef<'_>, buf: &mut StackBuf) -> bool {
    match v {
        AttrRef::Str(_) | AttrRef::List(_) => false,
        AttrRef::Bool(b) => buf.write_str(if b { "true" } else { "false" }).is_ok(),
        AttrRef::Number(n) => write_number(n, buf).is_ok(),
    }
}

/// The variant index a rollout serves for `ctx`, or `None` when the
/// bucketing attribute is missing or is a list.
#[inline]
pub(crate) fn bucket_for(r: &CRollout, ctx: &Context) -> Option<u16> {
    let found = match &r.bucket_by {
        Attr::TargetingKey => ctx.lookup_targeting_key()?,
        Attr::Named(n) => ctx.lookup(n)?,
    };
    let mut m = r.seed;
    // A short string is hashed from its fingerprint's words: its text is
    // not read, nor rebuilt in memory.
    if let Some((word, len)) = found.is_str().then(|| found.fp.short_word()).flatten() {
        m.write_word(word, len);
    } else {
        match found.value() {
            AttrRef::Str(s) => m.write(s.as_bytes()),
            other => {
                let mut buf = StackBuf::new();
                if !bucket_text(other, &mut buf) {
                    return None;
                }
                m.write(buf.as_bytes());
            }
        }
    }
    let h = m.finish();
    let b = bucket_of(h, r.total);
    r.arms.iter().find(|a| a.upto > b).map(|a| a.variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_stays_below_total() {
        for total in [1u64, 2, 100, 100_000, u64::from(u32::MAX)] {
            assert!(bucket_of(u32::MAX, total) < total);
            assert_eq!(bucket_of(0, total), 0);
        }
    }

    #[test]
    fn split_hash_equals_concatenation() {
        assert_eq!(
            bucket_hash(b"flag", b"user-1"),
            crate::murmur3::murmur3_x86_32(b"flaguser-1", 0)
        );
    }
}

//! Size limits enforced at write time and when loading a snapshot.
//! docs/flags.md, "Limits", lists the same numbers.

/// Longest key (environment, flag, segment, variant).
pub const MAX_KEY_LEN: usize = 128;
/// Longest environment name.
pub const MAX_NAME_LEN: usize = 256;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_LEN: usize = 256;
/// Variants per flag.
pub const MAX_VARIANTS: usize = 100;
/// Rules per flag.
pub const MAX_RULES: usize = 500;
/// Clauses per rule or segment.
pub const MAX_CLAUSES: usize = 50;
/// Values per clause.
pub const MAX_VALUES: usize = 10_000;
/// Longest string clause value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest regular expression, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled size limit of one regular expression, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Prerequisites per flag.
pub const MAX_PREREQUISITES: usize = 20;
/// Longest chain of prerequisites (a flag with a prerequisite is depth 1).
pub const MAX_PREREQUISITE_DEPTH: usize = 10;
/// Prerequisite evaluations one flag may cause, repeats included.
pub const MAX_PREREQUISITE_EVALUATIONS: u64 = 100;
/// Arms per rollout.
pub const MAX_ROLLOUT_ARMS: usize = 100;
/// Largest total weight of a rollout (the bucket arithmetic needs < 2^32).
pub const MAX_TOTAL_WEIGHT: u64 = u32::MAX as u64;
/// `included` plus `excluded` keys per segment.
pub const MAX_SEGMENT_KEYS: usize = 100_000;
/// Deepest nesting of arrays and objects in a variant's value. Stored
/// state, snapshots and audit entries hold a value several levels down, and
/// JSON readers refuse documents nested more than 128 deep.
pub const MAX_VALUE_DEPTH: usize = 32;
/// Largest flag, as compact JSON, in bytes.
pub const MAX_FLAG_BYTES: usize = 512 * 1024;
/// Largest segment, as compact JSON, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 4 * 1024 * 1024;
/// Flags per environment.
pub const MAX_FLAGS: usize = 10_000;
/// Segments per environment.
pub const MAX_SEGMENTS: usize = 1_000;
/// Largest magnitude of an integer in a value or clause (exact in a double).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Longest publish or rollback message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Longest idempotency key or author, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;

/// Checks key syntax: 1 to 128 of `[A-Za-z0-9._-]`, starting with a letter or
/// digit. Returns the problem, if any.
pub fn check_key(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Some(format!("longer than {MAX_KEY_LEN} bytes"));
    }
    let mut bytes = key.bytes();
    if !bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) {
        return Some("must start with a letter or digit".into());
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Some("may only contain letters, digits, '.', '_' and '-'".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_syntax() {
        for ok in ["a", "new-checkout", "anchor.rollout-50", "A_1", "9lives"] {
            assert_eq!(check_key(ok), None, "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(check_key(bad).is_some(), "{bad}");
        }
        assert_eq!(check_key(&"x".repeat(128)), None);
    }
}

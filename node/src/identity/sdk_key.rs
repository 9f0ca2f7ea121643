//! SDK keys: `ppk_<id>_<secret>`, where the id (16 hex digits) names the
//! key in the replicated state and the secret (64 hex digits) is known only
//! to whoever was shown the key. The node stores the SHA-256 of the whole
//! key and compares hashes in constant time.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub const PREFIX: &str = "ppk_";

/// A new key: its id, the key itself (shown once), and its hash.
pub struct NewKey {
    pub id: String,
    pub key: Secret,
    pub hash: String,
}

/// SHA-256 of the whole key, lowercase hex (what the state stores).
pub fn hash(key: &str) -> String {
    pulseplane_core::jcs::hex(&Sha256::digest(key.as_bytes()))
}

pub fn generate() -> NewKey {
    let secret = Secret::generate();
    let id = Secret::generate().expose()[..16].to_owned();
    let key = format!("{PREFIX}{id}_{}", secret.expose());
    NewKey {
        id,
        hash: hash(&key),
        key: Secret::new(&key).unwrap_or(secret),
    }
}

/// The id of a token shaped like an SDK key.
pub fn id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some(id)
}

/// Whether `token` hashes to `stored`, in time independent of where they
/// differ.
pub fn matches(token: &str, stored: &str) -> bool {
    let presented = hash(token);
    presented.len() == stored.len()
        && presented
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_id_and_match_only_their_hash() {
        let k = generate();
        let text = k.key.expose();
        assert!(text.starts_with(PREFIX));
        assert_eq!(id_of(text), Some(k.id.as_str()));
        assert!(matches(text, &k.hash));
        let mut other = text.to_owned();
        other.pop();
        other.push('x');
        assert!(!matches(&other, &k.hash));
        assert_eq!(id_of("ppk_short_x"), None);
        assert_eq!(id_of("Bearer"), None);
        assert_ne!(generate().id, k.id);
    }
}

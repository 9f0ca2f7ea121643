//! Secrets (cluster secret, tokens): redacted in logs, compared in constant
//! time, generated from the operating system's random source.

use std::fmt;

use sha2::{Digest, Sha256};

/// A non-empty secret string, with its SHA-256 kept for comparisons.
#[derive(Clone)]
pub struct Secret(String, [u8; 32]);

impl Secret {
    /// `None` when `text` is empty.
    pub fn new(text: &str) -> Option<Secret> {
        (!text.is_empty()).then(|| Secret(text.to_owned(), Sha256::digest(text.as_bytes()).into()))
    }

    /// 32 random bytes as 64 hex digits.
    pub fn generate() -> Secret {
        let mut bytes = [0u8; 32];
        if getrandom::fill(&mut bytes).is_err() {
            // No OS randomness is not something a node can run without.
            let mut fallback = [0u8; 32];
            for b in fallback.iter_mut() {
                *b = fastrand::u8(..);
            }
            bytes = fallback;
        }
        let text = hex(&bytes);
        let digest = Sha256::digest(text.as_bytes()).into();
        Secret(text, digest)
    }

    /// The secret itself, for sending to a peer or writing to a file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the secret, in time independent of where
    /// they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let b = Sha256::digest(candidate);
        self.1
            .iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// A short public fingerprint (not reversible), to recognise a cluster
    /// without storing its secret.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("pulseplane-cluster:{}", self.0).as_bytes());
        hex(&digest[..8])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_itself() {
        let s = Secret::new("abc").unwrap();
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b""));
        assert!(Secret::new("").is_none());
        assert_ne!(Secret::generate().expose(), Secret::generate().expose());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}

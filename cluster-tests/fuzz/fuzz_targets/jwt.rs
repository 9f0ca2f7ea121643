//! The JWT path: a bearer token as the node verifies it. With the first
//! byte even, the rest is the token as sent. With it odd, the rest is a
//! claims document that is signed with the node's HS256 key first, so the
//! fuzzer reaches the claim checks (expiry, not-before, issuer, audience,
//! subject, the dotted groups claim) past the signature. Nothing may
//! panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use pulseplane_node::identity::jwt::{JwtFlags, JwtVerifier};

const SECRET: &str = "fuzz-hs256-secret-that-is-long-enough-0123456789";

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pulseplane-fuzz-jwt-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("hs256");
        std::fs::write(&file, SECRET).expect("write the key file");
        let flags = JwtFlags {
            hs256_secret_file: Some(file),
            public_key_files: Vec::new(),
            jwks_file: None,
            issuer: Some("https://issuer.example".into()),
            audience: Some("pulseplane".into()),
            groups_claim: "realm.groups".into(),
            leeway: Duration::from_secs(30),
        };
        JwtVerifier::from_flags(&flags)
            .expect("valid flags")
            .expect("a key is configured")
    })
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let v = verifier();
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            let _ = JwtVerifier::looks_like_jwt(token);
            let _ = v.verify(token);
        }
        return;
    }
    let signing = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(rest));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    if let Ok(sig) = jsonwebtoken::crypto::sign(signing.as_bytes(), &key, Algorithm::HS256) {
        let _ = v.verify(&format!("{signing}.{sig}"));
    }
});

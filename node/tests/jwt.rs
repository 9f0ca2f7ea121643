//! JWT verification: accepted tokens from each key source, and each kind of
//! rejected token in its own test.
//!
//! The RSA key pair and JWKS under `tests/fixtures/` exist only for these
//! tests; the EC key is made by the test.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pulseplane_node::identity::AuthFailure;
use pulseplane_node::identity::jwt::{Claims, JwtFlags, JwtVerifier};
use serde_json::{Value, json};

const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";

fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    PathBuf::from(dir).join("tests/fixtures").join(name)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600, "iss": "https://idp.test", "aud": "pulseplane",
           "groups": ["ops", "dev"]})
}

struct Keys {
    _dir: tempfile::TempDir,
    hs_file: PathBuf,
    ec_private_pem: String,
    ec_public_file: PathBuf,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let hs_file = dir.path().join("hs256");
    std::fs::write(&hs_file, format!("{HS_SECRET}\n")).unwrap();
    let ec = rcgen::KeyPair::generate().unwrap();
    let ec_public_file = dir.path().join("ec.pem");
    std::fs::write(&ec_public_file, ec.public_key_pem()).unwrap();
    Keys {
        ec_private_pem: ec.serialize_pem(),
        hs_file,
        ec_public_file,
        _dir: dir,
    }
}

fn flags() -> JwtFlags {
    JwtFlags {
        groups_claim: "groups".into(),
        leeway: Duration::from_secs(30),
        ..JwtFlags::default()
    }
}

fn verifier(f: JwtFlags) -> JwtVerifier {
    JwtVerifier::from_flags(&f).unwrap().unwrap()
}

fn hs_verifier(k: &Keys) -> JwtVerifier {
    verifier(JwtFlags {
        hs256_secret_file: Some(k.hs_file.clone()),
        issuer: Some("https://idp.test".into()),
        audience: Some("pulseplane".into()),
        ..flags()
    })
}

fn rs_verifier() -> JwtVerifier {
    verifier(JwtFlags {
        public_key_files: vec![fixture("jwt-rs256-public.pem")],
        ..flags()
    })
}

fn hs(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn rs(claims: &Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture("jwt-rs256-private.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn valid_tokens_from_each_key_source_are_accepted() {
    let k = keys();
    let want = Claims {
        subject: "alice".into(),
        groups: vec!["ops".into(), "dev".into()],
    };
    assert_eq!(
        hs_verifier(&k).verify(&hs(&claims(), HS_SECRET)),
        Ok(want.clone())
    );
    assert_eq!(rs_verifier().verify(&rs(&claims(), None)), Ok(want.clone()));

    let es = verifier(JwtFlags {
        public_key_files: vec![k.ec_public_file.clone()],
        ..flags()
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(k.ec_private_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(es.verify(&token), Ok(want.clone()));

    let jwks = verifier(JwtFlags {
        jwks_file: Some(fixture("jwt-rs256-jwks.json")),
        groups_claim: "realm_access.roles".into(),
        ..flags()
    });
    let nested = json!({"sub": "bob", "exp": now() + 60,
                        "realm_access": {"roles": ["publishers"]}});
    assert_eq!(
        jwks.verify(&rs(&nested, Some("test-rsa"))),
        Ok(Claims {
            subject: "bob".into(),
            groups: vec!["publishers".into()]
        })
    );
}

#[test]
fn an_expired_token_is_rejected() {
    let k = keys();
    let mut c = claims();
    // Past the 30 s leeway.
    c["exp"] = json!(now() - 120);
    assert_eq!(
        hs_verifier(&k).verify(&hs(&c, HS_SECRET)),
        Err(AuthFailure::Expired)
    );
    // Within the leeway it still passes.
    c["exp"] = json!(now() - 5);
    assert!(hs_verifier(&k).verify(&hs(&c, HS_SECRET)).is_ok());
}

#[test]
fn a_token_not_yet_valid_is_rejected() {
    let k = keys();
    let mut c = claims();
    c["nbf"] = json!(now() + 300);
    assert_eq!(
        hs_verifier(&k).verify(&hs(&c, HS_SECRET)),
        Err(AuthFailure::NotYetValid)
    );
}

#[test]
fn a_wrong_signature_is_rejected() {
    let k = keys();
    let forged = hs(&claims(), "another-secret-another-secret-another");
    assert_eq!(
        hs_verifier(&k).verify(&forged),
        Err(AuthFailure::BadSignature)
    );
    // A changed payload under the original signature.
    let good = hs(&claims(), HS_SECRET);
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("mallory");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64url(c.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        hs_verifier(&k).verify(&tampered),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn a_wrong_issuer_is_rejected() {
    let k = keys();
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        hs_verifier(&k).verify(&hs(&c, HS_SECRET)),
        Err(AuthFailure::WrongIssuer)
    );
    // Required when configured.
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        hs_verifier(&k).verify(&hs(&c, HS_SECRET)),
        Err(AuthFailure::MissingClaim)
    );
}

#[test]
fn a_wrong_audience_is_rejected() {
    let k = keys();
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(
        hs_verifier(&k).verify(&hs(&c, HS_SECRET)),
        Err(AuthFailure::WrongAudience)
    );
}

#[test]
fn alg_none_is_rejected() {
    let k = keys();
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = base64url(claims().to_string().as_bytes());
    for token in [format!("{header}.{body}."), format!("{header}.{body}.xyz")] {
        assert_eq!(hs_verifier(&k).verify(&token), Err(AuthFailure::Algorithm));
        assert_eq!(rs_verifier().verify(&token), Err(AuthFailure::Algorithm));
    }
}

#[test]
fn hs_rs_key_confusion_is_rejected() {
    let k = keys();
    // An HS256 token "signed" with the RSA public key as the HMAC secret.
    let public = std::fs::read_to_string(fixture("jwt-rs256-public.pem")).unwrap();
    let confused = hs(&claims(), &public);
    // A node with only RSA keys allows no HS256 at all.
    assert_eq!(rs_verifier().verify(&confused), Err(AuthFailure::Algorithm));
    // A node with both checks HS256 only against its HS256 secret.
    let both = verifier(JwtFlags {
        hs256_secret_file: Some(k.hs_file.clone()),
        public_key_files: vec![fixture("jwt-rs256-public.pem")],
        ..flags()
    });
    assert_eq!(both.verify(&confused), Err(AuthFailure::BadSignature));
    // And an RS256 token is not checked against the HS256 secret.
    let hs_only = verifier(JwtFlags {
        hs256_secret_file: Some(k.hs_file.clone()),
        ..flags()
    });
    assert_eq!(
        hs_only.verify(&rs(&claims(), None)),
        Err(AuthFailure::Algorithm)
    );
}

#[test]
fn an_unknown_key_id_is_rejected() {
    let jwks = verifier(JwtFlags {
        jwks_file: Some(fixture("jwt-rs256-jwks.json")),
        ..flags()
    });
    assert_eq!(
        jwks.verify(&rs(&claims(), Some("rotated-away"))),
        Err(AuthFailure::UnknownKey)
    );
}

#[test]
fn a_token_without_a_usable_subject_is_rejected() {
    let k = keys();
    let v = hs_verifier(&k);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(v.verify(&hs(&c, HS_SECRET)), Err(AuthFailure::MissingClaim));
    // A subject may not pose as a group binding.
    c["sub"] = json!("group:admins");
    assert_eq!(v.verify(&hs(&c, HS_SECRET)), Err(AuthFailure::MissingClaim));
    // exp is required.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(v.verify(&hs(&c, HS_SECRET)), Err(AuthFailure::MissingClaim));
    assert_eq!(v.verify("not.a.jwt"), Err(AuthFailure::Malformed));
}

#[test]
fn bad_key_settings_are_refused_naming_the_flag() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too-short").unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let cases = [
        (
            JwtFlags {
                hs256_secret_file: Some(short),
                ..flags()
            },
            "--jwt-hs256-secret-file",
        ),
        (
            JwtFlags {
                public_key_files: vec![not_pem],
                ..flags()
            },
            "--jwt-public-key-file",
        ),
        (
            JwtFlags {
                jwks_file: Some(dir.path().join("missing.json")),
                ..flags()
            },
            "--jwks-file",
        ),
        (
            JwtFlags {
                hs256_secret_file: Some(k.hs_file.clone()),
                leeway: Duration::from_secs(3600),
                ..flags()
            },
            "--jwt-leeway",
        ),
        (
            JwtFlags {
                issuer: Some("x".into()),
                ..flags()
            },
            "--jwt-issuer",
        ),
    ];
    for (f, flag) in cases {
        let e = JwtVerifier::from_flags(&f).unwrap_err().to_string();
        assert!(e.starts_with(flag), "{e}");
    }
    assert!(JwtVerifier::from_flags(&flags()).unwrap().is_none());
}

//! JWT bearer tokens from an external identity provider, verified against
//! configured keys: an HS256 secret, RS256 or ES256 public keys from PEM
//! files, or a JWKS file.
//!
//! The token's `alg` must be one the configured keys allow (never `none`):
//! an HS256 token is checked only against the HS256 secret and an RS256 or
//! ES256 token only against public keys of that type, so a token signed
//! with a public key as an HMAC secret is refused. `exp` is required, `nbf`
//! is checked when present, both with a bounded leeway; `iss` and `aud`
//! are checked when configured. The subject is `sub`; groups come from a
//! configurable claim (a dotted path such as `realm_access.roles`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::ConfigError;
use crate::identity::AuthFailure;

/// The largest leeway allowed for `exp` and `nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The JWT flags, before their files are read.
#[derive(Debug, Clone, Default)]
pub struct JwtFlags {
    pub hs256_secret_file: Option<PathBuf>,
    pub public_key_files: Vec<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub groups_claim: String,
    pub leeway: Duration,
}

/// One verification key.
#[derive(Clone)]
struct Key {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies tokens; built once from the flags.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    groups_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("groups_claim", &self.groups_claim)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// A verified token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub groups: Vec<String>,
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

fn invalid(flag: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { flag, problem }
}

/// The keys in a PEM file: an RSA public key (RS256) or an EC P-256 one
/// (ES256).
fn pem_key(path: &Path) -> Result<Key, ConfigError> {
    const FLAG: &str = "--jwt-public-key-file";
    let pem = read(FLAG, path)?;
    let (alg, key) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        (Algorithm::RS256, k)
    } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        (Algorithm::ES256, k)
    } else {
        return Err(invalid(
            FLAG,
            format!(
                "{} is not a PEM RSA or EC (P-256) public key",
                path.display()
            ),
        ));
    };
    Ok(Key {
        alg,
        kid: None,
        key,
    })
}

/// The RS256 and ES256 keys of a JWKS file; other keys are skipped.
fn jwks_keys(path: &Path) -> Result<Vec<Key>, ConfigError> {
    const FLAG: &str = "--jwks-file";
    let text = read(FLAG, path)?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| {
        invalid(
            FLAG,
            format!("{} is not a JWKS document: {e}", path.display()),
        )
    })?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            invalid(
                FLAG,
                format!("key {i} of {} is not usable: {e}", path.display()),
            )
        })?;
        keys.push(Key {
            alg,
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(invalid(
            FLAG,
            format!("{} holds no RS256 or ES256 key", path.display()),
        ));
    }
    Ok(keys)
}

impl JwtVerifier {
    /// `None` when no key is configured.
    pub fn from_flags(flags: &JwtFlags) -> Result<Option<JwtVerifier>, ConfigError> {
        let mut keys = Vec::new();
        if let Some(path) = &flags.hs256_secret_file {
            let text = read("--jwt-hs256-secret-file", path)?;
            let secret = String::from_utf8_lossy(&text).trim().to_owned();
            if secret.len() < 32 {
                return Err(invalid(
                    "--jwt-hs256-secret-file",
                    format!("{} holds fewer than 32 bytes", path.display()),
                ));
            }
            keys.push(Key {
                alg: Algorithm::HS256,
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        for path in &flags.public_key_files {
            keys.push(pem_key(path)?);
        }
        if let Some(path) = &flags.jwks_file {
            keys.extend(jwks_keys(path)?);
        }
        if keys.is_empty() {
            for (flag, given) in [
                ("--jwt-issuer", flags.issuer.is_some()),
                ("--jwt-audience", flags.audience.is_some()),
            ] {
                if given {
                    return Err(invalid(
                        flag,
                        "needs a key: --jwt-hs256-secret-file, --jwt-public-key-file or --jwks-file"
                            .into(),
                    ));
                }
            }
            return Ok(None);
        }
        if flags.leeway > MAX_LEEWAY {
            return Err(invalid(
                "--jwt-leeway",
                format!("must be at most {}s", MAX_LEEWAY.as_secs()),
            ));
        }
        let claim = flags.groups_claim.trim();
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            return Err(invalid(
                "--jwt-groups-claim",
                format!("{claim:?} is not a claim name or dotted path"),
            ));
        }
        Ok(Some(JwtVerifier {
            keys,
            issuer: flags.issuer.clone().filter(|s| !s.is_empty()),
            audience: flags.audience.clone().filter(|s| !s.is_empty()),
            groups_claim: claim.to_owned(),
            leeway: flags.leeway,
        }))
    }

    /// Whether `token` looks like a JWT (three dot-separated parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// Verifies `token` and returns its identity.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // An algorithm the library does not know, `none` among them.
            ErrorKind::Json(e) if e.to_string().contains("unknown variant") => {
                AuthFailure::Algorithm
            }
            _ => AuthFailure::Malformed,
        })?;
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(if self.keys.iter().any(|k| k.alg == header.alg) {
                AuthFailure::UnknownKey
            } else {
                AuthFailure::Algorithm
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let mut failure = AuthFailure::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return self.claims(&data.claims),
                Err(e) => {
                    failure = match e.kind() {
                        ErrorKind::InvalidSignature => AuthFailure::BadSignature,
                        ErrorKind::ExpiredSignature => AuthFailure::Expired,
                        ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
                        ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
                        ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
                        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                            AuthFailure::Algorithm
                        }
                        ErrorKind::MissingRequiredClaim(_) => AuthFailure::MissingClaim,
                        _ => AuthFailure::Malformed,
                    };
                    // Claims are checked only once the signature holds, so
                    // any other failure is final.
                    if failure != AuthFailure::BadSignature {
                        return Err(failure);
                    }
                }
            }
        }
        Err(failure)
    }

    fn claims(&self, claims: &Value) -> Result<Claims, AuthFailure> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| pulseplane_core::access::check_subject(s).is_none())
            .filter(|s| !s.starts_with(pulseplane_core::access::GROUP_PREFIX))
            .ok_or(AuthFailure::MissingClaim)?;
        let mut node = Some(claims);
        for part in self.groups_claim.split('.') {
            node = node.and_then(|v| v.get(part));
        }
        let groups = match node {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Claims {
            subject: subject.to_owned(),
            groups,
        })
    }
}

//! Who is calling. Identity comes from outside Pulseplane:
//! - `jwt`: bearer JWTs from an identity provider, verified against
//!   configured keys;
//! - `proxy`: a subject header set by a trusted authenticating proxy,
//!   believed only from configured source networks;
//! - the bootstrap admin token, which holds every permission;
//! - `sdk_key`: read-only keys for one environment's snapshot and export.
//!
//! What a known caller may do is decided by the roles bound to it (see
//! `pulseplane_core::access` and `crate::api::access`).

pub mod jwt;
pub mod proxy;
pub mod sdk_key;

use std::net::IpAddr;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use pulseplane_core::access::{AccessState, Permission, Role, SdkKey};

use crate::secret::Secret;
use jwt::JwtVerifier;
use proxy::TrustedProxy;

/// Where a user's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Jwt,
    Proxy,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The bootstrap admin token: every permission.
    Admin,
    User {
        subject: String,
        groups: Vec<String>,
        source: Source,
    },
    /// An SDK key: `snapshot.read` and `export.read` in its environment.
    SdkKey { id: String, env: String },
}

impl Principal {
    /// The subject recorded as the author of writes and in the audit log.
    pub fn subject(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::User { subject, .. } => subject.clone(),
            Principal::SdkKey { id, .. } => format!("sdk_key:{id}"),
        }
    }
}

/// Why a request was not authenticated (401). The reasons label the
/// failure metric and log line; the token itself is never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential.
    Missing,
    /// Not a bearer token of any known shape, or a JWT that does not parse.
    Malformed,
    Expired,
    NotYetValid,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    /// An algorithm no configured key allows (`none` among them).
    Algorithm,
    /// A JWT `kid` no configured key has.
    UnknownKey,
    /// No usable `sub`, or a required claim missing.
    MissingClaim,
    /// A bearer token that is neither the admin token nor a known key.
    UnknownToken,
    Revoked,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::MissingClaim => "missing_claim",
            AuthFailure::UnknownToken => "unknown_token",
            AuthFailure::Revoked => "revoked",
        }
    }

    pub const ALL: [AuthFailure; 12] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::BadSignature,
        AuthFailure::WrongIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::Algorithm,
        AuthFailure::UnknownKey,
        AuthFailure::MissingClaim,
        AuthFailure::UnknownToken,
        AuthFailure::Revoked,
    ];

    /// What the 401 answer says.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "no credential: send Authorization: Bearer <token> (a JWT, an SDK key or the admin token)"
            }
            AuthFailure::Malformed => "the bearer token is malformed",
            AuthFailure::Expired => "the token has expired",
            AuthFailure::NotYetValid => "the token is not valid yet (nbf)",
            AuthFailure::BadSignature => "the token's signature does not verify",
            AuthFailure::WrongIssuer => "the token's issuer (iss) is not the configured one",
            AuthFailure::WrongAudience => "the token's audience (aud) is not the configured one",
            AuthFailure::Algorithm => "the token's algorithm is not allowed",
            AuthFailure::UnknownKey => "the token's key id (kid) is not a configured key",
            AuthFailure::MissingClaim => "the token lacks a usable sub or a required claim",
            AuthFailure::UnknownToken => "the bearer token is not valid",
            AuthFailure::Revoked => "the SDK key has been revoked",
        }
    }
}

/// Turns request credentials into a [`Principal`].
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub admin_token: Secret,
    pub jwt: Option<JwtVerifier>,
    pub proxy: Option<TrustedProxy>,
}

impl Authenticator {
    /// `peer` is the connection's source address; `sdk_key` looks a key up
    /// by id in the replicated state.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        sdk_key: impl FnOnce(&str) -> Option<SdkKey>,
    ) -> Result<Principal, AuthFailure> {
        if let Some(proxy) = &self.proxy
            && let Some(user) = proxy_user(proxy, headers, peer)
        {
            return Ok(user);
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(AuthFailure::Missing);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Malformed)?;
        // SDK keys (the most frequent callers) first; the shape is
        // `ppk_<16 hex>_<64 hex>`.
        if let Some(id) = sdk_key::id_of(token) {
            let key = sdk_key(id).ok_or(AuthFailure::UnknownToken)?;
            if !sdk_key::matches(token, &key.hash) {
                return Err(AuthFailure::UnknownToken);
            }
            if key.revoked_at_ms.is_some() {
                return Err(AuthFailure::Revoked);
            }
            return Ok(Principal::SdkKey {
                id: key.id,
                env: key.env,
            });
        }
        if self.admin_token.matches(token.as_bytes()) {
            return Ok(Principal::Admin);
        }
        if JwtVerifier::looks_like_jwt(token) {
            let Some(jwt) = &self.jwt else {
                return Err(AuthFailure::UnknownToken);
            };
            let claims = jwt.verify(token)?;
            return Ok(Principal::User {
                subject: claims.subject,
                groups: claims.groups,
                source: Source::Jwt,
            });
        }
        Err(AuthFailure::UnknownToken)
    }
}

/// The user a trusted proxy names, when the connection comes from one of
/// its networks and the header holds a usable subject.
fn proxy_user(
    proxy: &TrustedProxy,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<Principal> {
    let subject = headers.get(&proxy.subject_header)?.to_str().ok()?.trim();
    if !peer.is_some_and(|p| proxy.trusts(p)) {
        tracing::warn!(
            target: "pulseplane::audit",
            peer = ?peer,
            header = %proxy.subject_header,
            "trusted-proxy header from an address outside --trusted-proxy-cidr ignored"
        );
        return None;
    }
    if pulseplane_core::access::check_subject(subject).is_some()
        || subject.starts_with(pulseplane_core::access::GROUP_PREFIX)
    {
        return None;
    }
    let groups = proxy
        .groups_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some(Principal::User {
        subject: subject.to_owned(),
        groups,
        source: Source::Proxy,
    })
}

/// A caller with the roles that applied when the request arrived.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub roles: Vec<Role>,
}

impl Caller {
    /// Resolves the roles bound to the principal's subject and groups.
    pub fn resolve(principal: Principal, access: &AccessState) -> Caller {
        let roles = match &principal {
            Principal::User {
                subject, groups, ..
            } => access
                .roles_of(subject, groups)
                .into_iter()
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        Caller { principal, roles }
    }

    /// Whether the caller holds `permission` in `env` (`None`:
    /// cluster-wide).
    pub fn allows(&self, permission: Permission, env: Option<&str>) -> bool {
        match &self.principal {
            Principal::Admin => true,
            Principal::SdkKey { env: own, .. } => {
                matches!(
                    permission,
                    Permission::SnapshotRead | Permission::ExportRead
                ) && env == Some(own.as_str())
            }
            Principal::User { .. } => self.roles.iter().any(|r| r.grants(permission, env)),
        }
    }

    /// Whether the caller holds `permission` anywhere.
    pub fn holds_anywhere(&self, permission: Permission) -> bool {
        match &self.principal {
            Principal::Admin => true,
            Principal::SdkKey { .. } => matches!(
                permission,
                Permission::SnapshotRead | Permission::ExportRead
            ),
            Principal::User { .. } => self
                .roles
                .iter()
                .any(|r| r.permissions.contains(&permission)),
        }
    }
}

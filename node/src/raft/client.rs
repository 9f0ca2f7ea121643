//! The pooled HTTP client nodes use to talk to each other: MessagePack
//! bodies, the cluster secret in a header, and the id of the node the
//! caller believes it is talking to, so a misaddressed request is refused.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::secret::Secret;
use crate::tls::TlsSettings;

/// Header carrying the cluster secret.
pub const SECRET_HEADER: &str = "x-pulseplane-cluster-secret";
/// Header carrying the id of the node a peer request is meant for.
pub const TARGET_HEADER: &str = "x-pulseplane-target-node";
/// Content type of peer bodies.
pub const MSGPACK: &str = "application/msgpack";

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Could not connect, or the connection broke: back off and retry.
    #[error("peer {address} unreachable: {source}")]
    Unreachable {
        address: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("peer {address} timed out")]
    Timeout { address: String },
    /// The peer answered with an error status.
    #[error("peer {address} refused the request: {status} {body}")]
    Refused {
        address: String,
        status: u16,
        body: String,
    },
    #[error("peer {address} sent an undecodable body: {problem}")]
    Decode { address: String, problem: String },
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

/// A clone-cheap pooled client.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    secret: Secret,
    /// `http` or, with TLS, `https`.
    scheme: &'static str,
}

impl PeerClient {
    /// With `tls`, peers are called over HTTPS and must present a
    /// certificate for their address that chains to its CAs.
    /// With `source_ip`, every call is made from that local address.
    pub fn new(
        secret: Secret,
        tls: Option<&TlsSettings>,
        source_ip: Option<std::net::IpAddr>,
    ) -> Result<PeerClient, String> {
        let mut builder = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .local_address(source_ip);
        if let Some(tls) = tls {
            let roots = reqwest::Certificate::from_pem_bundle(&tls.ca_pem)
                .map_err(|e| format!("the peer CA certificates: {e}"))?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
            builder = builder.https_only(true);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the peer client: {e}"))?;
        Ok(PeerClient {
            http,
            secret,
            scheme: if tls.is_some() { "https" } else { "http" },
        })
    }

    /// POSTs `body` to `{scheme}://{address}{path}` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        address: &str,
        target: u64,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let bytes = encode(body)?;
        self.call_encoded(address, target, path, bytes, timeout)
            .await
    }

    /// [`call`](Self::call) with a body already encoded by [`encode`], so
    /// that one encoding serves several peers.
    pub async fn call_encoded<Resp: DeserializeOwned>(
        &self,
        address: &str,
        target: u64,
        path: &str,
        bytes: bytes::Bytes,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let mut request = self
            .http
            .post(format!("{}://{address}{path}", self.scheme))
            .header(SECRET_HEADER, self.secret.expose())
            .header(TARGET_HEADER, target.to_string())
            .header(reqwest::header::CONTENT_TYPE, MSGPACK);
        // The API request this call serves, if any: the peer logs under it.
        if let Some(id) = crate::api::request_id::current() {
            request = request.header(crate::api::request_id::REQUEST_ID_HEADER, &*id);
        }
        // And its trace, when spans are exported.
        if let Some(parent) = crate::otel::current_traceparent() {
            request = request.header(crate::api::request_id::TRACEPARENT_HEADER, parent);
        }
        let send = request.body(bytes).timeout(timeout).send();
        let address = address.to_owned();
        let response = send.await.map_err(|e| transport_error(&address, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&address, e))?;
        if !status.is_success() {
            return Err(PeerError::Refused {
                address,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            });
        }
        rmp_serde::from_slice(&body).map_err(|e| PeerError::Decode {
            address,
            problem: e.to_string(),
        })
    }
}

/// A request body as peers expect it (MessagePack, with field names).
pub fn encode<Req: Serialize>(body: &Req) -> Result<bytes::Bytes, PeerError> {
    rmp_serde::to_vec_named(body)
        .map(bytes::Bytes::from)
        .map_err(|e| PeerError::Encode(e.to_string()))
}

/// A failed send or receive: a timeout, or the peer is unreachable.
fn transport_error(address: &str, source: reqwest::Error) -> PeerError {
    if source.is_timeout() {
        PeerError::Timeout {
            address: address.to_owned(),
        }
    } else {
        PeerError::Unreachable {
            address: address.to_owned(),
            source,
        }
    }
}

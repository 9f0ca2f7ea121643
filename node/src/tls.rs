//! TLS for the node's one listener (the API and the peer transport) and for
//! its calls to peers, with rustls.
//!
//! With `--tls-cert-file` and `--tls-key-file` the node accepts only TLS,
//! so its peers must use it too; it calls its peers over `https://`,
//! trusting the CAs in `--tls-ca-file`, and checks that each peer's
//! certificate names the peer's advertised host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::config::ConfigError;

/// How long a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may run on after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The loaded certificate, key and peer CAs.
#[derive(Clone)]
pub struct TlsSettings {
    pub server: Arc<ServerConfig>,
    /// PEM of the CAs peers' certificates must chain to.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings(<certificate and key>)")
    }
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

/// The TLS settings from the flags; `None` without a certificate.
pub fn load(
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
    ca: Option<&PathBuf>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let (cert, key) = match (cert, key) {
        (None, None) => {
            if ca.is_some() {
                return Err(invalid(
                    "--tls-ca-file",
                    "needs --tls-cert-file and --tls-key-file".into(),
                ));
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => {
            return Err(invalid(
                "--tls-key-file",
                "is required with --tls-cert-file".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "--tls-cert-file",
                "is required with --tls-key-file".into(),
            ));
        }
    };
    let cert_pem = read("--tls-cert-file", cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("--tls-cert-file", format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(
            "--tls-cert-file",
            format!("{} holds no PEM certificate", cert.display()),
        ));
    }
    let key_pem = read("--tls-key-file", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            "--tls-key-file",
            format!("{} holds no usable PEM private key: {e}", key.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("--tls-cert-file", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            invalid(
                "--tls-key-file",
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let ca_pem = match ca {
        Some(path) => {
            let pem = read("--tls-ca-file", path)?;
            let n = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("--tls-ca-file", format!("{}: {e}", path.display())))?
                .len();
            if n == 0 {
                return Err(invalid(
                    "--tls-ca-file",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            pem
        }
        // Peers present the same kind of certificate: trust its issuer
        // chain as given (for a self-signed certificate, itself).
        None => cert_pem,
    };
    Ok(Some(TlsSettings {
        server: Arc::new(server),
        ca_pem,
    }))
}

/// Serves `app` over TLS on `listener` until `shutdown`, then lets requests
/// in flight finish (for up to 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: &TlsSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls.server.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            warn!("requests still running after the drain timeout; stopping anyway");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cert_file = write("c.pem", &cert.pem());
        let key_file = write("k.pem", &key.serialize_pem());
        let other_key = write("o.pem", &other.serialize_pem());
        let junk = write("junk.pem", "not pem");
        let flag_of = |r: Result<Option<TlsSettings>, ConfigError>| match r {
            Err(ConfigError::Invalid { flag, .. }) | Err(ConfigError::Read { flag, .. }) => flag,
            Ok(_) => "ok",
        };
        assert_eq!(flag_of(load(None, None, None)), "ok");
        assert_eq!(flag_of(load(Some(&cert_file), Some(&key_file), None)), "ok");
        assert_eq!(
            flag_of(load(Some(&cert_file), None, None)),
            "--tls-key-file"
        );
        assert_eq!(
            flag_of(load(None, Some(&key_file), None)),
            "--tls-cert-file"
        );
        assert_eq!(flag_of(load(None, None, Some(&cert_file))), "--tls-ca-file");
        assert_eq!(
            flag_of(load(Some(&junk), Some(&key_file), None)),
            "--tls-cert-file"
        );
        assert_eq!(
            flag_of(load(Some(&cert_file), Some(&junk), None)),
            "--tls-key-file"
        );
        assert_eq!(
            flag_of(load(Some(&cert_file), Some(&other_key), None)),
            "--tls-key-file"
        );
        assert_eq!(
            flag_of(load(Some(&cert_file), Some(&key_file), Some(&junk))),
            "--tls-ca-file"
        );
        let missing = dir.path().join("missing.pem");
        assert_eq!(
            flag_of(load(Some(&missing), Some(&key_file), None)),
            "--tls-cert-file"
        );
    }
}

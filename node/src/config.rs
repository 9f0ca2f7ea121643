//! Node configuration: command-line flags (each with a `PULSEPLANE_*`
//! environment variable) checked into a [`NodeConfig`] before anything binds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::identity::jwt::{JwtFlags, JwtVerifier};
use crate::identity::proxy::TrustedProxy;
use crate::notify::RedisConfig;
use crate::secret::Secret;
use crate::tls::TlsSettings;

/// `pulseplane-node`: one member of a Pulseplane cluster.
#[derive(Debug, Clone, Parser)]
#[command(name = "pulseplane-node", version, about = "A Pulseplane cluster node")]
pub struct Cli {
    /// This node's id: a positive integer, unique in the cluster and fixed
    /// for the life of its data dir.
    #[arg(long, env = "PULSEPLANE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address to listen on; one port serves the public API, the admin API
    /// and, under /raft/, the peer transport.
    #[arg(long, env = "PULSEPLANE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address peers and clients use to reach this node (host:port);
    /// defaults to --listen.
    #[arg(long, env = "PULSEPLANE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Local IP address that calls to peers are made from (on a host with
    /// several addresses); by default the system picks one per route.
    #[arg(long, env = "PULSEPLANE_PEER_SOURCE_IP")]
    pub peer_source_ip: Option<std::net::IpAddr>,
    /// Directory for the node's data; created when missing.
    #[arg(long, env = "PULSEPLANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The founding members, etcd-style: `1=host:port,2=host:port,3=host:port`.
    /// Used only on an empty data dir; the member with the lowest id
    /// initializes the cluster. Omit it on a node that an operator will add
    /// through the admin API.
    #[arg(long, env = "PULSEPLANE_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// The secret peers present to each other.
    #[arg(long, env = "PULSEPLANE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret (surrounding whitespace ignored).
    #[arg(
        long,
        env = "PULSEPLANE_CLUSTER_SECRET_FILE",
        conflicts_with = "cluster_secret"
    )]
    pub cluster_secret_file: Option<PathBuf>,
    /// The bootstrap admin token.
    #[arg(long, env = "PULSEPLANE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the bootstrap admin token.
    #[arg(
        long,
        env = "PULSEPLANE_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<PathBuf>,
    /// One self-initialized node with data under ./pulseplane-data; with no
    /// admin token given, one is generated, printed once and written to
    /// <data-dir>/admin-token.
    #[arg(long, env = "PULSEPLANE_DEV")]
    pub dev: bool,
    /// Raft heartbeat interval.
    #[arg(long, env = "PULSEPLANE_HEARTBEAT_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout; the upper bound is
    /// 1.5 times this.
    #[arg(long, env = "PULSEPLANE_ELECTION_TIMEOUT", default_value = "400ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,
    /// Timeout of one peer RPC (append, vote).
    #[arg(long, env = "PULSEPLANE_PEER_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub peer_timeout: Duration,
    /// Send a leader's new log entries to the voters while the leader
    /// syncs them itself, instead of after (`true` or `false`).
    #[arg(long, env = "PULSEPLANE_EAGER_REPLICATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub eager_replication: bool,
    /// Timeout of one snapshot chunk sent to a peer.
    #[arg(long, env = "PULSEPLANE_SNAPSHOT_CHUNK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub snapshot_chunk_timeout: Duration,
    /// Snapshot chunk size in bytes.
    #[arg(long, env = "PULSEPLANE_SNAPSHOT_CHUNK_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub snapshot_chunk_bytes: u64,
    /// Build a snapshot (and compact the log) after this many log entries.
    #[arg(long, env = "PULSEPLANE_SNAPSHOT_LOGS", default_value_t = 100_000)]
    pub snapshot_logs: u64,
    /// Also build a snapshot once this many commands were applied since the
    /// last one (an entry carries many), which bounds what a restart
    /// replays.
    #[arg(long, env = "PULSEPLANE_SNAPSHOT_COMMANDS", default_value_t = 50_000)]
    pub snapshot_commands: u64,
    /// Log entries kept behind the last snapshot, so a briefly lagging
    /// follower catches up from the log instead of a snapshot.
    #[arg(long, env = "PULSEPLANE_KEEP_LOGS", default_value_t = 1_000)]
    pub keep_logs: u64,
    /// How long a write may take overall, including forwarding to the
    /// leader and retries across a leader change.
    #[arg(long, env = "PULSEPLANE_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
    /// Most commands coalesced into one Raft entry.
    #[arg(long, env = "PULSEPLANE_MAX_BATCH", default_value_t = 512)]
    pub max_batch: usize,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "PULSEPLANE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Preview evaluations (`POST .../evaluate`) this node answers per
    /// second; more get 429. Twice as many may come in a burst.
    #[arg(long, env = "PULSEPLANE_EVALUATE_RATE", default_value_t = 20)]
    pub evaluate_rate: u32,
    /// Threads that run the node's tasks (0: one per CPU core).
    #[arg(long, env = "PULSEPLANE_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// Log format: `text` or `json`.
    #[arg(long, env = "PULSEPLANE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Send trace spans to this OpenTelemetry collector over OTLP/HTTP
    /// (`http://host:4318`; spans are posted to `/v1/traces`). Needs a
    /// build with the cargo feature `otel`.
    #[arg(long, env = "PULSEPLANE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    #[arg(
        long,
        env = "PULSEPLANE_OTLP_SERVICE_NAME",
        default_value = "pulseplane-node"
    )]
    pub otlp_service_name: String,
    /// Redis for change notices (optional): `redis://[user:password@]host:port[/db]`,
    /// or `rediss://` for TLS. Without it SDKs learn of changes by polling
    /// alone.
    #[arg(long, env = "PULSEPLANE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A file holding the Redis URL (it may carry a password).
    #[arg(long, env = "PULSEPLANE_REDIS_URL_FILE", conflicts_with = "redis_url")]
    pub redis_url_file: Option<PathBuf>,
    /// Notices go to channel `<prefix>:env:<env>`.
    #[arg(
        long,
        env = "PULSEPLANE_REDIS_CHANNEL_PREFIX",
        default_value = "pulseplane"
    )]
    pub redis_channel_prefix: String,
    /// Most change notices waiting for Redis; more are dropped and counted.
    #[arg(long, env = "PULSEPLANE_REDIS_QUEUE", default_value_t = 1024)]
    pub redis_queue: usize,
    /// Timeout of one Redis connect or publish.
    #[arg(long, env = "PULSEPLANE_REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
    /// A file holding the HS256 secret JWTs are signed with (at least 32
    /// bytes).
    #[arg(long, env = "PULSEPLANE_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// A PEM public key (RSA for RS256, EC P-256 for ES256) JWTs are signed
    /// with; repeat for several (comma-separated in the variable).
    #[arg(long, env = "PULSEPLANE_JWT_PUBLIC_KEY_FILE", value_delimiter = ',')]
    pub jwt_public_key_file: Vec<PathBuf>,
    /// A JWKS file with the identity provider's RS256 / ES256 keys.
    #[arg(long, env = "PULSEPLANE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// The required `iss` of JWTs.
    #[arg(long, env = "PULSEPLANE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The required `aud` of JWTs.
    #[arg(long, env = "PULSEPLANE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The claim holding a token's groups: a name or dotted path.
    #[arg(long, env = "PULSEPLANE_JWT_GROUPS_CLAIM", default_value = "groups")]
    pub jwt_groups_claim: String,
    /// Clock-skew leeway for `exp` and `nbf` (at most 5m).
    #[arg(long, env = "PULSEPLANE_JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,
    /// The header an authenticating proxy puts the subject in.
    #[arg(long, env = "PULSEPLANE_TRUSTED_PROXY_HEADER")]
    pub trusted_proxy_header: Option<String>,
    /// The header an authenticating proxy puts the groups in (comma-separated).
    #[arg(long, env = "PULSEPLANE_TRUSTED_PROXY_GROUPS_HEADER")]
    pub trusted_proxy_groups_header: Option<String>,
    /// The proxy's source networks (`10.0.0.0/8`, `::1`); the headers are
    /// ignored from anywhere else. Repeatable; comma-separated in the
    /// variable.
    #[arg(long, env = "PULSEPLANE_TRUSTED_PROXY_CIDR", value_delimiter = ',')]
    pub trusted_proxy_cidr: Vec<String>,
    /// A PEM certificate (chain): serve the API and the peer transport over
    /// TLS only, and call peers over TLS.
    #[arg(long, env = "PULSEPLANE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, env = "PULSEPLANE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that peers' certificates must chain to (default:
    /// the chain in --tls-cert-file).
    #[arg(long, env = "PULSEPLANE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Require `cluster.read` for `/metrics` (open by default).
    #[arg(long, env = "PULSEPLANE_PROTECT_METRICS")]
    pub protect_metrics: bool,
    /// Require `cluster.read` for `/healthz` and `/readyz` (open by
    /// default).
    #[arg(long, env = "PULSEPLANE_PROTECT_HEALTH")]
    pub protect_health: bool,
}

/// A founding member's id and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub address: String,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub advertise: String,
    /// The source address of calls to peers, when set.
    pub peer_source_ip: Option<std::net::IpAddr>,
    pub data_dir: PathBuf,
    /// Empty when not given.
    pub initial_cluster: Vec<Member>,
    /// In dev mode without a given secret this is `None`: the node keeps
    /// one in its data dir.
    pub cluster_secret: Option<Secret>,
    /// `None` in dev mode until generated.
    pub admin_token: Option<Secret>,
    pub dev: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub peer_timeout: Duration,
    pub eager_replication: bool,
    pub snapshot_chunk_timeout: Duration,
    pub snapshot_chunk_bytes: u64,
    pub snapshot_logs: u64,
    pub snapshot_commands: u64,
    pub keep_logs: u64,
    pub write_timeout: Duration,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub evaluate_rate: u32,
    pub json_logs: bool,
    /// Trace export, when configured: the collector's base URL and the
    /// service name.
    pub otlp: Option<(String, String)>,
    /// 0: one per CPU core.
    pub worker_threads: usize,
    /// Change notices over Redis, when configured.
    pub redis: Option<RedisConfig>,
    /// JWT verification, when keys are configured.
    pub jwt: Option<JwtVerifier>,
    pub trusted_proxy: Option<TrustedProxy>,
    pub protect_metrics: bool,
    pub protect_health: bool,
    /// TLS for the listener and peer calls, when configured.
    pub tls: Option<TlsSettings>,
}

/// A configuration mistake, reported before the node binds.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag}: {problem}")]
    Invalid { flag: &'static str, problem: String },
    #[error("{flag}: cannot read {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        problem: problem.into(),
    }
}

fn read_secret_file(flag: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        flag,
        path: path.to_owned(),
        source,
    })?;
    Secret::new(text.trim()).ok_or_else(|| invalid(flag, format!("{} is empty", path.display())))
}

fn secret_arg(
    flag: &'static str,
    value: &Option<String>,
    file_flag: &'static str,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(v), _) => Secret::new(v.trim())
            .map(Some)
            .ok_or_else(|| invalid(flag, "is empty")),
        (None, Some(path)) => read_secret_file(file_flag, path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<Member>, ConfigError> {
    const FLAG: &str = "--initial-cluster";
    let mut members: BTreeMap<u64, String> = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, address)) = part.split_once('=') else {
            return Err(invalid(
                FLAG,
                format!("{part:?} is not id=host:port (example: 1=10.0.0.1:7400)"),
            ));
        };
        let id: u64 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
            invalid(
                FLAG,
                format!("{id:?} in {part:?} is not a positive integer id"),
            )
        })?;
        let address = address.trim();
        check_address(FLAG, address)?;
        if members.values().any(|a| a == address) {
            return Err(invalid(FLAG, format!("address {address} is listed twice")));
        }
        if members.insert(id, address.to_owned()).is_some() {
            return Err(invalid(FLAG, format!("node id {id} is listed twice")));
        }
    }
    if members.is_empty() {
        return Err(invalid(FLAG, "lists no members"));
    }
    Ok(members
        .into_iter()
        .map(|(id, address)| Member { id, address })
        .collect())
}

/// Checks that `address` is `host:port` with a port.
pub fn check_address(flag: &'static str, address: &str) -> Result<(), ConfigError> {
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && !address.contains('/')
        && !address.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(invalid(flag, format!("{address:?} is not host:port")))
    }
}

impl Cli {
    /// Checks the flags; nothing is bound or written.
    pub fn into_config(self) -> Result<NodeConfig, ConfigError> {
        let otlp = match self.otlp_endpoint.as_deref() {
            None => None,
            Some(_) if !cfg!(feature = "otel") => {
                return Err(invalid(
                    "--otlp-endpoint",
                    "this build has no OpenTelemetry export (build with the cargo feature otel)",
                ));
            }
            Some(url) => {
                let rest = url.strip_prefix("http://").ok_or_else(|| {
                    invalid(
                        "--otlp-endpoint",
                        format!(
                            "{url:?} must be an http:// URL (a collector on this host or network)"
                        ),
                    )
                })?;
                let authority = rest.split('/').next().unwrap_or("");
                if authority.is_empty() || authority.contains(char::is_whitespace) {
                    return Err(invalid("--otlp-endpoint", format!("{url:?} has no host")));
                }
                if self.otlp_service_name.trim().is_empty() {
                    return Err(invalid("--otlp-service-name", "must not be empty"));
                }
                Some((
                    url.trim_end_matches('/').to_owned(),
                    self.otlp_service_name.clone(),
                ))
            }
        };
        let json_logs = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "--log-format",
                    format!("{other:?} is not text or json"),
                ));
            }
        };
        let admin_token = secret_arg(
            "--admin-token",
            &self.admin_token,
            "--admin-token-file",
            &self.admin_token_file,
        )?;
        let cluster_secret = secret_arg(
            "--cluster-secret",
            &self.cluster_secret,
            "--cluster-secret-file",
            &self.cluster_secret_file,
        )?;
        if self.heartbeat_interval.is_zero() {
            return Err(invalid("--heartbeat-interval", "must be above zero"));
        }
        if self.election_timeout <= self.heartbeat_interval * 2 {
            return Err(invalid(
                "--election-timeout",
                "must be more than twice --heartbeat-interval",
            ));
        }
        for (flag, d) in [
            ("--peer-timeout", self.peer_timeout),
            ("--snapshot-chunk-timeout", self.snapshot_chunk_timeout),
            ("--write-timeout", self.write_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(flag, "must be above zero"));
            }
        }
        if self.snapshot_chunk_bytes < 1024 {
            return Err(invalid("--snapshot-chunk-bytes", "must be at least 1024"));
        }
        if self.snapshot_logs == 0 {
            return Err(invalid("--snapshot-logs", "must be at least 1"));
        }
        if self.snapshot_commands == 0 {
            return Err(invalid("--snapshot-commands", "must be at least 1"));
        }
        if self.max_batch == 0 {
            return Err(invalid("--max-batch", "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("--max-body-bytes", "must be at least 1024"));
        }
        if self.evaluate_rate == 0 {
            return Err(invalid("--evaluate-rate", "must be at least 1"));
        }
        let redis = self.redis_config()?;
        let jwt = JwtVerifier::from_flags(&JwtFlags {
            hs256_secret_file: self.jwt_hs256_secret_file.clone(),
            public_key_files: self.jwt_public_key_file.clone(),
            jwks_file: self.jwks_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            groups_claim: self.jwt_groups_claim.clone(),
            leeway: self.jwt_leeway,
        })?;
        let tls = crate::tls::load(
            self.tls_cert_file.as_ref(),
            self.tls_key_file.as_ref(),
            self.tls_ca_file.as_ref(),
        )?;
        let trusted_proxy = TrustedProxy::from_flags(
            self.trusted_proxy_header.as_deref(),
            self.trusted_proxy_groups_header.as_deref(),
            &self.trusted_proxy_cidr,
        )?;

        let (node_id, listen, data_dir, initial_cluster, cluster_secret) = if self.dev {
            let node_id = self.node_id.unwrap_or(1);
            let listen = self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7400)));
            let data_dir = self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("pulseplane-data"));
            let advertise = self.advertise.clone().unwrap_or_else(|| listen.to_string());
            let initial = vec![Member {
                id: node_id,
                address: advertise,
            }];
            (node_id, listen, data_dir, initial, cluster_secret)
        } else {
            let node_id = self
                .node_id
                .ok_or_else(|| invalid("--node-id", "is required (or use --dev)"))?;
            let listen = self
                .listen
                .ok_or_else(|| invalid("--listen", "is required (or use --dev)"))?;
            let data_dir = self
                .data_dir
                .ok_or_else(|| invalid("--data-dir", "is required (or use --dev)"))?;
            let initial = match &self.initial_cluster {
                Some(text) => parse_initial_cluster(text)?,
                None => Vec::new(),
            };
            let secret = cluster_secret.ok_or_else(|| {
                invalid(
                    "--cluster-secret",
                    "is required: give --cluster-secret or --cluster-secret-file",
                )
            })?;
            if admin_token.is_none() {
                return Err(invalid(
                    "--admin-token-file",
                    "an admin token is required: give --admin-token-file or PULSEPLANE_ADMIN_TOKEN",
                ));
            }
            (node_id, listen, data_dir, initial, Some(secret))
        };
        if node_id == 0 {
            return Err(invalid("--node-id", "must be a positive integer"));
        }
        let advertise = self.advertise.unwrap_or_else(|| listen.to_string());
        check_address("--advertise", &advertise)?;
        if !initial_cluster.is_empty() {
            match initial_cluster.iter().find(|m| m.id == node_id) {
                None => {
                    return Err(invalid(
                        "--initial-cluster",
                        format!("does not list this node's id {node_id}"),
                    ));
                }
                Some(me) if me.address != advertise => {
                    return Err(invalid(
                        "--initial-cluster",
                        format!(
                            "lists node {node_id} at {}, but this node advertises {advertise}",
                            me.address
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(NodeConfig {
            node_id,
            listen,
            advertise,
            peer_source_ip: self.peer_source_ip,
            data_dir,
            initial_cluster,
            cluster_secret,
            admin_token,
            dev: self.dev,
            heartbeat_interval: self.heartbeat_interval,
            election_timeout: self.election_timeout,
            peer_timeout: self.peer_timeout,
            eager_replication: self.eager_replication,
            snapshot_chunk_timeout: self.snapshot_chunk_timeout,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            snapshot_logs: self.snapshot_logs,
            snapshot_commands: self.snapshot_commands,
            keep_logs: self.keep_logs,
            write_timeout: self.write_timeout,
            max_batch: self.max_batch,
            max_body_bytes: self.max_body_bytes,
            evaluate_rate: self.evaluate_rate,
            json_logs,
            otlp,
            worker_threads: self.worker_threads,
            redis,
            jwt,
            trusted_proxy,
            protect_metrics: self.protect_metrics,
            protect_health: self.protect_health,
            tls,
        })
    }

    /// The Redis settings, checked; `None` without a URL.
    fn redis_config(&self) -> Result<Option<RedisConfig>, ConfigError> {
        let Some(url) = secret_arg(
            "--redis-url",
            &self.redis_url,
            "--redis-url-file",
            &self.redis_url_file,
        )?
        else {
            return Ok(None);
        };
        let flag = if self.redis_url.is_some() {
            "--redis-url"
        } else {
            "--redis-url-file"
        };
        check_redis_url(flag, url.expose())?;
        let prefix = self.redis_channel_prefix.trim();
        if prefix.is_empty()
            || prefix.len() > 128
            || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "--redis-channel-prefix",
                "must be 1 to 128 characters without spaces",
            ));
        }
        if self.redis_queue == 0 {
            return Err(invalid("--redis-queue", "must be at least 1"));
        }
        if self.redis_timeout.is_zero() {
            return Err(invalid("--redis-timeout", "must be above zero"));
        }
        Ok(Some(RedisConfig {
            url,
            prefix: prefix.to_owned(),
            queue: self.redis_queue,
            timeout: self.redis_timeout,
        }))
    }
}

/// Checks a Redis URL without echoing it (it may hold a password).
fn check_redis_url(flag: &'static str, url: &str) -> Result<(), ConfigError> {
    const SHAPE: &str = "redis://[user:password@]host:port[/db] or rediss://... for TLS";
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(invalid(flag, format!("must be {SHAPE}")));
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        invalid(
            flag,
            format!(
                "is not a usable Redis URL ({:?}); expected {SHAPE}",
                e.kind()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["pulseplane-node"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn initial_cluster_parses_and_rejects_mistakes() {
        let m = parse_initial_cluster("2=127.0.0.1:2, 1=127.0.0.1:1").unwrap();
        assert_eq!(m[0].id, 1);
        assert_eq!(m[1].address, "127.0.0.1:2");
        for bad in [
            "",
            "1",
            "x=127.0.0.1:1",
            "0=127.0.0.1:1",
            "1=127.0.0.1",
            "1=127.0.0.1:99999",
            "1=a:1,1=b:2",
            "1=a:1,2=a:1",
            "1=http://a:1",
        ] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_cluster_node_needs_its_flags() {
        let base = [
            "--node-id=1",
            "--listen=127.0.0.1:7000",
            "--data-dir=/tmp/x",
            "--cluster-secret=s",
            "--admin-token=t",
        ];
        assert!(cli(&base).into_config().is_ok());
        for skip in 0..base.len() {
            let args: Vec<&str> = base
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, a)| *a)
                .collect();
            assert!(
                cli(&args).into_config().is_err(),
                "accepted without {}",
                base[skip]
            );
        }
        let mut other = base.to_vec();
        other.push("--initial-cluster=2=127.0.0.1:7001,3=127.0.0.1:7002");
        let e = cli(&other).into_config().unwrap_err().to_string();
        assert!(e.contains("does not list this node's id 1"), "{e}");
        let mut moved = base.to_vec();
        moved.push("--initial-cluster=1=127.0.0.1:7999");
        assert!(cli(&moved).into_config().is_err());
    }

    #[test]
    fn redis_settings_are_checked() {
        let c = cli(&["--dev"]).into_config().unwrap();
        assert!(c.redis.is_none());
        let c = cli(&["--dev", "--redis-url=redis://:pw@127.0.0.1:6379/0"])
            .into_config()
            .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.prefix, "pulseplane");
        assert!(
            cli(&["--dev", "--redis-url=rediss://127.0.0.1:6380"])
                .into_config()
                .is_ok()
        );
        for bad in [
            vec!["--redis-url=http://127.0.0.1:6379"],
            vec!["--redis-url=redis://:secretpw@"],
            vec!["--redis-url=redis://127.0.0.1", "--redis-channel-prefix= "],
            vec!["--redis-url=redis://127.0.0.1", "--redis-queue=0"],
        ] {
            let mut args = vec!["--dev"];
            args.extend(bad.iter().copied());
            let e = cli(&args).into_config().unwrap_err().to_string();
            assert!(e.starts_with("--redis"), "{e}");
            assert!(!e.contains("secretpw"), "the password leaked: {e}");
        }
    }

    #[test]
    fn dev_mode_needs_nothing() {
        let c = cli(&["--dev"]).into_config().unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.initial_cluster.len(), 1);
        assert!(c.admin_token.is_none());
    }
}

//! The client's configuration and its builder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::hooks::Hook;

/// Why a configuration was refused. Only a configuration that cannot work
/// at all is refused; an unreachable control plane is not an error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment {0:?}: {1}")]
    Environment(String, String),
    #[error("endpoint {0:?}: must be an http:// or https:// URL with a host")]
    Endpoint(String),
    #[error("{0}: must be more than zero")]
    Zero(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start the HTTP client: {0}")]
    Http(String),
}

/// Everything the client needs; made by [`crate::Client::builder`].
#[derive(Clone)]
pub struct Config {
    pub(crate) endpoints: Vec<String>,
    pub(crate) environment: String,
    pub(crate) sdk_key: String,
    pub(crate) poll_interval: Duration,
    pub(crate) jitter: f64,
    pub(crate) long_poll: bool,
    pub(crate) long_poll_wait: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) init_timeout: Duration,
    pub(crate) cache_file: Option<PathBuf>,
    pub(crate) bootstrap_file: Option<PathBuf>,
    pub(crate) stale_after: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) instance_id: String,
    pub(crate) hooks: Vec<Arc<dyn Hook>>,
    /// Change notices over Redis (feature `redis`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) redis_url: Option<String>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) redis_prefix: String,
    /// PEM CA certificates trusted for `https://` endpoints.
    pub(crate) tls_ca_pem: Option<Vec<u8>>,
}

/// Builds a [`crate::Client`]: `Client::builder("prod").endpoints([...]).start().await`.
pub struct Builder {
    pub(crate) config: Config,
}

impl Builder {
    pub(crate) fn new(environment: &str) -> Builder {
        Builder {
            config: Config {
                endpoints: Vec::new(),
                environment: environment.to_owned(),
                sdk_key: String::new(),
                poll_interval: Duration::from_secs(30),
                jitter: 0.1,
                long_poll: true,
                long_poll_wait: Duration::from_secs(30),
                request_timeout: Duration::from_secs(5),
                init_timeout: Duration::from_secs(3),
                cache_file: None,
                bootstrap_file: None,
                stale_after: Duration::from_secs(300),
                max_backoff: Duration::from_secs(30),
                instance_id: new_instance_id(),
                hooks: Vec::new(),
                redis_url: None,
                redis_prefix: "pulseplane".into(),
                tls_ca_pem: None,
            },
        }
    }

    /// Node base URLs (`http://host:port`, or `https://` for nodes served
    /// over TLS); any node serves the snapshot.
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.endpoints = endpoints
            .into_iter()
            .map(|e| e.as_ref().trim_end_matches('/').to_owned())
            .collect();
        self
    }

    /// The bearer token sent on every poll: an SDK key for the
    /// environment.
    pub fn sdk_key(mut self, key: &str) -> Builder {
        self.config.sdk_key = key.to_owned();
        self
    }

    /// The CA certificates (PEM) that `https://` endpoints' certificates
    /// must chain to. Without it no `https://` endpoint is trusted.
    pub fn tls_ca_pem(mut self, pem: &[u8]) -> Builder {
        self.config.tls_ca_pem = Some(pem.to_vec());
        self
    }

    /// Time between polls when long-polling is off, or after a failed
    /// long-poll (default 30 s), varied by ±`jitter` (default 10%).
    pub fn poll_interval(mut self, every: Duration) -> Builder {
        self.config.poll_interval = every;
        self
    }

    /// Fraction (0 to 1) by which each poll interval is varied at random.
    pub fn jitter(mut self, fraction: f64) -> Builder {
        self.config.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Long-poll: ask the node to hold the request until the next version
    /// (on by default), waiting at most `long_poll_wait` per request
    /// (default 30 s, 1 to 60 s).
    pub fn long_poll(mut self, on: bool) -> Builder {
        self.config.long_poll = on;
        self
    }

    pub fn long_poll_wait(mut self, wait: Duration) -> Builder {
        self.config.long_poll_wait = wait;
        self
    }

    /// Timeout of one request (default 5 s), on top of a long-poll's wait.
    pub fn request_timeout(mut self, timeout: Duration) -> Builder {
        self.config.request_timeout = timeout;
        self
    }

    /// The longest [`Builder::start`] waits for a fresh snapshot before it
    /// returns with the best local source (default 3 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Builder {
        self.config.init_timeout = timeout;
        self
    }

    /// Where the last good snapshot is kept (written atomically, verified by
    /// its digest when read).
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Builder {
        self.config.cache_file = Some(path.into());
        self
    }

    /// A bootstrap file exported by CI/CD (`pulseplane export`).
    pub fn bootstrap_file(mut self, path: impl Into<PathBuf>) -> Builder {
        self.config.bootstrap_file = Some(path.into());
        self
    }

    /// Data from the control plane older than this is reported stale
    /// (default 5 minutes; must exceed the long-poll wait, or the poll
    /// interval with long-poll off, plus the request timeout).
    pub fn stale_after(mut self, after: Duration) -> Builder {
        self.config.stale_after = after;
        self
    }

    /// The longest pause between attempts after failures (default 30 s).
    pub fn max_backoff(mut self, max: Duration) -> Builder {
        self.config.max_backoff = max;
        self
    }

    /// The id sent as `X-Pulseplane-Instance` (default: random per client).
    pub fn instance_id(mut self, id: &str) -> Builder {
        self.config.instance_id = id.to_owned();
        self
    }

    /// An evaluation hook (before, after, error, finally).
    pub fn hook(mut self, hook: Arc<dyn Hook>) -> Builder {
        self.config.hooks.push(hook);
        self
    }

    /// Listen for change notices on Redis Pub/Sub (`redis://` or
    /// `rediss://`, with a password if needed): a notice makes the client
    /// poll at once. Polling goes on regardless.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: &str) -> Builder {
        self.config.redis_url = Some(url.to_owned());
        self
    }

    /// The nodes' channel prefix (default `pulseplane`): notices arrive on
    /// `<prefix>:env:<environment>`.
    #[cfg(feature = "redis")]
    pub fn redis_channel_prefix(mut self, prefix: &str) -> Builder {
        self.config.redis_prefix = prefix.to_owned();
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        if let Some(problem) = pulseplane_core::limits::check_key(&c.environment) {
            return Err(ConfigError::Environment(c.environment.clone(), problem));
        }
        if let Some(e) = c.endpoints.iter().find(|e| {
            e.strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .is_none_or(|rest| rest.is_empty() || rest.starts_with('/'))
        }) {
            return Err(ConfigError::Endpoint(e.clone()));
        }
        for (name, d) in [
            ("poll_interval", c.poll_interval),
            ("request_timeout", c.request_timeout),
            ("stale_after", c.stale_after),
            ("max_backoff", c.max_backoff),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        let day = Duration::from_secs(86_400);
        if c.poll_interval > day || c.request_timeout > day || c.max_backoff > day {
            return Err(ConfigError::Invalid(
                "poll_interval, request_timeout and max_backoff must be at most a day".into(),
            ));
        }
        if c.long_poll
            && !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&c.long_poll_wait)
        {
            return Err(ConfigError::Invalid(
                "long_poll_wait must be 1 to 60 s".into(),
            ));
        }
        let cycle = if c.long_poll {
            c.long_poll_wait
        } else {
            c.poll_interval.mul_f64(1.0 + c.jitter)
        };
        if c.stale_after <= cycle + c.request_timeout {
            return Err(ConfigError::Invalid(format!(
                "stale_after ({:?}) must exceed one poll cycle plus the request timeout ({:?})",
                c.stale_after,
                cycle + c.request_timeout
            )));
        }
        #[cfg(feature = "redis")]
        if let Some(url) = &c.redis_url {
            crate::notices::check_url(url).map_err(ConfigError::Invalid)?;
            let p = &c.redis_prefix;
            if p.is_empty()
                || p.len() > 128
                || p.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::Invalid(
                    "the Redis channel prefix must be 1 to 128 characters without spaces".into(),
                ));
            }
        }
        let id = &c.instance_id;
        if id.is_empty()
            || id.len() > pulseplane_core::limits::MAX_TOKEN_LEN
            || !id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::Invalid(
                "instance_id must be 1 to 256 visible ASCII characters".into(),
            ));
        }
        Ok(())
    }
}

fn new_instance_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fastrand::u64(..).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

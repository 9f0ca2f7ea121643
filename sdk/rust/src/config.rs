//! The client's configuration and its builder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::hooks::Hook;

/// Why a configuration was refused. Only a configuration that cannot work
/// at all is refused; an unreachable control plane is not an error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment: must not be empty")]
    NoEnvironment,
    #[error("endpoint {0:?}: must be an http:// URL")]
    Endpoint(String),
    #[error("{0}: must be more than zero")]
    Zero(&'static str),
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
            },
        }
    }

    /// Node base URLs (`http://host:port`); any node serves the snapshot.
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

    /// The bearer token sent on every poll.
    pub fn sdk_key(mut self, key: &str) -> Builder {
        self.config.sdk_key = key.to_owned();
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
        self.config.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Long-poll: ask the node to hold the request until the next version
    /// (on by default), waiting at most `wait` per request (default 30 s;
    /// nodes cap it at 60 s).
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
    /// (default 5 minutes).
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

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        if c.environment.is_empty() {
            return Err(ConfigError::NoEnvironment);
        }
        if let Some(e) = c.endpoints.iter().find(|e| !e.starts_with("http://")) {
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

//! Change notices over Redis Pub/Sub (optional, `--redis-url`).
//!
//! When an environment actor has built a newly published version, it queues
//! a notice `{"env", "version", "digest"}` for channel `<prefix>:env:<env>`.
//! A notice is a hint that makes SDKs poll at once; data only ever comes
//! from a node's snapshot, so a lost notice costs latency and nothing else.
//!
//! **Once per version, by dedupe.** Every node that builds a new version
//! queues its notice, and one Lua script in Redis publishes it only if that
//! environment's last published (creation time, version) is older, then
//! records it under `<prefix>:sent:<env>`. The first node to get there
//! (usually the leader, which applies first) sends; the others count a
//! duplicate. Unlike leader-only sending, a leader change between commit
//! and send loses nothing: any node that applies the version sends it.
//!
//! **Redis never slows a write.** The actor only `try_send`s into a bounded
//! queue; a full queue drops the notice and counts it. One task drains the
//! queue, with a timeout on every Redis call, reconnecting with capped
//! exponential backoff and jitter. Bad credentials are logged as such and
//! counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::metrics::Metrics;
use crate::secret::Secret;

/// The Redis settings of a node.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`, maybe with a password: never logged.
    pub url: Secret,
    pub prefix: String,
    pub queue: usize,
    pub timeout: Duration,
}

/// One published version of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub env: String,
    /// Tells a re-created environment's versions from the old ones.
    pub created_at_ms: i64,
    pub version: u64,
    pub digest: String,
}

/// The message on the channel.
#[derive(Serialize)]
struct Message<'a> {
    env: &'a str,
    version: u64,
    digest: &'a str,
}

/// The channel of an environment's notices.
pub fn channel(prefix: &str, env: &str) -> String {
    format!("{prefix}:env:{env}")
}

/// Publishes `ARGV[4]` on channel `ARGV[3]` unless the environment's last
/// sent (creation time, version) in `KEYS[1]` is the same or newer than
/// (`ARGV[1]`, `ARGV[2]`). Returns the receiver count, or -1 when skipped.
const PUBLISH_ONCE: &str = r"
local last = redis.call('GET', KEYS[1])
local created = tonumber(ARGV[1])
local version = tonumber(ARGV[2])
if last then
  local c, v = string.match(last, '^(%-?%d+):(%d+)$')
  if c then
    c = tonumber(c)
    v = tonumber(v)
    if created < c or (created == c and version <= v) then
      return -1
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', 604800)
return redis.call('PUBLISH', ARGV[3], ARGV[4])
";

/// The queue side, held by the environment actors.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the publisher task; it runs until `stop` fires. Fails only on
    /// a URL the Redis client cannot use.
    pub fn start(
        cfg: &RedisConfig,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<(Notifier, tokio::task::JoinHandle<()>), String> {
        let client = redis::Client::open(cfg.url.expose()).map_err(|e| describe(&e))?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let publisher = Publisher {
            client,
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout,
            script: redis::Script::new(PUBLISH_ONCE),
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(publisher.run(rx, stop));
        Ok((Notifier { tx, metrics }, task))
    }

    /// Queues a notice; never waits. A full queue drops it (counted).
    pub fn notify(&self, notice: Notice) {
        match self.tx.try_send(notice) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(n)) => {
                self.metrics.redis.dropped.fetch_add(1, Ordering::Relaxed);
                debug!(env = %n.env, version = n.version, "notice queue full; notice dropped");
            }
        }
    }

    /// Notices waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// What a Redis error means for the publisher.
fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// A Redis error in words, without the URL (which may hold a password).
fn describe(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        _ => e.to_string(),
    }
}

struct Publisher {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    metrics: Arc<Metrics>,
}

impl Publisher {
    async fn run(self, mut rx: mpsc::Receiver<Notice>, stop: CancellationToken) {
        let m = &self.metrics.redis;
        let mut failures = 0u32;
        // A notice whose publish failed, retried on the next connection.
        let mut pending: Option<Notice> = None;
        loop {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(self.timeout);
            let connected = tokio::select! {
                c = self.client.get_multiplexed_async_connection_with_config(&config) => c,
                () = stop.cancelled() => return,
            };
            match connected {
                Ok(mut con) => {
                    m.connected.store(1, Ordering::Relaxed);
                    if failures > 0 {
                        info!("connected to Redis again; change notices resume");
                    } else {
                        info!("connected to Redis for change notices");
                    }
                    failures = 0;
                    let e = self.serve(&mut con, &mut rx, &mut pending, &stop).await;
                    m.connected.store(0, Ordering::Relaxed);
                    let Some(e) = e else { return };
                    self.connect_failed(&e, failures);
                }
                Err(e) => self.connect_failed(&e, failures),
            }
            failures = failures.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(backoff(failures)) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Counts and logs a failed connection (or a connection lost).
    fn connect_failed(&self, e: &RedisError, failures: u32) {
        let m = &self.metrics.redis;
        if is_auth_error(e) {
            error!(
                error = %describe(e),
                "Redis refused this node's credentials (check the password or user in --redis-url); \
                 change notices are not sent until it accepts them, SDKs still get changes by polling"
            );
            m.auth_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            m.connect_failures.fetch_add(1, Ordering::Relaxed);
            // Every failure while the outage is young, then one in 16.
            if failures < 3 || failures.is_multiple_of(16) {
                warn!(
                    error = %describe(e),
                    attempt = failures + 1,
                    "Redis is unreachable; change notices wait (SDKs still get changes by polling)"
                );
            }
        }
    }

    /// Publishes queued notices until an error (returned) or `stop`
    /// (`None`).
    async fn serve(
        &self,
        con: &mut MultiplexedConnection,
        rx: &mut mpsc::Receiver<Notice>,
        pending: &mut Option<Notice>,
        stop: &CancellationToken,
    ) -> Option<RedisError> {
        let m = &self.metrics.redis;
        loop {
            let notice = match pending.take() {
                Some(n) => n,
                None => {
                    let n = tokio::select! {
                        n = rx.recv() => n,
                        () = stop.cancelled() => None,
                    };
                    n?
                }
            };
            let message = serde_json::to_string(&Message {
                env: &notice.env,
                version: notice.version,
                digest: &notice.digest,
            })
            .unwrap_or_default();
            let sent: Result<i64, RedisError> = self
                .script
                .key(format!("{}:sent:{}", self.prefix, notice.env))
                .arg(notice.created_at_ms)
                .arg(notice.version)
                .arg(channel(&self.prefix, &notice.env))
                .arg(message)
                .invoke_async(con)
                .await;
            match sent {
                Ok(-1) => {
                    m.duplicate.fetch_add(1, Ordering::Relaxed);
                    debug!(env = %notice.env, version = notice.version, "notice already sent by another node");
                }
                Ok(receivers) => {
                    m.sent.fetch_add(1, Ordering::Relaxed);
                    debug!(env = %notice.env, version = notice.version, receivers, "notice sent");
                }
                Err(e) => {
                    m.failed.fetch_add(1, Ordering::Relaxed);
                    *pending = Some(notice);
                    return Some(e);
                }
            }
        }
    }
}

/// 100 ms doubling to 10 s, ±20%.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << failures.min(7));
    let base = base.min(Duration::from_secs(10));
    base.mul_f64(0.8 + fastrand::f64() * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_and_message_follow_the_protocol() {
        assert_eq!(channel("pulseplane", "prod"), "pulseplane:env:prod");
        let m = serde_json::to_value(Message {
            env: "prod",
            version: 7,
            digest: "ab",
        })
        .unwrap();
        assert_eq!(
            m,
            serde_json::json!({"env": "prod", "version": 7, "digest": "ab"})
        );
    }

    #[test]
    fn backoff_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(120));
        assert!(backoff(40) <= Duration::from_secs(12));
    }
}

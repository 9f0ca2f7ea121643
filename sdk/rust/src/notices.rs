//! The Redis listener (feature `redis`): subscribes to the environment's
//! change channel `<prefix>:env:<env>` and turns each notice
//! `{"env", "version", "digest"}` into an immediate poll with
//! `min_version`. Polling goes on regardless; the listener only makes it
//! sooner. It reconnects with backoff and jitter, pings Redis to notice a
//! dead connection, and after every (re)subscription asks for one ordinary
//! poll, since notices sent while it was away are lost.
//!
//! A message is only ever a hint: one that does not parse, names another
//! environment or is larger than 4 KiB is counted and ignored, and one that
//! parses can at most cause one bounded poll.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tracing::{debug, error, info, warn};

use crate::client::Inner;

/// How often the subscription is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(15);
/// The largest message read as a notice.
const MAX_NOTICE_BYTES: usize = 4096;

/// The notice as published by the nodes.
#[derive(Deserialize)]
struct Notice {
    env: String,
    version: u64,
    #[allow(dead_code)]
    digest: String,
}

/// The channel of an environment's notices.
pub(crate) fn channel(prefix: &str, env: &str) -> String {
    format!("{prefix}:env:{env}")
}

/// Checks a Redis URL without echoing it (it may hold a password).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    const SHAPE: &str = "redis://[user:password@]host:port[/db] or rediss://... for TLS";
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!("the Redis URL must be {SHAPE}"));
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        format!(
            "the Redis URL is not usable ({:?}); expected {SHAPE}",
            e.kind()
        )
    })
}

/// Reads one message; true when it was a notice for `env`.
fn handle(inner: &Inner, env: &str, payload: &[u8]) -> bool {
    if payload.len() > MAX_NOTICE_BYTES {
        return false;
    }
    match serde_json::from_slice::<Notice>(payload) {
        Ok(n) if n.env == env => {
            debug!(version = n.version, "change notice");
            inner.notice(n.version);
            true
        }
        _ => false,
    }
}

/// Runs until the client is closed or dropped.
pub(crate) async fn listen(inner: Arc<Inner>, url: String, prefix: String) {
    // rediss:// uses rustls with ring; a provider installed by the
    // application stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = inner.config.environment.clone();
    let channel = channel(&prefix, &env);
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(e) => {
            // Checked by the builder; polling goes on without notices.
            error!(error = ?e.kind(), "the Redis URL is not usable; no change notices");
            return;
        }
    };
    let mut stop = inner.stop.subscribe();
    let timeout = inner.config.request_timeout;
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let subscribed = tokio::select! {
            r = tokio::time::timeout(timeout, subscribe) => r,
            _ = stop.changed() => return,
        };
        match subscribed {
            Ok(Ok(pubsub)) => {
                if failures > 0 {
                    info!(channel = %channel, "subscribed to change notices again");
                } else {
                    info!(channel = %channel, "subscribed to change notices");
                }
                failures = 0;
                inner.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
                // Notices sent while unsubscribed are lost: one ordinary
                // poll catches up.
                inner.nudge.notify_one();
                let (mut sink, mut stream) = pubsub.split();
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            if !handle(&inner, &env, msg.get_payload_bytes()) {
                                inner.counters.notices_ignored.fetch_add(1, Ordering::Relaxed);
                                debug!("a message on the change channel was ignored");
                            }
                        }
                        _ = ping.tick() => {
                            let alive = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                            if !matches!(alive, Ok(Ok(_))) {
                                break;
                            }
                        }
                        _ = stop.changed() => return,
                    }
                }
                warn!(channel = %channel, "the Redis subscription was lost; reconnecting (polling goes on)");
            }
            Ok(Err(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                error!(error = %e, "Redis refused the credentials in the Redis URL; no change notices (polling goes on)");
            }
            Ok(Err(e)) => {
                if failures < 3 || failures.is_multiple_of(16) {
                    warn!(error = %e, "cannot subscribe to change notices; retrying (polling goes on)");
                }
            }
            Err(_) => {
                if failures < 3 || failures.is_multiple_of(16) {
                    warn!("subscribing to change notices timed out; retrying (polling goes on)");
                }
            }
        }
        failures = failures.saturating_add(1);
        let exp = failures.min(8);
        let pause = Duration::from_millis(100)
            .saturating_mul(1 << exp)
            .min(inner.config.max_backoff);
        let pause = pause.mul_f64(0.8 + fastrand::f64() * 0.4);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_echoing_them() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("rediss://:pw@127.0.0.1:6380/1").is_ok());
        let e = check_url("http://secret-host:1").unwrap_err();
        assert!(!e.contains("secret-host"), "{e}");
        assert!(check_url("redis://:secretpw@").is_err());
    }
}

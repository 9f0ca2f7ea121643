//! The poller: one task per client. It asks one endpoint at a time for the
//! environment's snapshot, with the node's long-poll (`min_version` and
//! `wait`) and `If-None-Match`; it moves to the next endpoint on an error,
//! a timeout or an answer older than what it has, backing off with jitter;
//! it never installs an older version, and keeps the last good snapshot on
//! disk.
//!
//! A change notice (feature `redis`) records the announced version and
//! wakes the poller: a sleeping poller asks at once with `min_version` set
//! to it; a long-poll in flight that has not brought it within a short
//! grace is abandoned for another node. A notice poll waits at most
//! [`NOTICE_WAIT`] for the version and then takes whatever the node has,
//! so a forged notice (a version never published) costs one bounded poll,
//! a flood of them delays a real change by at most that wait, and none
//! changes what is served: data only comes from a node's snapshot.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pulseplane_core::usage::UsageReport;
use tracing::{Instrument, debug, info_span, warn};

use crate::client::{Inner, Loaded, Source, parse_snapshot};

/// What one poll brought.
enum Outcome {
    /// A newer snapshot, installed.
    Updated,
    /// 304, or the version the client has.
    Current,
    /// An older version than the client has: try another node.
    Behind(u64),
    /// The node does not know the environment (yet).
    Unknown,
    Failed(String),
    /// A change notice announced a version that the long-poll in flight
    /// did not bring within the grace: ask another node.
    Overdue,
}

/// How long a poll made for a change notice waits for the announced
/// version.
pub(crate) const NOTICE_WAIT: Duration = Duration::from_secs(2);
/// How long a long-poll in flight may take to bring the version a notice
/// announced before the poller asks another node.
const NOTICE_GRACE: Duration = Duration::from_millis(300);

/// What one request asks the node for.
struct Ask {
    /// `?min_version=`: answer once the node has this version.
    min_version: Option<u64>,
    /// `&wait=`: how long the node may hold the request (0: no long-poll).
    wait: Duration,
    /// Asked for by a change notice.
    notice: bool,
}

/// The next request: the version a change notice announced, else the
/// next version (long-poll), else a plain poll.
fn plan(inner: &Inner, current: &Loaded) -> Ask {
    let cfg = &inner.config;
    let wanted = inner.wanted.swap(0, Ordering::Relaxed);
    if wanted > current.version {
        let wait = if cfg.long_poll {
            NOTICE_WAIT.min(cfg.long_poll_wait)
        } else {
            NOTICE_WAIT
        };
        return Ask {
            min_version: Some(wanted),
            wait,
            notice: true,
        };
    }
    if cfg.long_poll {
        // From a node: wait for the next version. From local data: wait for
        // a node that has at least that version.
        let min = if current.source == Source::Node {
            current.version + 1
        } else {
            current.version
        };
        Ask {
            min_version: Some(min),
            wait: cfg.long_poll_wait,
            notice: false,
        }
    } else {
        Ask {
            min_version: None,
            wait: Duration::ZERO,
            notice: false,
        }
    }
}

/// Returns once a change notice announced a version that, after the grace,
/// the client still does not have.
async fn overdue(inner: &Inner) {
    loop {
        inner.nudge.notified().await;
        tokio::time::sleep(NOTICE_GRACE).await;
        if inner.wanted.load(Ordering::Relaxed) > inner.current.load().version {
            return;
        }
    }
}

/// Adds `more` into `into`.
pub(crate) fn merge_usage(into: &mut UsageReport, more: UsageReport) {
    for (flag, variants) in more.flags {
        let slot = into.flags.entry(flag).or_default();
        for (variant, n) in variants {
            *slot.entry(variant).or_default() += n;
        }
    }
    into.unknown += more.unknown;
}

/// Runs until the client is closed or dropped.
pub(crate) async fn run(inner: Arc<Inner>, http: reqwest::Client) {
    let mut stop = inner.stop.subscribe();
    let endpoints = inner.config.endpoints.clone();
    if endpoints.is_empty() {
        return;
    }
    let mut index = 0usize;
    let mut etag: Option<String> = None;
    let mut failures = 0u32;
    // Consecutive answers older than local (cache or bootstrap) data.
    let mut behind_streak = 0usize;
    loop {
        if *stop.borrow() {
            return;
        }
        let endpoint = &endpoints[index % endpoints.len()];
        let span =
            info_span!("pulseplane.poll", endpoint = %endpoint, env = %inner.config.environment);
        // Local data that every node has answered older than, twice round,
        // is not what this cluster serves (say, an environment re-created,
        // or a bootstrap file from elsewhere): the nodes' version wins.
        let accept_older = behind_streak >= 2 * endpoints.len();
        let started = std::time::Instant::now();
        let ask = plan(&inner, &inner.current.load());
        let outcome = tokio::select! {
            o = poll_once(&inner, &http, endpoint, &mut etag, accept_older, &ask).instrument(span) => o,
            // Only a regular long-poll is abandoned for a notice: a notice
            // poll always runs to its end (at most NOTICE_WAIT), when the
            // node answers with whatever it has, so a flood of forged
            // notices cannot hold back a real change.
            () = overdue(&inner), if inner.config.long_poll && !ask.notice => Outcome::Overdue,
            _ = stop.changed() => return,
        };
        // A regular wait may end early for a change notice; a backoff may
        // not (a flood of notices must not defeat it).
        let nudgeable = matches!(outcome, Outcome::Updated | Outcome::Current);
        if !matches!(outcome, Outcome::Behind(_)) {
            behind_streak = 0;
        }
        let pause = match outcome {
            Outcome::Updated | Outcome::Current => {
                failures = 0;
                let quick = started.elapsed() < ask.wait / 2;
                if inner.config.long_poll && !(quick && matches!(outcome, Outcome::Current)) {
                    // The node held the request until a change or its wait
                    // ran out: ask again at once.
                    Duration::ZERO
                } else {
                    // Polling, or a node that answered "no change" without
                    // holding the request: wait a poll interval.
                    jittered(inner.config.poll_interval, inner.config.jitter)
                }
            }
            Outcome::Overdue => {
                debug!(endpoint = %endpoint, "a change notice announced a version this node has not brought; asking another");
                if endpoints.len() > 1 {
                    index += 1;
                    inner.counters.failovers.fetch_add(1, Ordering::Relaxed);
                }
                Duration::ZERO
            }
            Outcome::Behind(v) => {
                inner.counters.behind.fetch_add(1, Ordering::Relaxed);
                debug!(endpoint = %endpoint, version = v, "node is behind; trying another");
                if inner.current.load().source != Source::Node {
                    behind_streak += 1;
                }
                failures += 1;
                if endpoints.len() > 1 {
                    index += 1;
                    inner.counters.failovers.fetch_add(1, Ordering::Relaxed);
                }
                backoff(&inner, failures)
            }
            Outcome::Unknown | Outcome::Failed(_) => {
                if let Outcome::Failed(e) = &outcome {
                    warn!(endpoint = %endpoint, error = %e, "poll failed");
                } else {
                    warn!(endpoint = %endpoint, "the node does not know the environment");
                }
                inner.counters.errors.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                if endpoints.len() > 1 {
                    index += 1;
                    inner.counters.failovers.fetch_add(1, Ordering::Relaxed);
                }
                backoff(&inner, failures)
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = inner.nudge.notified(), if nudgeable => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Exponential backoff from 100 ms with jitter, at most the poll interval
/// and the max backoff. After a failure, each other node is tried once at
/// once when there are several.
fn backoff(inner: &Inner, failures: u32) -> Duration {
    let n = u32::try_from(inner.config.endpoints.len()).unwrap_or(u32::MAX);
    if failures < n && n > 1 {
        return Duration::ZERO;
    }
    let exp = failures.saturating_sub(n).min(16);
    let base = Duration::from_millis(100).saturating_mul(1 << exp);
    let cap = inner
        .config
        .max_backoff
        .min(inner.config.poll_interval.max(Duration::from_millis(100)));
    jittered(base.min(cap), inner.config.jitter).min(cap)
}

/// `d` varied at random by ±`jitter` (0 to 1).
fn jittered(d: Duration, jitter: f64) -> Duration {
    let f = 1.0 + jitter.clamp(0.0, 1.0) * (fastrand::f64() * 2.0 - 1.0);
    Duration::try_from_secs_f64(d.as_secs_f64() * f).unwrap_or(d)
}

/// The largest decompressed snapshot accepted.
const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

async fn poll_once(
    inner: &Inner,
    http: &reqwest::Client,
    endpoint: &str,
    etag: &mut Option<String>,
    accept_older: bool,
    ask: &Ask,
) -> Outcome {
    let cfg = &inner.config;
    let current = inner.current.load_full();
    let from_node = current.source == Source::Node;
    let mut url = format!(
        "{endpoint}/v1/sdk/environments/{}/snapshot",
        cfg.environment
    );
    let mut timeout = cfg.request_timeout;
    if let Some(min) = ask.min_version {
        url.push_str(&format!(
            "?min_version={min}&wait={}ms",
            ask.wait.as_millis()
        ));
        timeout = timeout.saturating_add(ask.wait);
    }
    let mut req = http
        .get(&url)
        .timeout(timeout)
        .header("accept-encoding", "gzip")
        .header("x-pulseplane-instance", &cfg.instance_id)
        .header("x-pulseplane-have-version", current.version);
    if !cfg.sdk_key.is_empty() {
        req = req.bearer_auth(&cfg.sdk_key);
    }
    if let (true, Some(tag)) = (from_node, etag.as_deref()) {
        req = req.header("if-none-match", tag);
    }
    let response = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let status = response.status().as_u16();
    let new_etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let gzip = response
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    match status {
        304 => {
            inner.counters.not_modified.fetch_add(1, Ordering::Relaxed);
            inner.touch();
            inner.announce_ready();
            return Outcome::Current;
        }
        200 => {}
        404 => return Outcome::Unknown,
        s => return Outcome::Failed(format!("HTTP {s}")),
    }
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let bytes = if gzip {
        let mut out = Vec::with_capacity(body.len().saturating_mul(8));
        let mut reader = flate2::read::GzDecoder::new(&body[..]).take(MAX_SNAPSHOT_BYTES + 1);
        if let Err(e) = reader.read_to_end(&mut out) {
            inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Outcome::Failed(format!("gzip body: {e}"));
        }
        if out.len() as u64 > MAX_SNAPSHOT_BYTES {
            inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Outcome::Failed("the snapshot is larger than 256 MiB".into());
        }
        out
    } else {
        body.to_vec()
    };
    let parsed = match parse_snapshot(&bytes) {
        Ok(v) => v,
        Err(e) => {
            inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            warn!(endpoint = %endpoint, error = %e, "snapshot rejected; the last good one stays in force");
            return Outcome::Failed(format!("snapshot rejected: {e}"));
        }
    };
    if parsed.snapshot.env != cfg.environment {
        inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Outcome::Failed(format!("snapshot of environment {:?}", parsed.snapshot.env));
    }
    let version = parsed.snapshot.version;
    // Never go back in version; from local data, a node's snapshot of the
    // same version takes over (it is fresh), and so does an older one once
    // every node has said so (`accept_older`).
    let newer =
        version > current.version || (!from_node && (version == current.version || accept_older));
    if !newer {
        if version < current.version {
            return Outcome::Behind(version);
        }
        inner.counters.unchanged.fetch_add(1, Ordering::Relaxed);
        inner.touch();
        inner.announce_ready();
        return Outcome::Current;
    }
    if version < current.version {
        warn!(
            version,
            local = current.version,
            "every node serves an older version than the local data; taking the nodes' version"
        );
    }
    *etag = new_etag;
    inner.touch();
    inner.install(Loaded::new(parsed, Source::Node));
    inner.counters.updated.fetch_add(1, Ordering::Relaxed);
    // The cache is written before readiness is announced, so a ready
    // client always has its snapshot on disk.
    if let Some(path) = cfg.cache_file.clone() {
        let written = tokio::task::spawn_blocking(move || write_atomic(&path, &bytes)).await;
        if let Ok(Err(e)) = written {
            warn!(error = %e, "writing the cache file failed");
        }
    } else {
        drop(bytes);
    }
    inner.announce_ready();
    crate::client::release_freed_memory();
    Outcome::Updated
}

/// Writes `bytes` to `path` through a synced temporary file and a rename,
/// so a crash leaves the old file or the new one, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

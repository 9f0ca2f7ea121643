//! The node's metrics, served at `/metrics` in the Prometheus text format.
//!
//! Counters are plain atomics that the components bump; gauges that the
//! node can read at scrape time (Raft's term and indexes, environment
//! versions) are read then, so they cost nothing between scrapes.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges kept by the node's components.
#[derive(Debug, Default)]
pub struct Metrics {
    pub redis: RedisMetrics,
}

/// The Redis change-notice publisher.
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// Notices published to Redis.
    pub sent: AtomicU64,
    /// Notices Redis had already published for that version (another
    /// node's), so not sent again.
    pub duplicate: AtomicU64,
    /// Notices dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Notices whose publish failed (Redis down, slow or refusing).
    pub failed: AtomicU64,
    /// Connection attempts refused for bad credentials.
    pub auth_failures: AtomicU64,
    /// Connection attempts that failed otherwise.
    pub connect_failures: AtomicU64,
    /// 1 while connected, else 0.
    pub connected: AtomicU64,
    /// Notices waiting in the queue.
    pub queued: AtomicU64,
}

/// A gauge read at scrape time: a Raft or environment figure.
#[derive(Clone)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
    /// `(labels, value)`; labels are `key="value"` pairs, already escaped.
    pub values: Vec<(String, f64)>,
}

impl Sample {
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Sample {
        Sample {
            name,
            help,
            kind: "gauge",
            values: vec![(String::new(), value)],
        }
    }

    pub fn labelled(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        values: Vec<(String, f64)>,
    ) -> Sample {
        Sample {
            name,
            help,
            kind,
            values,
        }
    }
}

/// `value` escaped for a label value: backslash, double quote, newline.
pub fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn get(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

impl Metrics {
    /// The exposition text: this registry's counters, then `samples`.
    pub fn render(&self, samples: &[Sample]) -> String {
        let r = &self.redis;
        let mut all = vec![
            Sample::labelled(
                "pulseplane_redis_notices_total",
                "Change notices by outcome: sent; duplicate (another node had sent that version); dropped (queue full); failed (Redis down, slow or refusing).",
                "counter",
                vec![
                    ("outcome=\"sent\"".into(), get(&r.sent)),
                    ("outcome=\"duplicate\"".into(), get(&r.duplicate)),
                    ("outcome=\"dropped\"".into(), get(&r.dropped)),
                    ("outcome=\"failed\"".into(), get(&r.failed)),
                ],
            ),
            Sample::labelled(
                "pulseplane_redis_connect_failures_total",
                "Failed connection attempts to Redis by reason: auth (credentials refused) or other.",
                "counter",
                vec![
                    ("reason=\"auth\"".into(), get(&r.auth_failures)),
                    ("reason=\"other\"".into(), get(&r.connect_failures)),
                ],
            ),
            Sample::gauge(
                "pulseplane_redis_connected",
                "1 while the change-notice publisher is connected to Redis.",
                get(&r.connected),
            ),
            Sample::gauge(
                "pulseplane_redis_queue_length",
                "Change notices waiting to be published.",
                get(&r.queued),
            ),
        ];
        all.extend_from_slice(samples);
        let mut out = String::with_capacity(4096);
        for s in &all {
            let _ = writeln!(out, "# HELP {} {}", s.name, s.help);
            let _ = writeln!(out, "# TYPE {} {}", s.name, s.kind);
            for (labels, value) in &s.values {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", s.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {value}", s.name);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::default();
        m.redis.sent.fetch_add(3, Ordering::Relaxed);
        let text = m.render(&[Sample::labelled(
            "pulseplane_environment_version",
            "The published version.",
            "gauge",
            vec![(format!("env=\"{}\"", label_value("a\"b")), 7.0)],
        )]);
        assert!(text.contains("pulseplane_redis_notices_total{outcome=\"sent\"} 3\n"));
        assert!(text.contains("# TYPE pulseplane_redis_connected gauge\n"));
        assert!(text.contains("pulseplane_environment_version{env=\"a\\\"b\"} 7\n"));
    }
}

//! The node's metrics, served at `/metrics` in the Prometheus text format.
//!
//! Counters are plain atomics that the components bump; gauges that the
//! node can read at scrape time (Raft's term and indexes, environment
//! versions) are read then, so they cost nothing between scrapes.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, RwLock};

use pulseplane_core::Permission;
pub use pulseplane_raft_store::metrics::{Histogram, LogMetrics};

use crate::identity::AuthFailure;
use crate::raft::eager::EagerMetrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters and gauges kept by the node's components.
#[derive(Debug, Default)]
pub struct Metrics {
    pub redis: RedisMetrics,
    pub api: ApiMetrics,
    pub access: AccessMetrics,
    /// The Raft log's WAL sync and append latencies.
    pub log: Arc<LogMetrics>,
    /// Times this node saw the leader change (including to none).
    pub leader_changes: AtomicU64,
    /// Snapshot chunks received from a leader.
    pub snapshot_chunks: AtomicU64,
    /// A leader's entries sent to the voters before it synced them.
    pub eager: Arc<EagerMetrics>,
}

/// Renders `h` as the `_bucket`, `_sum` and `_count` lines of `name`, with
/// `labels` (may be empty) in front of `le`.
fn render_histogram(h: &Histogram, name: &str, labels: &str, out: &mut String) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut total = 0;
    for (le, n) in h.cumulative() {
        total = n;
        let le = le.map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let sum = h.sum_seconds();
    if labels.is_empty() {
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    } else {
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {total}"
        );
    }
}

/// Requests and their latency by route (the path template, such as
/// `/v1/environments/{env}/flags/{key}`), method and status.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// route → (method, stats); looked up without allocating.
    routes: RwLock<HashMap<String, Vec<(String, RouteStats)>>>,
}

#[derive(Debug, Default)]
struct RouteStats {
    latency: Histogram,
    /// By status code, 100 to 599.
    statuses: RouteStatuses,
}

#[derive(Debug)]
struct RouteStatuses([AtomicU64; 500]);

impl Default for RouteStatuses {
    fn default() -> Self {
        RouteStatuses(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl ApiMetrics {
    /// Counts one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        let count = |stats: &RouteStats| {
            stats.latency.observe(took);
            if let Some(c) = status
                .checked_sub(100)
                .and_then(|i| stats.statuses.0.get(usize::from(i)))
            {
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        {
            let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, stats)) = routes
                .get(route)
                .and_then(|ms| ms.iter().find(|(m, _)| m == method))
            {
                count(stats);
                return;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let methods = routes.entry(route.to_owned()).or_default();
        if !methods.iter().any(|(m, _)| m == method) {
            methods.push((method.to_owned(), RouteStats::default()));
        }
        if let Some((_, stats)) = methods.iter().find(|(m, _)| m == method) {
            count(stats);
        }
    }

    fn render(&self, out: &mut String) {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(&str, &str, &RouteStats)> = routes
            .iter()
            .flat_map(|(r, ms)| ms.iter().map(move |(m, s)| (r.as_str(), m.as_str(), s)))
            .collect();
        all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out.push_str("# HELP pulseplane_http_requests_total Answered requests by route, method and status.\n");
        out.push_str("# TYPE pulseplane_http_requests_total counter\n");
        for (route, method, stats) in &all {
            for (i, c) in stats.statuses.0.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "pulseplane_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {n}",
                        label_value(route),
                        label_value(method),
                        i + 100
                    );
                }
            }
        }
        out.push_str("# HELP pulseplane_http_request_duration_seconds Time to answer, by route and method (long-polls include their wait).\n");
        out.push_str("# TYPE pulseplane_http_request_duration_seconds histogram\n");
        for (route, method, stats) in &all {
            let labels = format!(
                "route=\"{}\",method=\"{}\"",
                label_value(route),
                label_value(method)
            );
            render_histogram(
                &stats.latency,
                "pulseplane_http_request_duration_seconds",
                &labels,
                out,
            );
        }
    }
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
}

/// Refused requests: the local audit stream's counters.
#[derive(Debug, Default)]
pub struct AccessMetrics {
    /// By [`AuthFailure`] reason.
    failures: [AtomicU64; AuthFailure::ALL.len()],
    /// By permission, in [`Permission::ALL`] order.
    denied: [AtomicU64; Permission::ALL.len()],
}

impl AccessMetrics {
    pub fn failed(&self, why: AuthFailure) {
        if let Some(i) = AuthFailure::ALL.iter().position(|f| *f == why) {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn denied(&self, permission: Permission) {
        if let Some(i) = Permission::ALL.iter().position(|p| *p == permission) {
            self.denied[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn samples(&self) -> [Sample; 2] {
        [
            Sample::labelled(
                "pulseplane_auth_failures_total",
                "Requests refused with 401 (no, malformed, expired or forged credential), by reason.",
                "counter",
                AuthFailure::ALL
                    .iter()
                    .zip(&self.failures)
                    .map(|(f, n)| (format!("reason=\"{}\"", f.reason()), get(n)))
                    .collect(),
            ),
            Sample::labelled(
                "pulseplane_access_denied_total",
                "Requests refused with 403 (known caller without the permission), by permission.",
                "counter",
                Permission::ALL
                    .iter()
                    .zip(&self.denied)
                    .map(|(p, n)| (format!("permission=\"{}\"", p.name()), get(n)))
                    .collect(),
            ),
        ]
    }
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
            Sample::labelled(
                "pulseplane_raft_leader_changes_total",
                "Times this node saw the leader change (to another node or to none).",
                "counter",
                vec![(String::new(), get(&self.leader_changes))],
            ),
            Sample::labelled(
                "pulseplane_raft_snapshot_chunks_received_total",
                "Snapshot chunks received from a leader (a follower catching up by snapshot).",
                "counter",
                vec![(String::new(), get(&self.snapshot_chunks))],
            ),
            Sample::labelled(
                "pulseplane_raft_eager_appends_total",
                "A leader's new entries sent to a voter before the leader synced them, by outcome: accepted, rejected (the voter holds a newer vote, or lacks the entry before), failed (unreachable, timed out), skipped (the voter's previous one was still out).",
                "counter",
                vec![
                    ("outcome=\"accepted\"".into(), get(&self.eager.accepted)),
                    ("outcome=\"rejected\"".into(), get(&self.eager.rejected)),
                    ("outcome=\"failed\"".into(), get(&self.eager.failed)),
                    ("outcome=\"skipped\"".into(), get(&self.eager.skipped)),
                ],
            ),
            Sample::labelled(
                "pulseplane_raft_eager_covered_total",
                "Replication requests not sent because the voter had accepted their entries from eager replication (answered from that acceptance).",
                "counter",
                vec![(String::new(), get(&self.eager.covered))],
            ),
        ];
        all.extend(self.access.samples());
        all.extend_from_slice(samples);
        let mut out = String::with_capacity(16 * 1024);
        self.api.render(&mut out);
        out.push_str("# HELP pulseplane_raft_fsync_duration_seconds One sync of the Raft log's WAL (it may cover many appends).\n");
        out.push_str("# TYPE pulseplane_raft_fsync_duration_seconds histogram\n");
        render_histogram(
            &self.log.fsync,
            "pulseplane_raft_fsync_duration_seconds",
            "",
            &mut out,
        );
        out.push_str("# HELP pulseplane_raft_append_duration_seconds One Raft log append, from the call until it is synced.\n");
        out.push_str("# TYPE pulseplane_raft_append_duration_seconds histogram\n");
        render_histogram(
            &self.log.append,
            "pulseplane_raft_append_duration_seconds",
            "",
            &mut out,
        );
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

    #[test]
    fn requests_are_counted_by_route_and_status_with_latency() {
        let m = Metrics::default();
        let route = "/v1/environments/{env}";
        m.api.observe(route, "GET", 200, Duration::from_millis(3));
        m.api.observe(route, "GET", 200, Duration::from_secs(100));
        m.api.observe(route, "GET", 404, Duration::from_micros(100));
        m.api.observe(route, "GET", 42, Duration::ZERO);
        let text = m.render(&[]);
        assert!(text.contains(
            "pulseplane_http_requests_total{route=\"/v1/environments/{env}\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(text.contains("status=\"404\"} 1\n"));
        let base = "pulseplane_http_request_duration_seconds_bucket{route=\"/v1/environments/{env}\",method=\"GET\",";
        assert!(
            text.contains(&format!("{base}le=\"0.0005\"}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!("{base}le=\"0.005\"}} 3\n")));
        assert!(text.contains(&format!("{base}le=\"+Inf\"}} 4\n")));
        assert!(text.contains("pulseplane_http_request_duration_seconds_count{route=\"/v1/environments/{env}\",method=\"GET\"} 4\n"));
    }
}

//! Latency histograms kept by the store (and used by the node for its own):
//! fixed buckets of atomic counters, cheap enough for every append.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the buckets; one more bucket is +Inf.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// `(upper bound, observations at or under it)` per bucket, `None` for
    /// +Inf (whose count is the total).
    pub fn cumulative(&self) -> Vec<(Option<f64>, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                total += c.load(Ordering::Relaxed);
                (BUCKETS.get(i).copied(), total)
            })
            .collect()
    }

    /// The sum of all observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// The log store's latencies.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// One WAL sync (fsync), which may cover many appends.
    pub fsync: Histogram,
    /// One append, from the call to its flush callback (written, then
    /// synced): what a log write costs the Raft core.
    pub append: Histogram,
    /// The last committed log index Raft saved (0 before any).
    pub committed: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let c = h.cumulative();
        assert_eq!(c[0], (Some(0.0005), 1));
        assert_eq!(c[3], (Some(0.005), 2));
        assert_eq!(c.last(), Some(&(None, 3)));
        assert!((h.sum_seconds() - 100.0031).abs() < 1e-9);
    }
}

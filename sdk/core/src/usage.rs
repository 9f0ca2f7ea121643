//! Usage counting as an SDK does it: one relaxed atomic add per evaluation,
//! counters laid out per flag and variant when a flag set is compiled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::compile::FlagSet;
use crate::eval::EvaluationDetails;

/// Counters for one compiled flag set.
#[derive(Debug)]
pub struct UsageCounters {
    /// Start of each flag's counters in `counts`.
    offsets: Box<[u32]>,
    /// Per flag: one counter per variant, then one for "caller's default".
    counts: Box<[AtomicU64]>,
    unknown: AtomicU64,
}

/// Counts taken out of [`UsageCounters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// flag → variant → count; the caller's default is counted as `"<default>"`.
    pub flags: BTreeMap<String, BTreeMap<String, u64>>,
    /// Evaluations of keys not in the set.
    pub unknown: u64,
}

/// The key under which evaluations that fell back to the caller's default
/// are reported.
pub const DEFAULT_BUCKET: &str = "<default>";

impl UsageCounters {
    /// Zeroed counters shaped for `set`.
    pub fn new(set: &FlagSet) -> UsageCounters {
        let mut offsets = Vec::with_capacity(set.flags.len());
        let mut n = 0u32;
        for f in &set.flags {
            offsets.push(n);
            n += f.variants.len() as u32 + 1;
        }
        UsageCounters {
            offsets: offsets.into(),
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            unknown: AtomicU64::new(0),
        }
    }

    /// Counts one evaluation.
    #[inline]
    pub fn record<T>(&self, d: &EvaluationDetails<'_, T>) {
        let Some(fi) = d.flag_index else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(&base) = self.offsets.get(fi as usize) else {
            return;
        };
        let slot = match d.variant_index {
            Some(v) => base + u32::from(v),
            None => {
                let end = self
                    .offsets
                    .get(fi as usize + 1)
                    .copied()
                    .unwrap_or(self.counts.len() as u32);
                end - 1
            }
        };
        if let Some(c) = self.counts.get(slot as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the counts so far (resetting them) and names them from `set`,
    /// which must be the set these counters were made for.
    pub fn drain(&self, set: &FlagSet) -> UsageReport {
        let mut report = UsageReport {
            unknown: self.unknown.swap(0, Ordering::Relaxed),
            ..UsageReport::default()
        };
        for (fi, f) in set.flags.iter().enumerate() {
            let Some(&base) = self.offsets.get(fi) else {
                continue;
            };
            let mut per = BTreeMap::new();
            for slot in 0..=f.variants.len() {
                let Some(c) = self.counts.get(base as usize + slot) else {
                    continue;
                };
                let n = c.swap(0, Ordering::Relaxed);
                if n > 0 {
                    let name = f.variants.get(slot).map_or(DEFAULT_BUCKET, |v| &*v.key);
                    per.insert(name.to_owned(), n);
                }
            }
            if !per.is_empty() {
                report.flags.insert(f.key.to_string(), per);
            }
        }
        report
    }
}

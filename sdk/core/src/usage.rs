//! Usage counting as an SDK does it: evaluations by flag and variant.
//!
//! Each evaluating thread counts into its own [`UsageShard`], so a count is
//! a plain load and store on memory no other thread writes (no locked
//! instruction, no shared cache line). A shard's counters are laid out per
//! flag and variant when the flag set is compiled, in pages of
//! [`PAGE_SLOTS`] allocated on first use, so a thread that evaluates a few
//! flags of a large set holds a few pages. [`UsageCounters::drain`] sums
//! every shard made for the set and reports what was counted since the
//! previous drain.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::compile::FlagSet;
use crate::eval::EvaluationDetails;

/// Counters per allocated page of a shard (4 KiB of counters).
pub const PAGE_SLOTS: usize = 512;

/// The counters of one compiled flag set: a registry of per-thread shards.
#[derive(Debug)]
pub struct UsageCounters {
    layout: Arc<Layout>,
    shards: Mutex<Vec<Drained>>,
}

/// Where each flag's counters start; the last slot counts unknown keys.
#[derive(Debug)]
struct Layout {
    /// Start of each flag's counters: one per variant, then one for
    /// "caller's default".
    offsets: Box<[u32]>,
    /// All slots, the unknown-key slot included.
    slots: u32,
}

/// One thread's counters, written only by that thread.
#[derive(Debug)]
struct Pages {
    pages: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

/// A shard and what the last drain read from it.
#[derive(Debug)]
struct Drained {
    pages: Arc<Pages>,
    reported: Vec<Option<Box<[u64]>>>,
    /// Its handle was gone when the drain began: read for the last time.
    orphan: bool,
}

/// A thread's handle for counting into [`UsageCounters`]. It can move to
/// another thread but not be shared (`!Sync`): its counts are not atomic
/// increments.
#[derive(Debug)]
pub struct UsageShard {
    layout: Arc<Layout>,
    pages: Arc<Pages>,
    _one_thread: PhantomData<Cell<()>>,
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
    /// Counters shaped for `set`, with no shard yet.
    pub fn new(set: &FlagSet) -> UsageCounters {
        let mut offsets = Vec::with_capacity(set.flags.len());
        let mut n = 0u32;
        for f in &set.flags {
            offsets.push(n);
            n += f.variants.len() as u32 + 1;
        }
        UsageCounters {
            layout: Arc::new(Layout {
                offsets: offsets.into(),
                slots: n + 1,
            }),
            shards: Mutex::new(Vec::new()),
        }
    }

    /// A new shard for one thread; it stays registered (and its counts
    /// drainable) after the handle is dropped.
    pub fn shard(&self) -> UsageShard {
        let pages = Arc::new(Pages {
            pages: (0..(self.layout.slots as usize).div_ceil(PAGE_SLOTS))
                .map(|_| OnceLock::new())
                .collect(),
        });
        self.lock().push(Drained {
            pages: pages.clone(),
            reported: Vec::new(),
            orphan: false,
        });
        UsageShard {
            layout: self.layout.clone(),
            pages,
            _one_thread: PhantomData,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Drained>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What every shard counted since the last drain, named from `set`,
    /// which must be the set these counters were made for. A shard whose
    /// handle was dropped (its thread ended) is forgotten once drained.
    pub fn drain(&self, set: &FlagSet) -> UsageReport {
        let mut totals = vec![0u64; self.layout.slots as usize];
        let mut shards = self.lock();
        for shard in shards.iter_mut() {
            // A shard whose handle is already gone is read for the last
            // time: no more counts can come. (The handle's drop released
            // its writes; the fence acquires them.)
            shard.orphan = Arc::strong_count(&shard.pages) == 1;
            if shard.orphan {
                std::sync::atomic::fence(Ordering::Acquire);
            }
            shard.reported.resize_with(shard.pages.pages.len(), || None);
            for (p, (page, seen)) in shard
                .pages
                .pages
                .iter()
                .zip(shard.reported.iter_mut())
                .enumerate()
            {
                let Some(page) = page.get() else { continue };
                let seen = seen.get_or_insert_with(|| vec![0; PAGE_SLOTS].into());
                for (i, (c, s)) in page.iter().zip(seen.iter_mut()).enumerate() {
                    let now = c.load(Ordering::Relaxed);
                    if let Some(t) = totals.get_mut(p * PAGE_SLOTS + i) {
                        *t += now.wrapping_sub(*s);
                    }
                    *s = now;
                }
            }
        }
        shards.retain(|shard| !shard.orphan);
        drop(shards);
        let mut report = UsageReport {
            unknown: totals.last().copied().unwrap_or(0),
            ..UsageReport::default()
        };
        for (fi, f) in set.flags.iter().enumerate() {
            let Some(&base) = self.layout.offsets.get(fi) else {
                continue;
            };
            let mut per = BTreeMap::new();
            for slot in 0..=f.variants.len() {
                let n = totals.get(base as usize + slot).copied().unwrap_or(0);
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

impl Layout {
    #[inline]
    fn slot<T>(&self, d: &EvaluationDetails<'_, T>) -> Option<u32> {
        let Some(fi) = d.flag_index else {
            return Some(self.slots - 1);
        };
        let base = *self.offsets.get(fi as usize)?;
        Some(match d.variant_index {
            Some(v) => base + u32::from(v),
            None => {
                let end = self
                    .offsets
                    .get(fi as usize + 1)
                    .copied()
                    .unwrap_or(self.slots - 1);
                end - 1
            }
        })
    }
}

impl UsageShard {
    /// Counts one evaluation.
    #[inline]
    pub fn record<T>(&self, d: &EvaluationDetails<'_, T>) {
        let Some(slot) = self.layout.slot(d) else {
            return;
        };
        let slot = slot as usize;
        let Some(page) = self.pages.pages.get(slot / PAGE_SLOTS) else {
            return;
        };
        let page = page.get_or_init(new_page);
        if let Some(c) = page.get(slot % PAGE_SLOTS) {
            // Only this shard's thread writes the counter (the handle is
            // not `Sync`), so a load and a store lose nothing.
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }
}

#[cold]
fn new_page() -> Box<[AtomicU64]> {
    (0..PAGE_SLOTS).map(|_| AtomicU64::new(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Flag, FlagKind};

    #[test]
    fn shards_are_summed_and_drained_once() {
        let flags: Vec<Flag> = (0..700)
            .map(|i| Flag::new(format!("f{i:03}"), FlagKind::Boolean))
            .collect();
        let set = FlagSet::compile("dev", 1, &flags, &[]).unwrap();
        let counters = UsageCounters::new(&set);
        let ctx = Context::new("u");
        std::thread::scope(|s| {
            for _ in 0..3 {
                let shard = counters.shard();
                let set = &set;
                let ctx = &ctx;
                s.spawn(move || {
                    for _ in 0..1000 {
                        shard.record(&set.bool_details("f000", ctx, true));
                        // A later page.
                        shard.record(&set.bool_details("f650", ctx, true));
                        shard.record(&set.bool_details("nope", ctx, true));
                    }
                });
            }
        });
        assert_eq!(counters.lock().len(), 3);
        let report = counters.drain(&set);
        // The threads' handles are gone: their shards are forgotten.
        assert_eq!(counters.lock().len(), 0);
        assert_eq!(report.unknown, 3000);
        assert_eq!(report.flags["f000"]["off"], 3000);
        assert_eq!(report.flags["f650"]["off"], 3000);
        assert_eq!(report.flags.len(), 2);
        assert_eq!(counters.drain(&set), UsageReport::default());
        let kept = counters.shard();
        kept.record(&set.bool_details("f002", &ctx, true));
        let shard = counters.shard();
        shard.record(&set.bool_details("f001", &ctx, true));
        drop(shard);
        let report = counters.drain(&set);
        assert_eq!(report.flags["f001"]["off"], 1);
        assert_eq!(report.flags["f002"]["off"], 1);
        assert_eq!(counters.lock().len(), 1, "the live shard stays");
        kept.record(&set.bool_details("f002", &ctx, true));
        assert_eq!(counters.drain(&set).flags["f002"]["off"], 1);
    }
}

//! Each thread's view of the clients it evaluates with: the snapshot it
//! last saw and its own usage shard, so that an evaluation reads one
//! generation number instead of taking a guarded load of the shared
//! snapshot pointer, and counts without a locked instruction.
//!
//! A thread notices a new snapshot at its next evaluation (the client's
//! generation moves on when one is installed); until then it keeps the
//! snapshot it last used alive, as a reader holding a guard would.
//! Entries of clients that were dropped are removed the next time the
//! thread refreshes any entry, or when the thread exits.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use pulseplane_core::usage::UsageShard;

use crate::client::{Inner, Loaded};

/// Hands out client ids, which are never reused (unlike addresses).
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// A new client id.
pub(crate) fn next_client_id() -> u64 {
    NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed)
}

struct Entry {
    client: u64,
    alive: Weak<Inner>,
    generation: u64,
    loaded: Arc<Loaded>,
    shard: UsageShard,
}

thread_local! {
    static VIEWS: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the snapshot in force for `inner` and this thread's usage
/// shard for it. Falls back to a guarded load of the shared pointer and
/// the snapshot's shared fallback shard when the thread-local view is
/// unavailable (the thread is exiting, or the view is in use further up
/// the stack).
#[inline]
pub(crate) fn with_view<R>(inner: &Arc<Inner>, f: impl Fn(&Loaded, &UsageShard) -> R) -> R {
    let generation = inner.generation.load(Ordering::Acquire);
    let done = VIEWS.try_with(|cell| {
        let mut views = cell.try_borrow_mut().ok()?;
        let at = match views.iter().position(|e| e.client == inner.id) {
            Some(i) if views[i].generation == generation => i,
            _ => refresh(&mut views, inner, generation),
        };
        let e = views.get(at)?;
        Some(f(&e.loaded, &e.shard))
    });
    if let Ok(Some(r)) = done {
        return r;
    }
    let loaded = inner.current.load_full();
    let mut fallback = loaded
        .fallback_usage
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let shard = fallback.get_or_insert_with(|| loaded.usage.shard());
    f(&loaded, shard)
}

/// Loads the snapshot in force into this thread's entry for `inner`, drops
/// the entries of dropped clients, and returns the entry's position.
#[cold]
fn refresh(views: &mut Vec<Entry>, inner: &Arc<Inner>, generation: u64) -> usize {
    views.retain(|e| e.alive.strong_count() > 0);
    let loaded = inner.current.load_full();
    let entry = Entry {
        client: inner.id,
        alive: Arc::downgrade(inner),
        generation,
        shard: loaded.usage.shard(),
        loaded,
    };
    match views.iter().position(|e| e.client == inner.id) {
        Some(i) => {
            views[i] = entry;
            i
        }
        None => {
            views.push(entry);
            views.len() - 1
        }
    }
}

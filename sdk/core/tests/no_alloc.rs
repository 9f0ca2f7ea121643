//! Evaluating boolean and string flags allocates nothing: rules, segments,
//! rollouts, prerequisites, unknown flags and type mismatches included.
//! (A counting global allocator for this test binary only.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pulseplane_core::{Context, Flag, Segment, Snapshot};
use serde_json::json;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluation_does_not_allocate() {
    let flags: Vec<Flag> = serde_json::from_value(json!([
        {"key": "plain", "kind": "boolean", "default": {"variant": "on"}},
        {"key": "targeted", "kind": "boolean",
         "prerequisites": [{"flag": "plain", "variant": "on"}],
         "rules": [
            {"clauses": [{"attribute": "country", "operator": "in", "values": ["NL", "BE"]},
                         {"attribute": "email", "operator": "ends_with", "values": ["@example.com"]},
                         {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]},
                         {"attribute": "device", "operator": "matches", "values": ["^ipad[0-9]+$"]},
                         {"attribute": "signup", "operator": "after", "values": ["2025-01-01T00:00:00Z"]},
                         {"attribute": "age", "operator": "gte", "values": [18]},
                         {"operator": "in_segment", "values": ["staff"]}],
             "serve": {"rollout": {"variants": [{"variant": "on", "weight": 1}, {"variant": "off", "weight": 1}]}}},
            {"clauses": [{"attribute": "groups", "operator": "contains", "values": ["beta"]}],
             "serve": {"variant": "on"}}
         ]},
        {"key": "theme", "kind": "multivariate", "off_variant": "a",
         "variants": [{"key": "a", "value": "light"}, {"key": "b", "value": "dark"}],
         "default": {"rollout": {"bucket_by": "org", "variants": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 1}]}}}
    ]))
    .unwrap();
    let segments: Vec<Segment> = serde_json::from_value(json!([
        {"key": "staff", "excluded": ["blocked"], "clauses": [{"attribute": "org", "operator": "in", "values": ["acme"]}]}
    ]))
    .unwrap();
    let set = Snapshot::new("e", 1, Some(0), flags, segments)
        .compile()
        .unwrap();
    let ctx = Context::new("user-123456")
        .with("country", "NL")
        .with("email", "ann@example.com")
        .with("app_version", "2.4.1")
        .with("device", "ipad12")
        .with("signup", "2026-03-01T10:00:00Z")
        .with("age", 31i64)
        .with("org", "acme")
        .with("groups", vec!["beta".to_string()]);
    // Warm up (the regex engine fills its per-thread cache on first use).
    let mut served = 0;
    for _ in 0..3 {
        served += usize::from(set.bool_value("targeted", &ctx, false));
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        served += usize::from(set.bool_details("plain", &ctx, false).value);
        served += usize::from(set.bool_details("targeted", &ctx, false).value);
        served += set.string_details("theme", &ctx, "none").value.len();
        served += usize::from(set.bool_details("missing", &ctx, false).value);
        served += usize::from(set.bool_details("theme", &ctx, false).value);
        served += set.string_details("plain", &ctx, "x").value.len();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(served > 0);
    assert_eq!(
        after - before,
        0,
        "evaluation allocated {} times",
        after - before
    );
    let d = set.bool_details("targeted", &ctx, false);
    assert_eq!(d.rule_index, Some(0), "{d:?}");
}

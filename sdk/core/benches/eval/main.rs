//! Evaluation cost per shape, on the peer benchmark's 200-flag set
//! (../shared/anchors/gen_features.py) translated into Pulseplane's format.
//!
//! `cargo bench -p pulseplane-core --bench eval`; set
//! `PULSEPLANE_ANCHOR_FEATURES` to use an existing Unleash-format file and
//! `PULSEPLANE_BENCH_DUMP` to write the translated snapshot to a file.
//! `sdk/core/benches/compare-yggdrasil.sh` runs this and the yggdrasil
//! anchor in one go and prints the ratios.

mod unleash_translate;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pulseplane_core::{Context, FlagSet, Snapshot, UsageCounters};

const USERS: usize = 10_000;

fn features_json() -> String {
    if let Ok(path) = std::env::var("PULSEPLANE_ANCHOR_FEATURES") {
        return std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/anchors/gen_features.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 features")
}

/// The contexts the peer benchmark uses: userId, sessionId, environment,
/// appName, remoteAddress and a region property.
fn contexts() -> Vec<Context> {
    (0..USERS)
        .map(|i| {
            Context::new(format!("user-{i}"))
                .with(
                    "session_id",
                    format!(
                        "sess-{}",
                        (i as u64).wrapping_mul(2_654_435_761) % 1_000_000
                    ),
                )
                .with("environment", "production")
                .with("app_name", "anchors-bench")
                .with("remote_address", "127.0.0.1")
                .with("region", "eu-west-1")
        })
        .collect()
}

fn load() -> FlagSet {
    let features: serde_json::Value =
        serde_json::from_str(&features_json()).expect("features JSON");
    let (flags, segments) = unleash_translate::translate(&features);
    let snap = Snapshot::new("bench", 1, Some(0), flags, segments);
    let bytes = snap.to_json();
    if let Ok(path) = std::env::var("PULSEPLANE_BENCH_DUMP") {
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let (_, set) = Snapshot::load(&bytes).expect("translated snapshot loads");
    eprintln!(
        "flag set: {} flags, snapshot {} bytes",
        set.len(),
        bytes.len()
    );
    set
}

fn report_distribution(set: &FlagSet, ctxs: &[Context]) {
    let on = ctxs
        .iter()
        .filter(|c| set.bool_value("anchor.rollout-50", c, false))
        .count();
    let constrained = ctxs
        .iter()
        .filter(|c| set.bool_value("anchor.constrained", c, false))
        .count();
    let mut variants = std::collections::BTreeMap::new();
    for c in ctxs {
        let d = set.string_details("anchor.variant", c, "");
        *variants
            .entry(d.variant.unwrap_or("<default>"))
            .or_insert(0u32) += 1;
    }
    eprintln!(
        "sanity: rollout-50 on for {:.3}, constrained on for {:.3}, variant split {variants:?}",
        on as f64 / ctxs.len() as f64,
        constrained as f64 / ctxs.len() as f64
    );
}

fn bench(c: &mut Criterion) {
    let set = load();
    let ctxs = contexts();
    report_distribution(&set, &ctxs);
    let usage = UsageCounters::new(&set);
    let shard = usage.shard();
    let mut g = c.benchmark_group("eval");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) % USERS;
        i
    };
    g.bench_function("a_bool_on", |b| {
        b.iter(|| {
            set.bool_details(black_box("anchor.bool-on"), &ctxs[next()], false)
                .value
        })
    });
    g.bench_function("b_rollout50_user", |b| {
        b.iter(|| {
            set.bool_details(black_box("anchor.rollout-50"), &ctxs[next()], false)
                .value
        })
    });
    g.bench_function("c_variant_3way", |b| {
        b.iter(|| {
            set.string_details(black_box("anchor.variant"), &ctxs[next()], "")
                .variant
        })
    });
    g.bench_function("d_constrained_segment_25", |b| {
        b.iter(|| {
            set.bool_details(black_box("anchor.constrained"), &ctxs[next()], false)
                .value
        })
    });
    g.bench_function("e_unknown_flag", |b| {
        b.iter(|| {
            set.bool_details(black_box("no.such.flag"), &ctxs[next()], false)
                .value
        })
    });
    g.bench_function("f_bool_on_plus_usage", |b| {
        b.iter(|| {
            let d = set.bool_details(black_box("anchor.bool-on"), &ctxs[next()], false);
            shard.record(&d);
            d.value
        })
    });
    let keys: Vec<&str> = set.keys().collect();
    let null = serde_json::Value::Null;
    g.bench_function("g_all_flags", |b| {
        b.iter(|| {
            let ctx = &ctxs[next()];
            keys.iter()
                .filter(|k| set.json_details(k, ctx, &null).variant.is_some())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

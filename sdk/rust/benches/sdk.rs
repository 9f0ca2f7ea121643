//! SDK evaluation against raw core evaluation, thread scaling, and the
//! memory of a client holding 10,000 flags.
//!
//!   cargo bench -p pulseplane-sdk --bench sdk
//!
//! - ns per evaluation of three flags of the peer benchmark's 200-flag set
//!   (../shared/anchors/gen_features.py, translated as in the core's
//!   evaluation benchmark), through `FlagSet::bool_details`, through
//!   `FlagSet::bool_details` plus `UsageShard::record` (the counting the
//!   client does), and through `Client::bool_value` (best of 5 runs of
//!   2,000,000 evaluations each);
//! - evaluations per second with 1, 2, 4 and 8 threads sharing one client;
//! - the resident memory (before, after, peak) of a fresh process whose
//!   client loads a 10,000-flag snapshot (each flag with one targeting
//!   rule) that this process wrote.

#[path = "../../core/benches/eval/unleash_translate.rs"]
mod unleash_translate;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulseplane_core::Flag;
use pulseplane_sdk::{Client, Context, Snapshot};
use serde_json::json;

const N: usize = 2_000_000;

fn features() -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/anchors/gen_features.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("features JSON")
}

/// A `/proc/self/status` figure in KiB (`VmRSS:`, `VmHWM:`).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn client_from(dir: &std::path::Path, snap: &Snapshot) -> Client {
    let path = dir.join(format!("bootstrap-{}.json", snap.flags.len()));
    std::fs::write(&path, snap.to_json()).expect("write bootstrap");
    Client::builder("bench")
        .bootstrap_file(&path)
        .start()
        .await
        .expect("client")
}

fn best_of<F: FnMut() -> Duration>(mut f: F) -> Duration {
    (0..5).map(|_| f()).min().unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Some(path) = std::env::var_os("PULSEPLANE_BENCH_RSS_FILE") {
        return rss_only(path.into()).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (flags, segments) = unleash_translate::translate(&features());
    let snap = Snapshot::new("bench", 1, Some(0), flags, segments);
    let (_, set) = Snapshot::load(&snap.to_json()).expect("snapshot loads");
    let client = client_from(dir.path(), &snap).await;
    let contexts: Vec<Context> = (0..1024)
        .map(|i| {
            Context::new(format!("user-{i}"))
                .with("environment", "production")
                .with("app_name", "anchors-bench")
                .with("region", "eu-west-1")
        })
        .collect();

    let counters = pulseplane_core::usage::UsageCounters::new(&set);
    let shard = counters.shard();
    println!(
        "ns per evaluation (best of 5 x {N}), core FlagSet, core plus usage counting, SDK Client:"
    );
    for key in ["anchor.bool-on", "anchor.rollout-50", "anchor.constrained"] {
        let core = best_of(|| {
            let t = Instant::now();
            for i in 0..N {
                black_box(set.bool_details(key, &contexts[i & 1023], false).value);
            }
            t.elapsed()
        });
        let counted = best_of(|| {
            let t = Instant::now();
            for i in 0..N {
                let d = set.bool_details(key, &contexts[i & 1023], false);
                shard.record(&d);
                black_box(d.value);
            }
            t.elapsed()
        });
        let sdk = best_of(|| {
            let t = Instant::now();
            for i in 0..N {
                black_box(client.bool_value(key, &contexts[i & 1023], false));
            }
            t.elapsed()
        });
        let ns = |d: Duration| d.as_nanos() as f64 / N as f64;
        println!(
            "  {key:<20} core {:6.1} ns  core+usage {:6.1} ns  sdk {:6.1} ns  sdk/core {:.2}  sdk/(core+usage) {:.2}",
            ns(core),
            ns(counted),
            ns(sdk),
            ns(sdk) / ns(core),
            ns(sdk) / ns(counted)
        );
    }

    println!("evaluations per second, threads sharing one client:");
    let contexts = Arc::new(contexts);
    for threads in [1usize, 2, 4, 8] {
        let per = N;
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..threads {
                let (client, contexts) = (client.clone(), contexts.clone());
                s.spawn(move || {
                    for i in 0..per {
                        black_box(client.bool_value(
                            "anchor.rollout-50",
                            &contexts[(i + th) & 1023],
                            false,
                        ));
                    }
                });
            }
        });
        let rate = (threads * per) as f64 / t.elapsed().as_secs_f64();
        println!("  {threads} threads: {:.1} M/s", rate / 1e6);
    }

    drop(client);
    // The memory figure comes from a fresh process that does nothing else:
    // this one writes the file, the child only loads it.
    let (path, bytes) = write_big_file(dir.path());
    let out = std::process::Command::new(std::env::current_exe().expect("bench path"))
        .env("PULSEPLANE_BENCH_RSS_FILE", &path)
        .output()
        .expect("run the memory child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!("  (the snapshot file is {} KB)", bytes / 1000);
}

/// Writes a snapshot of 10,000 flags with one targeting rule each.
fn write_big_file(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    let flags: Vec<Flag> = (0..10_000)
        .map(|i| {
            let mut f: Flag = serde_json::from_value(json!({
                "key": format!("flag-{i:05}"),
                "kind": "boolean",
                "description": "a benchmark flag with one rule",
                "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["NL", "DE", "FR"]}],
                           "serve": {"variant": "on"}}],
                "version": 1
            }))
            .expect("flag");
            f.normalize();
            f
        })
        .collect();
    let big = Snapshot::new("bench", 1, Some(0), flags, Vec::new());
    let path = dir.join("bootstrap-10000.json");
    let json = big.to_json();
    std::fs::write(&path, &json).expect("write bootstrap");
    (path, json.len())
}

/// In a fresh process: RSS before and after a client loads the 10,000
/// flags in `path`, and the peak.
async fn rss_only(path: std::path::PathBuf) {
    let before = rss_kib("VmRSS:");
    let client = Client::builder("bench")
        .bootstrap_file(&path)
        .start()
        .await
        .expect("client");
    black_box(client.bool_value("flag-00001", &Context::new("u"), false));
    let after = rss_kib("VmRSS:");
    let peak = rss_kib("VmHWM:");
    println!(
        "10,000 flags, fresh process: RSS {:.1} MiB with the client loaded ({:.1} MiB before it, {:.1} MiB for the client); peak {:.1} MiB",
        after as f64 / 1024.0,
        before as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

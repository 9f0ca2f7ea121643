//! Disk use under a long write load: a 3-node cluster on loopback takes
//! WRITES flag writes (upserts cycling over KEYS flags in one environment,
//! CONCURRENCY at a time, spread over the nodes), and every node's data
//! dir is measured every STEP writes. With snapshots and log compaction
//! (`--snapshot-logs`, `--snapshot-commands`, `--keep-logs`) the size stays
//! bounded by the state plus the log kept between snapshots, whatever the
//! number of writes.
//!
//!   bench-disk [--writes 1000000] [--keys 1000] [--step 100000]
//!              [--concurrency 128] [-- <extra pulseplane-node flags>]
//!
//! The node binary is the one beside this one, or PULSEPLANE_NODE_BIN.
//! Output: text and one `BENCH_JSON {...}` line.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pulseplane_cluster_tests::Cluster;
use serde_json::json;

struct Args {
    writes: usize,
    keys: usize,
    step: usize,
    concurrency: usize,
    node_flags: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        writes: 1_000_000,
        keys: 1000,
        step: 100_000,
        concurrency: 128,
        node_flags: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--" {
            a.node_flags = it.by_ref().collect();
            break;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--writes" => a.writes = n,
            "--keys" => a.keys = n.max(1),
            "--step" => a.step = n.max(1),
            "--concurrency" => a.concurrency = n.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Bytes under `dir`.
fn size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

async fn run(a: Args) -> Result<(), String> {
    let flags: Vec<&str> = a.node_flags.iter().map(String::as_str).collect();
    let mut c = Cluster::start_with(3, &flags).await;
    let leader = c.leader(Duration::from_secs(15)).await;
    c.create_env(leader, "prod").await;
    let urls: Vec<String> = (1..=3).map(|n| c.url(n)).collect();
    let client = c.client.clone();
    let dirs: Vec<_> = (1..=3).map(|n| c.nodes[&n].data_dir.clone()).collect();
    println!(
        "{} writes over {} flags, {} at a time; data dir sizes every {}:",
        a.writes, a.keys, a.concurrency, a.step
    );
    println!(
        "  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}",
        "writes", "node 1", "node 2", "node 3", "write/s"
    );
    let started = Instant::now();
    let mut done = 0usize;
    let mut samples = Vec::new();
    let mut failed = 0usize;
    while done < a.writes {
        let batch = a.step.min(a.writes - done);
        let step_started = Instant::now();
        let from = done;
        failed += futures_util::stream::iter(from..from + batch)
            .map(|n| {
                let client = client.clone();
                let url = urls[n % urls.len()].clone();
                let key = format!("flag-{:05}", n % a.keys);
                async move {
                    let body = json!({"key": key, "kind": "boolean",
                                      "description": format!("write {n}")});
                    match client
                        .put(&url, &format!("/v1/environments/prod/flags/{key}"), &body)
                        .await
                    {
                        Ok((200 | 201, _)) => 0usize,
                        _ => 1,
                    }
                }
            })
            .buffer_unordered(a.concurrency)
            .fold(0usize, |acc, f| async move { acc + f })
            .await;
        done += batch;
        let rate = batch as f64 / step_started.elapsed().as_secs_f64();
        let sizes: Vec<u64> = dirs.iter().map(|d| size(d)).collect();
        println!(
            "  {done:>9}  {:>7.1}Mi  {:>7.1}Mi  {:>7.1}Mi  {rate:>8.0}",
            mib(sizes[0]),
            mib(sizes[1]),
            mib(sizes[2])
        );
        samples.push(
            json!({"writes": done, "mib": sizes.iter().map(|s| mib(*s)).collect::<Vec<_>>(),
                            "writes_per_s": rate.round()}),
        );
    }
    let first_half_max = samples
        .iter()
        .take(samples.len() / 2)
        .flat_map(|s| s["mib"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_f64())
        .fold(0.0f64, f64::max);
    let second_half_max = samples
        .iter()
        .skip(samples.len() / 2)
        .flat_map(|s| s["mib"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_f64())
        .fold(0.0f64, f64::max);
    println!(
        "{} writes in {:.0} s ({} failed); largest data dir {:.1} MiB in the first half, {:.1} MiB in the second",
        done,
        started.elapsed().as_secs_f64(),
        failed,
        first_half_max,
        second_half_max
    );
    println!(
        "BENCH_JSON {}",
        json!({
            "bench": "disk",
            "writes": done,
            "keys": a.keys,
            "failed": failed,
            "node_flags": a.node_flags,
            "samples": samples,
            "max_mib_first_half": first_half_max,
            "max_mib_second_half": second_half_max,
        })
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    pulseplane_cluster_tests::bench_main("bench-disk", args(), run).await
}

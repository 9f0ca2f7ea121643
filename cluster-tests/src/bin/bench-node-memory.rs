//! Node memory with a large state: a 3-node cluster on loopback holding
//! FLAGS flags (each with a targeting rule and a rollout) in each of ENVS
//! environments, plus VERSIONS published versions of history per
//! environment (each later version changes one flag). Reports every node's
//! resident memory (VmRSS) and peak (VmHWM) after loading, after a forced
//! snapshot, and after one node restarts from its snapshot, against the
//! 150 MB target.
//!
//!   bench-node-memory [--flags 10000] [--envs 3] [--versions 1000]
//!                     [--concurrency 64] [--nodes 3]
//!
//! The node binary is the one beside this one, or PULSEPLANE_NODE_BIN.
//! Output: text and one `BENCH_JSON {...}` line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pulseplane_cluster_tests::Cluster;
use serde_json::{Value, json};

const TARGET_MB: f64 = 150.0;
/// How long to wait before measuring: past the nodes' next memory trim.
const SETTLE: Duration = Duration::from_secs(12);

struct Args {
    flags: usize,
    envs: usize,
    versions: usize,
    concurrency: usize,
    nodes: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        flags: 10_000,
        envs: 3,
        versions: 1000,
        concurrency: 64,
        nodes: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--flags" => a.flags = n,
            "--envs" => a.envs = n,
            "--versions" => a.versions = n,
            "--concurrency" => a.concurrency = n.max(1),
            "--nodes" => a.nodes = (n as u64).max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.flags == 0 || a.envs == 0 || a.versions == 0 {
        return Err("--flags, --envs and --versions must be at least 1".into());
    }
    Ok(a)
}

fn flag(i: usize, description: &str) -> Value {
    json!({
        "key": format!("flag-{i:05}"),
        "description": description,
        "kind": "boolean",
        "rules": [{
            "clauses": [
                {"attribute": "country", "operator": "in", "values": ["NL", "BE", "LU", "DE"]},
                {"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]}
            ],
            "serve": {"rollout": {"variants": [
                {"variant": "on", "weight": 25000}, {"variant": "off", "weight": 75000}
            ]}}
        }],
        "default": {"variant": "off"}
    })
}

/// (VmRSS, VmHWM) of a process, in MiB.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

struct Sizes {
    json_bytes: usize,
    gzip_bytes: usize,
    first_plain_ms: f64,
    next_plain_ms: f64,
}

/// Reads an environment's snapshot with gzip, then twice without.
async fn snapshot_sizes(base: &str, env: &str) -> Result<Sizes, String> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/sdk/environments/{env}/snapshot");
    let get = |gzip: bool| {
        let mut r = client
            .get(&url)
            .bearer_auth(pulseplane_cluster_tests::TOKEN);
        if gzip {
            r = r.header("accept-encoding", "gzip");
        }
        async move {
            let started = Instant::now();
            let r = r.send().await.map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("snapshot of {env}: {}", r.status()));
            }
            let len = r.bytes().await.map_err(|e| e.to_string())?.len();
            Ok::<_, String>((len, started.elapsed().as_secs_f64() * 1000.0))
        }
    };
    let (gzip_bytes, _) = get(true).await?;
    let (json_bytes, first_plain_ms) = get(false).await?;
    let (_, next_plain_ms) = get(false).await?;
    Ok(Sizes {
        json_bytes,
        gzip_bytes,
        first_plain_ms,
        next_plain_ms,
    })
}

fn report(c: &mut Cluster, stage: &str) -> Vec<(u64, f64, f64)> {
    let mut out = Vec::new();
    for id in c.running() {
        if let Some((rss, hwm)) = c.nodes[&id].pid().and_then(memory) {
            println!("  {stage:<22} node {id}: RSS {rss:7.1} MiB, peak {hwm:7.1} MiB");
            out.push((id, rss, hwm));
        }
    }
    out
}

async fn run(a: Args) -> Result<(), String> {
    let mut c = Cluster::start(a.nodes).await;
    let leader = c.leader(Duration::from_secs(15)).await;
    let all: Vec<u64> = (1..=a.nodes).collect();
    let urls: Vec<String> = all.iter().map(|n| c.url(*n)).collect();
    let envs: Vec<String> = (0..a.envs).map(|i| format!("env-{i}")).collect();
    for env in &envs {
        c.create_env(leader, env).await;
    }
    println!(
        "loading {} flags in each of {} environments ...",
        a.flags, a.envs
    );
    let started = Instant::now();
    let jobs: Vec<(String, usize)> = envs
        .iter()
        .flat_map(|e| (0..a.flags).map(move |i| (e.clone(), i)))
        .collect();
    let client = c.client.clone();
    let failures = futures_util::stream::iter(jobs.into_iter().enumerate())
        .map(|(n, (env, i))| {
            let client = client.clone();
            let url = urls[n % urls.len()].clone();
            async move {
                let path = format!("/v1/environments/{env}/flags/flag-{i:05}");
                match client.put(&url, &path, &flag(i, "initial")).await {
                    Ok((200 | 201, _)) => 0usize,
                    _ => 1,
                }
            }
        })
        .buffer_unordered(a.concurrency)
        .fold(0usize, |acc, f| async move { acc + f })
        .await;
    if failures > 0 {
        return Err(format!("{failures} flag writes failed"));
    }
    println!(
        "  {} flag writes in {:.1} s",
        a.flags * a.envs,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let histories = envs.iter().map(|env| {
        let client = client.clone();
        let url = c.url(leader);
        let env = env.clone();
        let flags = a.flags;
        let versions = a.versions;
        async move {
            for v in 0..versions {
                if v > 0 {
                    let i = (v * 7919) % flags;
                    let (s, body) = client
                        .put(
                            &url,
                            &format!("/v1/environments/{env}/flags/flag-{i:05}"),
                            &flag(i, &format!("change {v}")),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    if s != 200 {
                        return Err(format!("{env}: change {v}: {s} {body}"));
                    }
                }
                let (s, body) = client
                    .post(
                        &url,
                        &format!("/v1/environments/{env}/publish"),
                        &json!({"message": format!("version {}", v + 1)}),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if s != 200 {
                    return Err(format!("{env}: publish {v}: {s} {body}"));
                }
            }
            Ok::<(), String>(())
        }
    });
    for r in futures_util::future::join_all(histories).await {
        r?;
    }
    println!(
        "  {} versions in each environment in {:.1} s",
        a.versions,
        started.elapsed().as_secs_f64()
    );
    c.converged(&all, Duration::from_secs(120)).await;
    // Let the environment actors build their snapshots, and the nodes
    // hand freed memory back (they do within 10 s of the state going quiet).
    tokio::time::sleep(SETTLE).await;
    println!("memory:");
    let loaded = report(&mut c, "loaded");
    for id in all.clone() {
        let (s, v) = c
            .client
            .post(&c.url(id), "/admin/v1/snapshot", &json!({}))
            .await
            .map_err(|e| e.to_string())?;
        if s != 200 {
            return Err(format!("snapshot on node {id}: {s} {v}"));
        }
        if id == 1 {
            println!(
                "  Raft snapshot: {:.1} MiB",
                v["snapshot_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
            );
        }
    }
    let snapshotted = report(&mut c, "after a snapshot");
    let restarted_id = a.nodes;
    c.restart(restarted_id);
    c.wait_ready(restarted_id, Duration::from_secs(120)).await;
    c.converged(&all, Duration::from_secs(120)).await;
    tokio::time::sleep(SETTLE).await;
    let restarted = report(&mut c, "one node restarted");
    // Last, as it makes node 1 keep one environment's JSON: the snapshot's
    // sizes, and the first and second answers without gzip.
    let sizes = snapshot_sizes(&c.url(1), &envs[0]).await?;
    println!(
        "  snapshot of {}: {} bytes of JSON, {} bytes gzipped; without gzip the first answer took {:.1} ms, the next {:.1} ms",
        envs[0], sizes.json_bytes, sizes.gzip_bytes, sizes.first_plain_ms, sizes.next_plain_ms
    );
    let worst = loaded
        .iter()
        .chain(&snapshotted)
        .chain(&restarted)
        .map(|(_, rss, _)| *rss)
        .fold(0.0f64, f64::max);
    let peak = loaded
        .iter()
        .chain(&snapshotted)
        .chain(&restarted)
        .map(|(_, _, hwm)| *hwm)
        .fold(0.0f64, f64::max);
    println!(
        "largest RSS {worst:.1} MiB (target {TARGET_MB} MB: {}); largest peak {peak:.1} MiB",
        if worst * 1.048576 <= TARGET_MB {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "BENCH_JSON {}",
        json!({
            "bench": "node-memory",
            "flags_per_env": a.flags,
            "envs": a.envs,
            "versions_per_env": a.versions,
            "rss_mib_max": (worst * 10.0).round() / 10.0,
            "peak_mib_max": (peak * 10.0).round() / 10.0,
            "target_mb": TARGET_MB,
            "loaded": loaded.iter().map(|(id, r, _)| json!({"node": id, "rss_mib": r})).collect::<Vec<_>>(),
            "restarted_rss_mib": restarted.iter().find(|(id, _, _)| *id == restarted_id).map(|(_, r, _)| *r),
            "snapshot_json_bytes": sizes.json_bytes,
            "snapshot_gzip_bytes": sizes.gzip_bytes,
            "first_plain_ms": sizes.first_plain_ms,
            "next_plain_ms": sizes.next_plain_ms,
        })
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    pulseplane_cluster_tests::bench_main("bench-node-memory", args(), run).await
}

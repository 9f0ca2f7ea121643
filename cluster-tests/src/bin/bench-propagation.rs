//! Kill-switch propagation: a 3-node cluster (and a `redis-server`) started
//! on loopback, CLIENTS SDK clients spread across the nodes, and a kill
//! switch flipped FLIPS times (kill, restore, kill, ...) in each mode:
//!
//! - `polling`: polling every INTERVAL, no long-poll, no Redis;
//! - `long-poll`: the node holds each poll until the next version;
//! - `redis`: polling every INTERVAL plus Redis change notices.
//!
//! Each flip is timed from the moment its write's 2xx arrived to the moment
//! each client's change listener saw the new value (a client that saw it
//! before the 2xx counts 0). The next flip waits until every client has
//! seen the last one, plus a random pause of up to 500 ms. Reports p50,
//! p99 and max per mode, against the targets (Redis ≤ 50 ms, long-poll
//! ≤ 100 ms, polling ≤ interval + 100 ms).
//!
//!   bench-propagation [--flips 100] [--clients 50] [--interval 5s]
//!                     [--modes polling,long-poll,redis]
//!
//! The node binary is the one beside this one, or PULSEPLANE_NODE_BIN.
//! Output: text and one `BENCH_JSON {...}` line per mode.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, RedisServer, TOKEN, wait_until};
use pulseplane_sdk::Client;
use serde_json::json;

struct Args {
    flips: usize,
    clients: usize,
    interval: Duration,
    modes: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        flips: 100,
        clients: 50,
        interval: Duration::from_secs(5),
        modes: vec!["polling".into(), "long-poll".into(), "redis".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--flips" => a.flips = value.parse().map_err(|_| "--flips: not a number")?,
            "--clients" => a.clients = value.parse().map_err(|_| "--clients: not a number")?,
            "--interval" => {
                let secs: f64 = value
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|_| "--interval: seconds, e.g. 5s")?;
                a.interval = Duration::try_from_secs_f64(secs)
                    .map_err(|_| "--interval: seconds, e.g. 5s")?;
            }
            "--modes" => a.modes = value.split(',').map(str::to_owned).collect(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if let Some(m) = a
        .modes
        .iter()
        .find(|m| !["polling", "long-poll", "redis"].contains(&m.as_str()))
    {
        return Err(format!("unknown mode {m}"));
    }
    if a.flips == 0 || a.clients == 0 {
        return Err("--flips and --clients must be at least 1".into());
    }
    Ok(a)
}

/// When each client saw each environment version.
type Seen = Arc<Mutex<Vec<(usize, u64, Instant)>>>;

async fn start_clients(
    c: &Cluster,
    redis: &RedisServer,
    mode: &str,
    n: usize,
    interval: Duration,
    seen: &Seen,
) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        // Spread across the nodes: each client starts at a different one.
        let endpoints: Vec<String> = (0..3).map(|k| c.url(1 + ((i + k) % 3) as u64)).collect();
        let mut b = Client::builder("prod")
            .endpoints(endpoints)
            .sdk_key(TOKEN)
            .jitter(0.0)
            .poll_interval(interval)
            .stale_after(interval * 4 + Duration::from_secs(60));
        b = match mode {
            "long-poll" => b.long_poll(true),
            "redis" => b.long_poll(false).redis(&redis.url()),
            _ => b.long_poll(false),
        };
        let client = b.start().await.expect("client configuration");
        let sink = seen.clone();
        client.on_change(Some("a"), move |change| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push((
                i,
                change.new_version,
                Instant::now(),
            ));
        });
        clients.push(client);
    }
    clients
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run_mode(c: &Cluster, redis: &RedisServer, a: &Args, mode: &str) -> Result<(), String> {
    let seen: Seen = Arc::default();
    let clients = start_clients(c, redis, mode, a.clients, a.interval, &seen).await;
    let (_, v) = c
        .client
        .get(&c.url(1), "/v1/sdk/environments/prod/snapshot")
        .await
        .map_err(|e| e.to_string())?;
    let current = v["version"].as_u64().unwrap_or(0);
    wait_until(Duration::from_secs(30), "every client ready", || async {
        clients
            .iter()
            .all(|cl| cl.version() >= current)
            .then_some(())
    })
    .await;
    if mode == "redis" {
        wait_until(
            Duration::from_secs(30),
            "every client subscribed",
            || async {
                clients
                    .iter()
                    .all(|cl| cl.metrics().notice_subscriptions >= 1)
                    .then_some(())
            },
        )
        .await;
    }
    // Let long-polls reach the nodes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies: Vec<f64> = Vec::with_capacity(a.flips * a.clients);
    let mut killed = !clients[0].bool_value("a", &pulseplane_sdk::Context::new("u"), true);
    let started = Instant::now();
    for flip in 0..a.flips {
        let node = 1 + (flip % 3) as u64;
        let path = if killed {
            "/v1/environments/prod/flags/a/restore"
        } else {
            "/v1/environments/prod/flags/a/kill"
        };
        let (status, body) = c
            .client
            .post(
                &c.url(node),
                path,
                &json!({"message": "propagation benchmark"}),
            )
            .await
            .map_err(|e| e.to_string())?;
        let acked = Instant::now();
        if status != 200 {
            return Err(format!("{path} on node {node}: {status} {body}"));
        }
        killed = !killed;
        let version = body["env_version"].as_u64().unwrap_or(0);
        let deadline = a.interval * 3 + Duration::from_secs(10);
        let n = a.clients;
        let all = wait_until(deadline, "every client to see the flip", || async {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut at: Vec<Option<Instant>> = vec![None; n];
            for (i, v, t) in s.iter() {
                if *v >= version && at[*i].is_none() {
                    at[*i] = Some(*t);
                }
            }
            at.into_iter().collect::<Option<Vec<Instant>>>()
        })
        .await;
        for t in all {
            latencies.push(t.saturating_duration_since(acked).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=500))).await;
    }
    let elapsed = started.elapsed();
    drop(clients);
    latencies.sort_by(|x, y| x.total_cmp(y));
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    let target = match mode {
        "redis" => 50.0,
        "long-poll" => 100.0,
        _ => a.interval.as_secs_f64() * 1000.0 + 100.0,
    };
    println!(
        "== {mode}: {} flips x {} clients in {:.0} s: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (p99 target {target:.0} ms: {})",
        a.flips,
        a.clients,
        elapsed.as_secs_f64(),
        if p99 <= target { "met" } else { "MISSED" }
    );
    println!(
        "BENCH_JSON {}",
        json!({
            "bench": "propagation", "mode": mode, "flips": a.flips, "clients": a.clients,
            "interval_ms": a.interval.as_millis() as u64, "samples": latencies.len(),
            "p50_ms": p50, "p99_ms": p99, "max_ms": max, "p99_target_ms": target,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-propagation: {e}");
            return ExitCode::from(2);
        }
    };
    let redis = RedisServer::start(None).await;
    let flag = format!("--redis-url={}", redis.url());
    let c = Cluster::start_with(3, &[&flag]).await;
    c.create_env(1, "prod").await;
    let flag_a = json!({"kind": "boolean", "default": {"variant": "on"}});
    if let Err(e) = c.put_and_publish(1, "prod", "a", &flag_a).await {
        eprintln!("bench-propagation: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "3 nodes, redis-server on port {}, {} clients, {} flips per mode, interval {:?}",
        redis.port, a.clients, a.flips, a.interval
    );
    for mode in &a.modes {
        if let Err(e) = run_mode(&c, &redis, &a, mode).await {
            eprintln!("bench-propagation: {mode}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

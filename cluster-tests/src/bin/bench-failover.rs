//! Failover benchmark: on a 3-node cluster, kill -9 the leader and time how
//! long until a write through a surviving node succeeds again, over
//! repeated trials (the killed node is restarted between trials). Prints
//! each trial, p50/p99/max, and one `BENCH_JSON` line.
//!
//!   cargo build --release -p pulseplane-node -p pulseplane-cluster-tests
//!   PULSEPLANE_NODE_BIN=target/release/pulseplane-node \
//!     target/release/bench-failover [trials]

use std::time::{Duration, Instant};

use pulseplane_cluster_tests::Cluster;
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let mut samples = Vec::new();
    for trial in 0..trials {
        let leader = c.leader(Duration::from_secs(10)).await;
        let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let killed = Instant::now();
        c.kill9(leader);
        let mut n = 0usize;
        let took = loop {
            let target = survivors[n % survivors.len()];
            n += 1;
            let url = format!(
                "{}/v1/environments/prod/flags/failover-{trial}",
                c.url(target)
            );
            let idem = format!("failover-{trial}");
            let answer = tokio::time::timeout(
                Duration::from_millis(500),
                c.client.send(
                    reqwest::Method::PUT,
                    &url,
                    &[("idempotency-key", &idem)],
                    Some(&json!({"kind": "boolean"})),
                ),
            )
            .await;
            if let Ok(Ok((s, _, _))) = answer
                && (200..300).contains(&s)
            {
                break killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(30) {
                panic!("no write succeeded within 30 s of killing node {leader}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        println!(
            "trial {trial}: killed leader {leader}, writes succeeded again after {} ms",
            took.as_millis()
        );
        samples.push(took.as_secs_f64() * 1000.0);
        c.spawn(leader);
        c.wait_ready(leader, Duration::from_secs(30)).await;
        c.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((p * (sorted.len() - 1) as f64).round()) as usize];
    println!(
        "failover over {trials} trials: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(0.99),
        sorted[sorted.len() - 1]
    );
    println!(
        "BENCH_JSON {}",
        json!({"bench": "failover", "trials": trials, "samples_ms": samples,
               "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": sorted[sorted.len() - 1]})
    );
}

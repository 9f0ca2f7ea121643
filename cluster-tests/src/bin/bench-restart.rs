//! Restart and snapshot benchmark on a 3-node cluster holding 100,000 flags
//! (10 environments of 10,000, the per-environment limit):
//! - how long loading them takes through the API (64 concurrent writers);
//! - how long a restarted follower takes to be ready as the load left it
//!   (its last snapshot, per the snapshot policy, plus the log after it);
//! - right after a snapshot (`POST /admin/v1/snapshot` on every node), how
//!   long a restarted follower takes to be ready from that checkpoint;
//! - how long a new, empty node takes to catch up through the snapshot,
//!   streamed in chunks, and how large the snapshot is.
//!
//!   cargo build --release -p pulseplane-node -p pulseplane-cluster-tests
//!   PULSEPLANE_NODE_BIN=target/release/pulseplane-node \
//!   target/release/bench-restart [flags]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pulseplane_cluster_tests::Cluster;
use serde_json::json;

const PER_ENV: usize = 10_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let envs = total.div_ceil(PER_ENV);
    let mut c = Cluster::start(3).await;
    for e in 0..envs {
        c.create_env(1, &format!("env{e}")).await;
    }
    let leader = c.leader(Duration::from_secs(10)).await;
    let base = c.url(leader);

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, base, next) = (c.client.clone(), base.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let (env, n) = (i / PER_ENV, i % PER_ENV);
                let body = json!({
                    "kind": "boolean",
                    "description": format!("flag {n} of env{env}"),
                    "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["NL", "DE"]}],
                               "serve": {"variant": "on"}}]
                });
                let path = format!("/v1/environments/env{env}/flags/flag-{n}");
                loop {
                    match client.put(&base, &path, &body).await {
                        Ok((s, _)) if (200..300).contains(&s) => break,
                        Ok((s, v)) if s < 500 => panic!("{path}: {s} {v}"),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "loaded {total} flags in {load_s:.1} s ({:.0} writes/s)",
        total as f64 / load_s
    );
    c.converged(&[1, 2, 3], Duration::from_secs(60)).await;

    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let ready_in = |c: &mut Cluster| {
        c.kill9(follower);
        c.spawn(follower);
        Instant::now()
    };
    let t = ready_in(&mut c);
    c.wait_ready(follower, Duration::from_secs(120)).await;
    let replay_s = t.elapsed().as_secs_f64();
    println!(
        "restart of node {follower} (last snapshot plus log replay): ready in {replay_s:.2} s"
    );

    for id in 1..=3 {
        let (s, v) = c
            .client
            .post(&c.url(id), "/admin/v1/snapshot", &json!({}))
            .await
            .expect("snapshot");
        assert_eq!(s, 200, "snapshot on node {id}: {v}");
    }
    let t = ready_in(&mut c);
    c.wait_ready(follower, Duration::from_secs(120)).await;
    let checkpoint_s = t.elapsed().as_secs_f64();
    println!("restart of node {follower} (right after a snapshot): ready in {checkpoint_s:.2} s");

    let snapshot_bytes = c
        .node_view(leader)
        .await
        .and_then(|v| v["snapshot_bytes"].as_u64())
        .unwrap_or(0);
    let addr = c.new_node(4);
    c.spawn(4);
    let t = Instant::now();
    let (s, v) = c
        .client
        .post(
            &base,
            "/admin/v1/cluster/nodes",
            &json!({"id": 4, "address": addr, "voter": false}),
        )
        .await
        .expect("add node 4");
    assert_eq!(s, 200, "{v}");
    c.converged(&[leader, 4], Duration::from_secs(300)).await;
    let catchup_s = t.elapsed().as_secs_f64();
    println!(
        "new node 4 caught up through a {:.1} MB snapshot in {catchup_s:.2} s",
        snapshot_bytes as f64 / 1e6
    );
    println!(
        "BENCH_JSON {}",
        json!({"bench": "restart", "flags": total, "load_s": load_s,
               "restart_replay_ready_s": replay_s, "restart_snapshot_ready_s": checkpoint_s,
               "snapshot_bytes": snapshot_bytes, "new_node_catchup_s": catchup_s})
    );
}

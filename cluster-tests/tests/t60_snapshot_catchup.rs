//! Catching up through a snapshot.
//!
//! Invariant: with a short snapshot policy the leader compacts its log; a
//! node that is wiped and added back under a new id cannot be caught up
//! from the log, so it receives the snapshot (in chunks), installs it, and
//! converges to the same state digest, holding every acknowledged write.

use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, load, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_under_a_new_id_through_a_snapshot() {
    let flags = [
        "--snapshot-logs=50",
        "--keep-logs=10",
        "--snapshot-chunk-bytes=4096",
    ];
    let mut c = Cluster::start_with(3, &flags).await;
    c.create_env(1, "prod").await;
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    let writers = load::start(&c.client, urls.clone(), "prod", 4);
    wait_until(
        Duration::from_secs(30),
        "300 acknowledged writes",
        || async { (writers.acked().await >= 300).then_some(()) },
    )
    .await;
    let record = writers.stop().await;

    // Wipe a follower and remove it from the cluster.
    let leader = c.leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    c.kill_wipe_and_remove(victim, leader).await;

    // Back under id 7, empty.
    let addr = c.new_node(7);
    c.spawn(7);
    let (s, v) = c
        .client
        .post(
            &c.url(leader),
            "/admin/v1/cluster/nodes",
            &json!({"id": 7, "address": addr}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    c.wait_ready(7, Duration::from_secs(30)).await;
    let members: Vec<u64> = [1, 2, 3, 7]
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    c.converged(&members, Duration::from_secs(30)).await;
    c.assert_has_flags(7, "prod", &record.acked).await;
    let log = std::fs::read_to_string(&c.nodes[&7].log).unwrap();
    assert!(
        log.contains("snapshot installed"),
        "node 7 did not install a snapshot"
    );
}

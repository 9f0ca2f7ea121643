//! Killing the whole cluster.
//!
//! Invariant: after kill -9 of every node and a restart, the cluster elects
//! a leader, every acknowledged write is still there on every node, the
//! nodes converge to one state digest, and writes are accepted again.

use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, load, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_nodes_then_restart() {
    let mut c = Cluster::start(3).await;
    c.create_env(2, "prod").await;
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    let writers = load::start(&c.client, urls, "prod", 4);
    wait_until(
        Duration::from_secs(20),
        "60 acknowledged writes",
        || async { (writers.acked().await >= 60).then_some(()) },
    )
    .await;
    // Kill every node while the writers are still going.
    for id in 1..=3 {
        c.kill9(id);
    }
    let record = writers.stop().await;

    for id in 1..=3 {
        c.spawn(id);
    }
    for id in 1..=3 {
        c.wait_ready(id, Duration::from_secs(30)).await;
    }
    let before = c.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    for id in 1..=3 {
        c.assert_has_flags(id, "prod", &record.acked).await;
    }
    let (s, v) = c
        .client
        .put(
            &c.url(3),
            "/v1/environments/prod/flags/after-restart",
            &json!({"kind": "boolean"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let after = c.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    assert_ne!(before, after);
}

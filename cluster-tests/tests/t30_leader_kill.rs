//! Killing the leader under load.
//!
//! Invariant: with 8 concurrent writers, kill -9 of the leader loses no
//! acknowledged write: after the old leader restarts, every node holds every
//! acknowledged flag and all nodes converge to an identical state digest.
//! The time from the kill to the next acknowledged write is printed (the
//! benchmark `failover` reports its p99 over repeated trials); this test
//! asserts only a generous bound.

use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, load, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_under_eight_writers() {
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    let writers = load::start(&c.client, urls, "prod", 8);
    wait_until(
        Duration::from_secs(20),
        "100 acknowledged writes",
        || async { (writers.acked().await >= 100).then_some(()) },
    )
    .await;

    let leader = c.leader(Duration::from_secs(10)).await;
    let before = writers.acked().await;
    let killed_at = Instant::now();
    c.kill9(leader);
    // The next write acknowledged after the kill.
    let recovered = wait_until(
        Duration::from_secs(20),
        "a write after the leader kill",
        || async { (writers.acked().await > before + 8).then_some(killed_at.elapsed()) },
    )
    .await;
    println!(
        "leader kill: writes resumed {} ms after kill -9 of node {leader}",
        recovered.as_millis()
    );
    assert!(
        recovered < Duration::from_secs(10),
        "writes resumed only after {recovered:?}"
    );

    wait_until(
        Duration::from_secs(20),
        "50 more writes on the new leader",
        || async { (writers.acked().await > before + 58).then_some(()) },
    )
    .await;
    let record = writers.stop().await;
    println!(
        "leader kill: {} acknowledged, {} failed attempts",
        record.acked.len(),
        record.failed
    );

    c.spawn(leader);
    c.wait_ready(leader, Duration::from_secs(30)).await;
    let digest = c.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    for id in 1..=3 {
        c.assert_has_flags(id, "prod", &record.acked).await;
    }
    println!("leader kill: all nodes at digest {digest}");
}

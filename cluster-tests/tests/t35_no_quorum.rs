//! Losing the quorum, and pausing the leader.
//!
//! Invariants: a node that cannot reach a quorum answers writes with 503
//! and `Retry-After` within its write deadline, and commits nothing; reads
//! from its local state keep working. A leader paused (SIGSTOP) for longer
//! than the election timeout is replaced, writes go on through the new
//! leader, and after SIGCONT the old leader follows and converges.

use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_get_503_with_retry_after() {
    let mut c = Cluster::start_with(3, &["--write-timeout=1s"]).await;
    c.create_env(1, "prod").await;
    let survivor = c.leader(Duration::from_secs(10)).await;
    for id in (1..=3).filter(|id| *id != survivor) {
        c.kill9(id);
    }
    let url = format!("{}/v1/environments/prod/flags/lonely", c.url(survivor));
    let (s, h, v) = c
        .client
        .send(
            reqwest::Method::PUT,
            &url,
            &[],
            Some(&json!({"kind": "boolean"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 503, "{v}");
    assert!(h.contains_key("retry-after"), "{h:?}");
    assert!(
        v["code"] == "write_timeout" || v["code"] == "no_leader",
        "{v}"
    );
    // Local reads still work.
    let (s, v) = c
        .client
        .get(&c.url(survivor), "/v1/environments/prod")
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins() {
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let old = c.leader(Duration::from_secs(10)).await;
    c.pause(old);
    let new = c.leader(Duration::from_secs(10)).await;
    assert_ne!(new, old);
    let (s, v) = c
        .client
        .put(
            &c.url(new),
            "/v1/environments/prod/flags/while-paused",
            &json!({"kind": "boolean"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    c.resume(old);
    let url = c.url(old);
    let client = c.client.clone();
    wait_until(Duration::from_secs(10), "the old leader follows", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (_, v) = client.get(&url, "/admin/v1/node").await.ok()?;
            (v["state"] == "follower" && v["leader"] == new).then_some(())
        }
    })
    .await;
    c.converged(&[1, 2, 3], Duration::from_secs(20)).await;
    c.assert_has_flags(old, "prod", &["while-paused".to_string()])
        .await;
}

//! Writing through a follower, and a leader's eager replication.
//!
//! Invariant: a write sent to a follower is forwarded to the leader and
//! committed; its response carries the log index and environment version;
//! every node then serves it, at once with `?consistency=linearizable` and
//! eventually from local state, with an `X-Pulseplane-Applied-Index` at or
//! past the write's index.

use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_follower_is_read_on_every_node() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let f = c.url(follower);

    let (s, v) = c
        .client
        .post(
            &f,
            "/v1/environments",
            &json!({"key": "prod", "name": "Production"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .client
        .put(
            &f,
            "/v1/environments/prod/flags/checkout",
            &json!({"kind": "boolean"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["revision"], 1);
    let (s, v) = c
        .client
        .post(
            &f,
            "/v1/environments/prod/publish",
            &json!({"message": "go"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["env_version"], 1);
    let index = v["log_index"].as_u64().unwrap();

    for id in 1..=3 {
        let url = format!(
            "{}/v1/environments/prod/flags/checkout?consistency=linearizable",
            c.url(id)
        );
        let (s, h, v) = c
            .client
            .send(reqwest::Method::GET, &url, &[], None)
            .await
            .unwrap();
        assert_eq!(s, 200, "node {id}: {v}");
        assert_eq!(v["published_revision"], 1, "node {id}: {v}");
        let applied: u64 = h["x-pulseplane-applied-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(applied >= index, "node {id} applied {applied} < {index}");
        // Local reads converge too.
        let base = c.url(id);
        let client = c.client.clone();
        wait_until(Duration::from_secs(5), "local read shows version 1", || {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let (_, v) = client.get(&base, "/v1/environments/prod").await.ok()?;
                (v["version"] == 1).then_some(())
            }
        })
        .await;
    }

    // A stale If-Match gets 412; the right one succeeds.
    let url = format!("{f}/v1/environments/prod/flags/checkout");
    let body = json!({"kind": "boolean", "description": "edited"});
    let (s, _, v) = c
        .client
        .send(
            reqwest::Method::PUT,
            &url,
            &[("if-match", "\"7\"")],
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(s, 412, "{v}");
    assert_eq!(v["code"], "revision_conflict");
    let (s, _, v) = c
        .client
        .send(
            reqwest::Method::PUT,
            &url,
            &[("if-match", "\"1\"")],
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");

    // Bad input: a clear error naming the field, nothing written.
    let (s, v) = c
        .client
        .put(
            &f,
            "/v1/environments/prod/flags/bad",
            &json!({"kind": "rainbow"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["details"][0]["path"], "/kind");
    let (s, _, v) = c
        .client
        .send(
            reqwest::Method::POST,
            &format!("{f}/v1/environments"),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");
    let (s, v) = c
        .client
        .get(&f, "/v1/environments/prod/flags/bad")
        .await
        .unwrap();
    assert_eq!(s, 404, "{v}");
}

/// Eager replication (`--eager-replication`): a leader sends each new entry
/// to the voters while it syncs the entry itself.
///
/// Invariants: with it on (the default), the followers accept the entries
/// of one-at-a-time writes sent that way (the leader counts them), and the
/// leader's replication does not send those entries again; with it off,
/// none is sent. Either way every write commits and all three nodes
/// converge to the same state digest and hold every flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_replication_sends_new_entries_while_the_leader_syncs() {
    const WRITES: usize = 20;
    let accepted = "pulseplane_raft_eager_appends_total{outcome=\"accepted\"}";
    let covered = "pulseplane_raft_eager_covered_total";
    for eager in [true, false] {
        let setting = if eager { "true" } else { "false" };
        let mut c = Cluster::start_with(3, &["--eager-replication", setting]).await;
        let leader = c.leader(Duration::from_secs(10)).await;
        c.create_env(leader, "prod").await;
        let keys: Vec<String> = (0..WRITES).map(|i| format!("f{i}")).collect();
        for key in &keys {
            let (s, v) = c
                .client
                .put(
                    &c.url(leader),
                    &format!("/v1/environments/prod/flags/{key}"),
                    &json!({"kind": "boolean"}),
                )
                .await
                .unwrap();
            assert_eq!(s, 201, "{v}");
            // Let both followers catch up, so that the next write finds
            // the leader idle.
            c.converged(&[1, 2, 3], Duration::from_secs(10)).await;
        }
        c.converged(&[1, 2, 3], Duration::from_secs(10)).await;
        for id in 1..=3 {
            c.assert_has_flags(id, "prod", &keys).await;
        }
        let sent = c.metric(leader, accepted).await.unwrap();
        let not_resent = c.metric(leader, covered).await.unwrap();
        if eager {
            // Two followers per write; some may be skipped while the
            // previous round's answers are on their way.
            assert!(sent >= WRITES as f64 / 2.0, "{sent} accepted");
            // Replication found most of the accepted entries already
            // there and did not send them again.
            assert!(not_resent >= WRITES as f64 / 2.0, "{not_resent} covered");
        } else {
            assert_eq!((sent, not_resent), (0.0, 0.0));
        }
    }
}

//! `/metrics` on real nodes.
//!
//! Invariants:
//! - every node serves the Prometheus text without a token;
//! - API requests are counted by route template, method and status, with a
//!   latency histogram whose count matches;
//! - snapshot polls are split by status and long-poll;
//! - the leader reports each follower's replication lag, every node its
//!   term, applied index, leader changes, environment versions, and its
//!   log's append and fsync latency;
//! - a request id given by the caller (or a new one) comes back in
//!   `X-Request-Id`, and a write forwarded to the leader is logged there
//!   under the same id.

use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, TOKEN, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_requests_polls_and_raft() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    c.create_env(1, "prod").await;
    let flag = json!({"kind": "boolean"});
    let v = c.put_and_publish(1, "prod", "a", &flag).await.unwrap();
    let snapshot = format!("/v1/sdk/environments/prod/snapshot?min_version={v}&wait=5s");
    let (s, _) = c.client.get(&c.url(1), &snapshot).await.unwrap();
    assert_eq!(s, 200);
    let (s, _) = c
        .client
        .get(&c.url(1), "/v1/environments/nope/flags/x")
        .await
        .unwrap();
    assert_eq!(s, 404);

    // Open by default: no credential needed.
    let (status, text) = c
        .client
        .with_token("")
        .raw_get(&format!("{}/metrics", c.url(1)))
        .await
        .unwrap();
    assert_eq!(status, 200);
    for line in [
        "pulseplane_http_requests_total{route=\"/v1/environments/{env}/flags/{key}\",method=\"PUT\",status=\"201\"} 1",
        "pulseplane_http_requests_total{route=\"/v1/environments/{env}/flags/{key}\",method=\"GET\",status=\"404\"} 1",
        "pulseplane_http_request_duration_seconds_count{route=\"/v1/environments/{env}/publish\",method=\"POST\"} 1",
        "pulseplane_snapshot_polls_total{env=\"prod\",status=\"200\",long_poll=\"true\"} 1",
        "pulseplane_snapshot_polls_total{env=\"prod\",status=\"304\",long_poll=\"false\"} 0",
        "pulseplane_redis_connected 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Every family is there, typed.
    for family in [
        "pulseplane_http_requests_total counter",
        "pulseplane_http_request_duration_seconds histogram",
        "pulseplane_raft_term gauge",
        "pulseplane_raft_is_leader gauge",
        "pulseplane_raft_committed_index gauge",
        "pulseplane_raft_applied_index gauge",
        "pulseplane_raft_last_log_index gauge",
        "pulseplane_raft_leader_changes_total counter",
        "pulseplane_raft_snapshot_chunks_received_total counter",
        "pulseplane_raft_eager_appends_total counter",
        "pulseplane_raft_eager_covered_total counter",
        "pulseplane_raft_replication_lag_entries gauge",
        "pulseplane_raft_append_duration_seconds histogram",
        "pulseplane_raft_fsync_duration_seconds histogram",
        "pulseplane_raft_snapshots_total counter",
        "pulseplane_environment_version gauge",
        "pulseplane_snapshot_polls_total counter",
        "pulseplane_sdk_long_poll_waiters gauge",
        "pulseplane_sdk_instances gauge",
        "pulseplane_sdk_instances_converged gauge",
        "pulseplane_redis_notices_total counter",
        "pulseplane_redis_connect_failures_total counter",
        "pulseplane_redis_connected gauge",
        "pulseplane_redis_queue_length gauge",
        "pulseplane_auth_failures_total counter",
        "pulseplane_access_denied_total counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "missing family {family:?} in:\n{text}"
        );
    }
    assert!(text.contains(&format!(
        "pulseplane_environment_version{{env=\"prod\"}} {v}"
    )));
    let leader_changes = c
        .metric(1, "pulseplane_raft_leader_changes_total")
        .await
        .unwrap();
    assert!(leader_changes >= 1.0, "{leader_changes}");
    assert!(c.metric(1, "pulseplane_raft_applied_index").await.unwrap() > 0.0);
    for series in [
        "pulseplane_raft_fsync_duration_seconds_count",
        "pulseplane_raft_append_duration_seconds_count",
    ] {
        let n = c.metric(1, series).await.unwrap();
        assert!(n >= 1.0, "{series} {n}");
    }

    // The leader knows how far behind each follower is.
    for follower in (1..=3).filter(|id| *id != leader) {
        let series = format!("pulseplane_raft_replication_lag_entries{{follower=\"{follower}\"}}");
        wait_until(Duration::from_secs(10), "followers caught up", || async {
            (c.metric(leader, &series).await? == 0.0).then_some(())
        })
        .await;
    }
    assert_eq!(
        c.metric(leader, "pulseplane_raft_is_leader").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_a_forwarded_write() {
    let mut c = Cluster::start_logging(
        3,
        &[],
        Some("info,openraft=warn,pulseplane_node::raft::server=debug"),
    )
    .await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/environments", c.url(follower)))
        .bearer_auth(TOKEN)
        .header("x-request-id", "t97-req-42")
        .body(json!({"key": "prod", "name": "prod"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["x-request-id"], "t97-req-42");
    wait_until(Duration::from_secs(5), "the leader's log line", || async {
        c.log_tail(leader, 400).contains("t97-req-42").then_some(())
    })
    .await;
    // Without one, a new id is made.
    let r = http
        .get(format!("{}/healthz", c.url(follower)))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{id}");
}

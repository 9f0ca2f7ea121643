//! The control-plane API on a real three-node cluster.
//!
//! Invariants:
//! - publish, rollback, kill and restore each make one new environment
//!   version, and every node's SDK snapshot shows it (read with
//!   `min_version`, so a follower waits for it rather than answering with
//!   old data); a kill survives a later publish and a rollback;
//! - a stale `If-Match` gets 412 and changes nothing;
//! - a write retried with the same `Idempotency-Key` after the leader is
//!   killed is applied once;
//! - a long-poll wakes on a publish; `If-None-Match` with the current ETag
//!   gets 304; a follower asked for a version it has not applied waits;
//! - a snapshot too large to be kept uncompressed reads the same with and
//!   without gzip, from the snapshot and export endpoints, also when
//!   several requests ask for the JSON at once.

use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

async fn snapshot_on(
    c: &Cluster,
    id: u64,
    min_version: u64,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!(
        "{}/v1/sdk/environments/prod/snapshot?min_version={min_version}&wait=10s",
        c.url(id)
    );
    c.client.send(Method::GET, &url, &[], None).await.unwrap()
}

fn flag<'a>(snap: &'a Value, key: &str) -> &'a Value {
    snap["flags"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["key"] == key))
        .unwrap_or(&Value::Null)
}

/// Checks that every node serves `version` with flag `a` in the given state.
async fn every_node_serves(c: &Cluster, version: u64, default_variant: &str, killed: bool) {
    for id in 1..=3 {
        let (s, h, snap) = snapshot_on(c, id, version).await;
        assert_eq!(s, 200, "node {id}: {snap}");
        assert_eq!(snap["version"], version, "node {id}: {snap}");
        assert_eq!(h["x-pulseplane-version"], version.to_string().as_str());
        assert_eq!(h["x-pulseplane-node"], id.to_string().as_str());
        let a = flag(&snap, "a");
        assert_eq!(a["default"]["variant"], default_variant, "node {id}: {a}");
        assert_eq!(a["enabled"], !killed, "node {id}: {a}");
        assert_eq!(
            a["killed"].as_bool().unwrap_or(false),
            killed,
            "node {id}: {a}"
        );
    }
}

async fn put_a(c: &Cluster, node: u64, variant: &str) -> Value {
    let (s, v) = c
        .client
        .put(
            &c.url(node),
            "/v1/environments/prod/flags/a",
            &json!({"kind": "boolean", "default": {"variant": variant}}),
        )
        .await
        .unwrap();
    assert!(s == 200 || s == 201, "{s} {v}");
    v
}

async fn post(c: &Cluster, node: u64, path: &str, body: Value) -> Value {
    let (s, v) = c.client.post(&c.url(node), path, &body).await.unwrap();
    assert_eq!(s, 200, "{path}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rollback_kill_restore_seen_from_every_node() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let f = (1..=3).find(|id| *id != leader).unwrap();
    c.create_env(f, "prod").await;

    // A new environment answers version 0 with no flags.
    let (s, _, snap) = snapshot_on(&c, f, 0).await;
    assert_eq!(s, 200, "{snap}");
    assert_eq!(snap["version"], 0);
    assert_eq!(snap["flags"], json!([]));

    put_a(&c, f, "on").await;
    let v = post(
        &c,
        f,
        "/v1/environments/prod/publish",
        json!({"message": "v1"}),
    )
    .await;
    assert_eq!(v["env_version"], 1);
    every_node_serves(&c, 1, "on", false).await;

    put_a(&c, f, "off").await;
    post(
        &c,
        f,
        "/v1/environments/prod/publish",
        json!({"message": "v2"}),
    )
    .await;
    every_node_serves(&c, 2, "off", false).await;

    let v = post(
        &c,
        f,
        "/v1/environments/prod/rollback",
        json!({"to_version": 1, "message": "back"}),
    )
    .await;
    assert_eq!(v["env_version"], 3);
    every_node_serves(&c, 3, "on", false).await;

    let v = post(
        &c,
        f,
        "/v1/environments/prod/flags/a/kill",
        json!({"message": "incident"}),
    )
    .await;
    assert_eq!(v["env_version"], 4);
    every_node_serves(&c, 4, "on", true).await;

    // Neither a publish nor a rollback lifts the kill.
    put_a(&c, f, "off").await;
    post(
        &c,
        f,
        "/v1/environments/prod/publish",
        json!({"message": "v5"}),
    )
    .await;
    every_node_serves(&c, 5, "off", true).await;
    post(
        &c,
        f,
        "/v1/environments/prod/rollback",
        json!({"to_version": 1}),
    )
    .await;
    every_node_serves(&c, 6, "on", true).await;

    let v = post(&c, f, "/v1/environments/prod/flags/a/restore", json!({})).await;
    assert_eq!(v["env_version"], 7);
    every_node_serves(&c, 7, "on", false).await;

    // The history names every step, newest first, on any node.
    let (s, h) = c
        .client
        .get(&c.url(leader), "/v1/environments/prod/versions")
        .await
        .unwrap();
    assert_eq!(s, 200, "{h}");
    let actions: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "restore", "rollback", "publish", "kill", "rollback", "publish", "publish"
        ]
    );
    let (s, d) = c
        .client
        .get(&c.url(f), "/v1/environments/prod/versions/2?diff_from=1")
        .await
        .unwrap();
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["flags"][0]["key"], "a");
    assert_eq!(d["flags"][0]["changes"][0]["path"], "/default/variant");

    // The export is the snapshot; the CLI writes the same bytes.
    let url = format!("{}/v1/environments/prod/export", c.url(f));
    let (s, h, exported) = c.client.send(Method::GET, &url, &[], None).await.unwrap();
    assert_eq!(s, 200);
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("pulseplane-prod-v7.json")
    );
    assert_eq!(exported["version"], 7);
    let cli = pulseplane_cluster_tests::node_binary().with_file_name("pulseplane");
    let out = std::process::Command::new(cli)
        .args(["export", "--endpoint", &c.url(leader), "--env", "prod"])
        .env("PULSEPLANE_TOKEN", pulseplane_cluster_tests::TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_cli, exported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_match_gets_412_and_changes_nothing() {
    let c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let v = put_a(&c, 2, "on").await;
    let rev = v["revision"].as_u64().unwrap();
    let url = format!("{}/v1/environments/prod/flags/a", c.url(3));
    let body = json!({"kind": "boolean", "description": "second"});
    let current = format!("\"{rev}\"");
    let (s, _, v) = c
        .client
        .send(Method::PUT, &url, &[("if-match", &current)], Some(&body))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = c
        .client
        .send(
            Method::PUT,
            &url,
            &[("if-match", &current)],
            Some(&json!({"kind": "boolean"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 412, "{v}");
    assert_eq!(v["code"], "revision_conflict");
    let (s, h, v) = c
        .client
        .send(
            Method::GET,
            &format!("{url}?consistency=linearizable"),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["draft"]["description"], "second");
    assert_eq!(h["etag"], format!("\"{}\"", rev + 1).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_across_a_leader_kill_applies_once() {
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    let body = json!({"kind": "boolean", "description": "once"});
    let key = [("idempotency-key", "retry-across-failover")];
    let path = "/v1/environments/prod/flags/once";

    // The first attempt goes to the leader, which is killed right after;
    // whether its answer arrives or not, the retry must not apply again.
    let first = c
        .client
        .send(
            Method::PUT,
            &format!("{}{path}", c.url(leader)),
            &key,
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(first.0, 201, "{}", first.2);
    c.kill9(leader);
    let retry = wait_until(Duration::from_secs(20), "the retry to commit", || async {
        let r = c
            .client
            .send(
                Method::PUT,
                &format!("{}{path}", c.url(survivor)),
                &key,
                Some(&body),
            )
            .await
            .ok()?;
        (r.0 < 500).then_some(r)
    })
    .await;
    assert_eq!(retry.0, 200, "{}", retry.2);
    assert_eq!(retry.2["replayed"], true);
    assert_eq!(retry.2["revision"], first.2["revision"]);
    // One write: the next revision handed out is the first's + 1.
    let (s, v) = c
        .client
        .put(
            &c.url(survivor),
            "/v1/environments/prod/flags/other",
            &json!({"kind": "boolean"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["revision"].as_u64(),
        first.2["revision"].as_u64().map(|r| r + 1)
    );
    // The same key with another body is refused.
    let (s, _, v) = c
        .client
        .send(
            Method::PUT,
            &format!("{}{path}", c.url(survivor)),
            &key,
            Some(&json!({"kind": "boolean", "description": "twice"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "idempotency_key_reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_publish_and_304_and_follower_waits() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.create_env(leader, "prod").await;
    put_a(&c, leader, "on").await;
    post(&c, leader, "/v1/environments/prod/publish", json!({})).await;
    let (s, h, _) = snapshot_on(&c, follower, 1).await;
    assert_eq!(s, 200);
    let etag = h["etag"].to_str().unwrap().to_owned();

    // 304 with the current ETag; gzip when accepted.
    let url = format!("{}/v1/sdk/environments/prod/snapshot", c.url(follower));
    let (s, h, _) = c
        .client
        .send(Method::GET, &url, &[("if-none-match", &etag)], None)
        .await
        .unwrap();
    assert_eq!(s, 304);
    assert_eq!(h["etag"], etag.as_str());
    let raw = reqwest::Client::new()
        .get(&url)
        .bearer_auth(pulseplane_cluster_tests::TOKEN)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-encoding"], "gzip");

    // A follower asked for version 2, which does not exist yet, waits;
    // so does a classic long-poll (current ETag, no minimum).
    let min_url = format!("{url}?min_version=2&wait=20s");
    let poll_url = format!("{url}?wait=20s");
    let client = c.client.clone();
    let waiting_min = tokio::spawn(async move {
        let r = client.send(Method::GET, &min_url, &[], None).await.unwrap();
        (Instant::now(), r)
    });
    let client = c.client.clone();
    let tag = etag.clone();
    let waiting_poll = tokio::spawn(async move {
        let r = client
            .send(Method::GET, &poll_url, &[("if-none-match", &tag)], None)
            .await
            .unwrap();
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting_min.is_finished(),
        "the follower answered before version 2 existed"
    );
    assert!(
        !waiting_poll.is_finished(),
        "the long-poll answered without a change"
    );

    put_a(&c, leader, "off").await;
    let published = Instant::now();
    post(&c, leader, "/v1/environments/prod/publish", json!({})).await;
    for waiter in [waiting_min, waiting_poll] {
        let (at, (s, h, snap)) = waiter.await.unwrap();
        assert_eq!(s, 200, "{snap}");
        assert_eq!(snap["version"], 2);
        assert_ne!(h["etag"], etag.as_str());
        let woke = at.saturating_duration_since(published);
        println!(
            "long-poll answered {} ms after the publish was sent",
            woke.as_millis()
        );
        assert!(woke < Duration::from_secs(5), "woke only after {woke:?}");
    }

    // An environment the node does not know: 404 at once, or a wait for it.
    let unknown = format!("{}/v1/sdk/environments/later/snapshot", c.url(follower));
    let (s, _, v) = c
        .client
        .send(Method::GET, &unknown, &[], None)
        .await
        .unwrap();
    assert_eq!(s, 404, "{v}");
    let client = c.client.clone();
    let waiting = tokio::spawn(async move {
        client
            .send(Method::GET, &format!("{unknown}?wait=20s"), &[], None)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.create_env(leader, "later").await;
    let (s, _, v) = waiting.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_reads_the_same_with_and_without_gzip() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.create_env(leader, "prod").await;
    // 80 flags with 4,000-byte descriptions: over 256 KiB of JSON, which
    // the nodes keep only in its gzip form.
    for i in 0..80u32 {
        let description: String = (0..4000u32)
            .map(|j| char::from(b'a' + ((i * 7 + j * 13 + j / 5) % 26) as u8))
            .collect();
        let (s, v) = c
            .client
            .put(
                &c.url(leader),
                &format!("/v1/environments/prod/flags/f{i}"),
                &json!({"kind": "boolean", "description": description}),
            )
            .await
            .unwrap();
        assert_eq!(s, 201, "{v}");
    }
    post(&c, leader, "/v1/environments/prod/publish", json!({})).await;
    let (s, _, _) = snapshot_on(&c, follower, 1).await;
    assert_eq!(s, 200);

    let raw = reqwest::Client::new();
    let get = |path: &'static str, gzip: bool| {
        let mut r = raw
            .get(format!("{}{path}", c.url(follower)))
            .bearer_auth(pulseplane_cluster_tests::TOKEN);
        if gzip {
            r = r.header("accept-encoding", "gzip");
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let encoding = r
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (encoding, r.bytes().await.unwrap().to_vec())
        }
    };
    const SNAPSHOT: &str = "/v1/sdk/environments/prod/snapshot";
    const EXPORT: &str = "/v1/environments/prod/export";
    // Several requests want the JSON at once.
    let plain = futures_util::future::join_all((0..4).map(|_| get(SNAPSHOT, false))).await;
    let (encoding, body) = &plain[0];
    assert_eq!(*encoding, None);
    assert!(body.len() > 256 * 1024, "{} bytes", body.len());
    for (e, b) in &plain {
        assert_eq!(*e, None);
        assert_eq!(b, body);
    }
    let (snap, set) = pulseplane_core::Snapshot::load(body).expect("the JSON is a valid snapshot");
    assert_eq!(snap.version, 1);
    assert_eq!(set.len(), 80);

    let (encoding, gz) = get(SNAPSHOT, true).await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(gz.len() < body.len() / 2, "{} bytes", gz.len());
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unpacked).unwrap();
    assert_eq!(&unpacked, body);

    let (encoding, exported) = get(EXPORT, false).await;
    assert_eq!(encoding, None);
    assert_eq!(&exported, body);
}

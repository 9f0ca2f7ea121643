//! The Rust SDK against real node processes.
//!
//! Invariants:
//! - with every node down, `start` returns within the init timeout and
//!   serves the on-disk cache, else the bootstrap file, else the caller's
//!   defaults, and says which; a corrupted or truncated cache is ignored
//!   (counted) and never trusted;
//! - with the node it polls killed, the client keeps its values and takes
//!   the next version from another node;
//! - a node with an older version of the environment never makes the
//!   client go back;
//! - with a 5 s poll interval and long-poll on, a kill switch reaches the
//!   client well before the next poll, and change listeners see it;
//! - the last good snapshot is written to the cache file.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, TOKEN, free_port, wait_until};
use pulseplane_core::Flag;
use pulseplane_sdk::{Client, Context, Reason, Snapshot, Status};
use serde_json::json;

fn flag(key: &str, default_variant: &str) -> Flag {
    let mut f: Flag = serde_json::from_value(
        json!({"key": key, "kind": "boolean", "default": {"variant": default_variant}, "version": 1}),
    )
    .unwrap();
    f.normalize();
    f
}

fn snapshot_file(
    dir: &std::path::Path,
    name: &str,
    version: u64,
    variant: &str,
) -> std::path::PathBuf {
    let snap = Snapshot::new("prod", version, Some(0), vec![flag("a", variant)], vec![]);
    let path = dir.join(name);
    std::fs::write(&path, snap.to_json()).unwrap();
    path
}

fn down_endpoints() -> Vec<String> {
    (0..2)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_with_every_node_down() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = snapshot_file(dir.path(), "bootstrap.json", 4, "on");
    let cache = snapshot_file(dir.path(), "cache.json", 6, "off");
    let ctx = Context::new("user-1");
    let start = |cache: Option<&std::path::Path>, bootstrap: Option<&std::path::Path>| {
        let mut b = Client::builder("prod")
            .endpoints(down_endpoints())
            .sdk_key(TOKEN)
            .init_timeout(Duration::from_millis(800))
            .request_timeout(Duration::from_millis(300));
        if let Some(c) = cache {
            b = b.cache_file(c);
        }
        if let Some(p) = bootstrap {
            b = b.bootstrap_file(p);
        }
        b.start()
    };

    // The cache wins over the bootstrap file.
    let t = Instant::now();
    let c = start(Some(&cache), Some(&bootstrap)).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "start took {:?}",
        t.elapsed()
    );
    assert_eq!(c.status(), Status::FromCache);
    assert_eq!(c.version(), 6);
    assert!(!c.bool_value("a", &ctx, true));
    let d = c.bool_details("a", &ctx, true);
    assert_eq!(d.reason, Reason::Stale);
    assert_eq!(d.variant.as_deref(), Some("off"));

    // No cache: the bootstrap file.
    let c = start(Some(&dir.path().join("missing.json")), Some(&bootstrap))
        .await
        .unwrap();
    assert_eq!(c.status(), Status::FromBootstrap);
    assert!(c.bool_value("a", &ctx, false));

    // A truncated cache and a corrupted one are ignored, counted, and the
    // bootstrap file serves.
    let text = std::fs::read(&cache).unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let corrupted = dir.path().join("corrupted.json");
    let mut bad = String::from_utf8(text.clone())
        .unwrap()
        .replace("\"off\"}", "\"on\"}");
    bad = bad.replacen("\"version\":6", "\"version\":7", 1);
    std::fs::write(&corrupted, bad).unwrap();
    for broken in [&truncated, &corrupted] {
        let c = start(Some(broken), Some(&bootstrap)).await.unwrap();
        assert_eq!(c.status(), Status::FromBootstrap, "{}", broken.display());
        assert_eq!(c.version(), 4);
        assert!(c.metrics().snapshots_rejected >= 1);
    }

    // Nothing at all: the caller's defaults, with the reason.
    let t = Instant::now();
    let c = start(None, None).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(c.status(), Status::DefaultsOnly);
    assert!(c.bool_value("a", &ctx, true));
    let d = c.bool_details("a", &ctx, true);
    assert_eq!(d.reason, Reason::Error);
    assert_eq!(d.variant, None);
    assert!(!c.wait_ready(Duration::from_millis(100)).await);
}

async fn put_publish(c: &Cluster, node: u64, variant: &str) -> u64 {
    let flag = json!({"kind": "boolean", "default": {"variant": variant}});
    c.put_and_publish(node, "prod", "a", &flag).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_and_never_goes_back_in_version() {
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let v1 = put_publish(&c, 1, "on").await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let client = Client::builder("prod")
        .endpoints((1..=3).map(|id| c.url(id)))
        .sdk_key(TOKEN)
        .cache_file(&cache)
        .request_timeout(Duration::from_millis(500))
        .long_poll_wait(Duration::from_secs(10))
        .start()
        .await
        .unwrap();
    assert!(client.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(client.status(), Status::Ready);
    // The node may still have been building version 1's snapshot when the
    // client first asked; the long-poll brings it.
    wait_until(
        Duration::from_secs(10),
        "version 1 on the client",
        || async { (client.version() >= v1).then_some(()) },
    )
    .await;
    assert_eq!(client.version(), v1);
    let ctx = Context::new("u");
    assert!(client.bool_value("a", &ctx, false));
    // The last good snapshot is on disk, and checks out.
    let on_disk = std::fs::read(&cache).unwrap();
    assert_eq!(Snapshot::load(&on_disk).unwrap().0.version, v1);

    // Kill the node it polls (the first endpoint); the values stay, and the
    // next version arrives through another node.
    c.kill9(1);
    assert!(client.bool_value("a", &ctx, false));
    let v2 = wait_until(
        Duration::from_secs(20),
        "a write after the kill",
        || async {
            let (s, _) = c
                .client
                .put(
                    &c.url(2),
                    "/v1/environments/prod/flags/a",
                    &json!({"kind": "boolean", "default": {"variant": "off"}}),
                )
                .await
                .ok()?;
            if s >= 300 {
                return None;
            }
            let (s, v) = c
                .client
                .post(&c.url(2), "/v1/environments/prod/publish", &json!({}))
                .await
                .ok()?;
            (s == 200).then(|| v["env_version"].as_u64()).flatten()
        },
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "the client to take the new version",
        || async { (client.version() >= v2).then_some(()) },
    )
    .await;
    assert!(!client.bool_value("a", &ctx, true));
    assert!(client.metrics().failovers >= 1, "{:?}", client.metrics());

    // A node that serves an older version of the environment (another
    // cluster, still at version 1) never makes the client go back.
    let old = Cluster::start(1).await;
    old.create_env(1, "prod").await;
    put_publish(&old, 1, "on").await;
    let lagging = Client::builder("prod")
        .endpoints([c.url(2), old.url(1)])
        .sdk_key(TOKEN)
        .request_timeout(Duration::from_millis(500))
        .long_poll_wait(Duration::from_secs(2))
        .max_backoff(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    assert!(lagging.wait_ready(Duration::from_secs(10)).await);
    wait_until(
        Duration::from_secs(10),
        "the newest version on the client",
        || async { (lagging.version() >= v2).then_some(()) },
    )
    .await;
    assert_eq!(lagging.version(), v2);
    c.kill9(2);
    c.kill9(3);
    wait_until(
        Duration::from_secs(20),
        "a poll of the older node",
        || async { (lagging.metrics().polls_behind >= 1).then_some(()) },
    )
    .await;
    assert_eq!(lagging.version(), v2);
    assert!(!lagging.bool_value("a", &ctx, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_arrives_before_the_next_poll() {
    let c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let v1 = put_publish(&c, 1, "on").await;
    let client = Client::builder("prod")
        .endpoints([c.url(2), c.url(3)])
        .sdk_key(TOKEN)
        .poll_interval(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    assert!(client.wait_ready(Duration::from_secs(10)).await);
    wait_until(
        Duration::from_secs(10),
        "version 1 on the client",
        || async { (client.version() >= v1).then_some(()) },
    )
    .await;
    let seen: Arc<Mutex<Vec<pulseplane_sdk::FlagChange>>> = Arc::default();
    let sink = seen.clone();
    client.on_change(Some("a"), move |change| {
        sink.lock().unwrap().push(change.clone());
    });
    let ctx = Context::new("u");
    assert!(client.bool_value("a", &ctx, false));
    // Let the client's long-poll reach the node.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    let (s, v) = c
        .client
        .post(
            &c.url(1),
            "/v1/environments/prod/flags/a/kill",
            &json!({"message": "incident"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    wait_until(
        Duration::from_secs(5),
        "the kill to reach the client",
        || async { (!client.bool_value("a", &ctx, true)).then_some(()) },
    )
    .await;
    let took = killed.elapsed();
    println!(
        "kill switch reached the SDK {} ms after the request was sent",
        took.as_millis()
    );
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?}, as long as a poll interval"
    );
    let d = client.bool_details("a", &ctx, true);
    assert_eq!(d.reason, Reason::Disabled);
    // The fleet view, asked of a node the client does not poll, shows it on
    // the latest version (the next poll reports the version it holds).
    let id = client.instance_id().to_owned();
    let status = wait_until(
        Duration::from_secs(10),
        "the instance on the latest version",
        || async {
            let (s, v) = c
                .client
                .get(&c.url(1), "/v1/environments/prod/sdk-status")
                .await
                .ok()?;
            assert_eq!(s, 200, "{v}");
            let item = v["items"]
                .as_array()?
                .iter()
                .find(|i| i["instance"] == id.as_str())?
                .clone();
            (item["on_latest"] == true && v["converged"] == 1).then_some(v)
        },
    )
    .await;
    assert_eq!(status["nodes_answered"], json!([1, 2, 3]));
    assert_eq!(status["instances"], 1);
    let item = &status["items"][0];
    assert!(item["node"] == 2 || item["node"] == 3, "{status}");
    assert!(item["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Listeners run right after the swap.
    wait_until(Duration::from_secs(5), "the change listener", || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let changes = seen.lock().unwrap().clone();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].old_value, Some(json!(true)));
    assert_eq!(changes[0].new_value, Some(json!(false)));
}

/// Fleet convergence with three SDK instances, one of them lagging (it
/// polls once a minute and so still holds the old version): sdk-status
/// lists all three with the version each holds, counts two converged, and
/// the metric agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_shows_the_lagging_instance() {
    let c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let on = json!({"key": "a", "kind": "boolean", "default": {"variant": "on"}});
    let v1 = c.put_and_publish(1, "prod", "a", &on).await.unwrap();
    let start = |node: u64, long_poll: bool| {
        Client::builder("prod")
            .endpoints([c.url(node)])
            .sdk_key(TOKEN)
            .long_poll(long_poll)
            .poll_interval(Duration::from_secs(60))
            .long_poll_wait(Duration::from_secs(10))
            .start()
    };
    let fast_a = start(1, true).await.unwrap();
    let fast_b = start(2, true).await.unwrap();
    let slow = start(3, false).await.unwrap();
    for client in [&fast_a, &fast_b, &slow] {
        assert!(client.wait_ready(Duration::from_secs(10)).await);
        assert_eq!(client.version(), v1);
    }
    // Let every instance's first poll reach its node.
    wait_until(Duration::from_secs(10), "three instances seen", || async {
        let (_, v) = c
            .client
            .get(&c.url(1), "/v1/environments/prod/sdk-status")
            .await
            .ok()?;
        (v["instances"] == 3).then_some(())
    })
    .await;
    let off = json!({"key": "a", "kind": "boolean", "default": {"variant": "off"}});
    let v2 = c.put_and_publish(1, "prod", "a", &off).await.unwrap();
    let status = wait_until(
        Duration::from_secs(15),
        "two of three converged",
        || async {
            let (s, v) = c
                .client
                .get(&c.url(2), "/v1/environments/prod/sdk-status")
                .await
                .ok()?;
            assert_eq!(s, 200, "{v}");
            (v["converged"] == 2 && v["instances"] == 3).then_some(v)
        },
    )
    .await;
    assert_eq!(status["version"], v2, "{status}");
    let items = status["items"].as_array().unwrap();
    let lagging: Vec<&serde_json::Value> =
        items.iter().filter(|i| i["on_latest"] == false).collect();
    assert_eq!(lagging.len(), 1, "{status}");
    assert_eq!(lagging[0]["instance"], slow.instance_id());
    assert_eq!(lagging[0]["version"], v1);
    assert_eq!(lagging[0]["node"], 3);
    assert_eq!(slow.version(), v1);
    // Each node's metric counts the instances that poll it.
    let converged_on_3 = c
        .metric(3, "pulseplane_sdk_instances_converged{env=\"prod\"}")
        .await;
    assert_eq!(converged_on_3, Some(0.0));
    let instances_on_3 = c.metric(3, "pulseplane_sdk_instances{env=\"prod\"}").await;
    assert_eq!(instances_on_3, Some(1.0));
}

//! Change notices over a real `redis-server` (started by the test on a free
//! loopback port).
//!
//! Invariants:
//! - a publish produces exactly one notice `{"env", "version", "digest"}`
//!   on `pulseplane:env:<env>`, whichever of the three nodes sends it, with
//!   the digest of the snapshot the nodes serve; an SDK that polls once a
//!   minute gets the change within seconds through it;
//! - a malformed, foreign or forged message never changes what an SDK
//!   serves, and leaves its notices working;
//! - with Redis killed, no write fails or slows down and SDKs converge by
//!   polling; once Redis is back, nodes reconnect and notices resume;
//! - with Redis stalled (accepting, never answering), writes stay fast and
//!   notices beyond the queue are dropped and counted;
//! - wrong credentials are logged as such and counted, and the node keeps
//!   taking writes and serving snapshots.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pulseplane_cluster_tests::{Cluster, RedisServer, TOKEN, wait_until};
use pulseplane_sdk::{Client, Context};
use serde_json::{Value, json};

/// Messages seen on a channel by a plain subscriber.
struct Subscriber {
    seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(url: &str, channel: &str) -> Subscriber {
        let client = redis::Client::open(url).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(channel).await.unwrap();
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(m) = stream.next().await {
                let v = serde_json::from_slice(m.get_payload_bytes()).unwrap_or(Value::Null);
                sink.lock().unwrap().push(v);
            }
        });
        Subscriber { seen, task }
    }

    fn versions(&self) -> Vec<u64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| v["version"].as_u64())
            .collect()
    }

    fn message(&self, version: u64) -> Option<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["version"].as_u64() == Some(version))
            .cloned()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn publish_raw(url: &str, channel: &str, payload: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut con)
        .await
        .unwrap();
}

/// Kills (`kill`) or restores flag `a` through node `node`; returns the new
/// environment version and how long the write took.
async fn flip(c: &Cluster, node: u64, kill: bool) -> (u64, Duration) {
    let path = if kill {
        "/v1/environments/prod/flags/a/kill"
    } else {
        "/v1/environments/prod/flags/a/restore"
    };
    let started = Instant::now();
    let (s, v) = c
        .client
        .post(&c.url(node), path, &json!({"message": "t95"}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{path}: {v}");
    (v["env_version"].as_u64().unwrap(), started.elapsed())
}

async fn setup(c: &Cluster) -> u64 {
    c.create_env(1, "prod").await;
    let flag = json!({"kind": "boolean", "default": {"variant": "on"}});
    let v1 = c.put_and_publish(1, "prod", "a", &flag).await.unwrap();
    // Every node serves it before a client starts: a client that polls once
    // a minute and first met a node still on version 0 would wait a minute.
    for n in c.nodes.keys().copied() {
        let (s, v) = c
            .client
            .get(
                &c.url(n),
                &format!("/v1/sdk/environments/prod/snapshot?min_version={v1}&wait=10s"),
            )
            .await
            .unwrap();
        assert!(s == 200 && v["version"] == v1, "node {n}: {s} {v}");
    }
    v1
}

/// A client that polls once a minute: within a test, only a notice brings
/// it a change quickly.
async fn notice_client(c: &Cluster, redis: &RedisServer) -> Client {
    Client::builder("prod")
        .endpoints([c.url(2), c.url(3), c.url(1)])
        .sdk_key(TOKEN)
        .long_poll(false)
        .poll_interval(Duration::from_secs(60))
        .stale_after(Duration::from_secs(600))
        .max_backoff(Duration::from_millis(500))
        .redis(&redis.url())
        .start()
        .await
        .unwrap()
}

async fn wait_version(client: &Client, version: u64, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    wait_until(within, what, || async {
        (client.version() >= version).then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_round_trip_once_and_forged_ones_change_nothing() {
    let redis = RedisServer::start(None).await;
    let url = format!("--redis-url={}", redis.url());
    let c = Cluster::start_with(3, &[&url]).await;
    let v1 = setup(&c).await;
    let sub = Subscriber::start(&redis.url(), "pulseplane:env:prod").await;
    let client = notice_client(&c, &redis).await;
    wait_version(&client, v1, Duration::from_secs(10), "v1 on the client").await;
    wait_until(Duration::from_secs(10), "the SDK subscribed", || async {
        (client.metrics().notice_subscriptions >= 1).then_some(())
    })
    .await;
    let ctx = Context::new("u");
    assert!(client.bool_value("a", &ctx, false));

    // Round trip: the kill reaches a once-a-minute poller through a notice.
    let (v2, _) = flip(&c, 1, true).await;
    let took = wait_version(
        &client,
        v2,
        Duration::from_secs(10),
        "the kill through a notice",
    )
    .await;
    println!(
        "kill reached the SDK through Redis in {} ms",
        took.as_millis()
    );
    assert!(!client.bool_value("a", &ctx, true));
    assert!(client.metrics().notices >= 1);
    wait_until(
        Duration::from_secs(5),
        "the notice of v2 on the channel",
        || async { sub.message(v2) },
    )
    .await;
    // Every node tries; exactly one notice per version reaches the channel.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sub.versions().iter().filter(|v| **v == v2).count(),
        1,
        "{:?}",
        sub.versions()
    );
    let notice = sub.message(v2).unwrap();
    assert_eq!(notice["env"], "prod");
    let (s, snap) = c
        .client
        .get(
            &c.url(2),
            &format!("/v1/sdk/environments/prod/snapshot?min_version={v2}&wait=5s"),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(notice["digest"], snap["digest"]);
    // The other nodes' attempts are counted as duplicates.
    wait_until(
        Duration::from_secs(10),
        "one sent, the rest duplicates",
        || async {
            let (mut sent, mut duplicate) = (0.0, 0.0);
            for id in 1..=3 {
                sent += c
                    .metric(id, "pulseplane_redis_notices_total{outcome=\"sent\"}")
                    .await?;
                duplicate += c
                    .metric(id, "pulseplane_redis_notices_total{outcome=\"duplicate\"}")
                    .await?;
            }
            (sent >= 1.0 && duplicate >= 1.0).then_some(())
        },
    )
    .await;

    // Malformed, foreign and forged messages.
    let ignored = client.metrics().notices_ignored;
    for payload in [
        "not json".to_owned(),
        json!({"env": "other", "version": 99, "digest": "x"}).to_string(),
        json!({"env": "prod", "version": "many"}).to_string(),
        "x".repeat(10_000),
        json!({"env": "prod", "version": 999_999, "digest": "forged"}).to_string(),
        json!({"env": "prod", "version": 1, "digest": "old"}).to_string(),
    ] {
        publish_raw(&redis.url(), "pulseplane:env:prod", &payload).await;
    }
    wait_until(Duration::from_secs(5), "the junk to be ignored", || async {
        (client.metrics().notices_ignored >= ignored + 4).then_some(())
    })
    .await;
    // The forged version costs at most one bounded poll.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client.version(), v2);
    assert!(!client.bool_value("a", &ctx, true));
    let d = client.bool_details("a", &ctx, true);
    assert_eq!(d.env_version, v2);

    // Notices still work afterwards.
    let (v3, _) = flip(&c, 2, false).await;
    let took = wait_version(
        &client,
        v3,
        Duration::from_secs(10),
        "the restore through a notice",
    )
    .await;
    println!(
        "restore reached the SDK through Redis in {} ms",
        took.as_millis()
    );
    assert!(client.bool_value("a", &ctx, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_costs_only_latency() {
    let mut redis = RedisServer::start(None).await;
    let url = format!("--redis-url={}", redis.url());
    let c = Cluster::start_with(3, &[&url]).await;
    let v1 = setup(&c).await;
    // One client polls every second (the baseline), one relies on notices.
    let poller = Client::builder("prod")
        .endpoints([c.url(3), c.url(1)])
        .sdk_key(TOKEN)
        .long_poll(false)
        .poll_interval(Duration::from_secs(1))
        .redis(&redis.url())
        .start()
        .await
        .unwrap();
    let listener = notice_client(&c, &redis).await;
    wait_version(&poller, v1, Duration::from_secs(10), "v1 on the poller").await;
    wait_version(&listener, v1, Duration::from_secs(10), "v1 on the listener").await;
    wait_until(
        Duration::from_secs(10),
        "the listener subscribed",
        || async { (listener.metrics().notice_subscriptions >= 1).then_some(()) },
    )
    .await;
    let subscribed = listener.metrics().notice_subscriptions;

    redis.kill();
    let mut last = v1;
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let (v, took) = flip(&c, 1 + i % 3, i % 2 == 0).await;
        last = v;
        slowest = slowest.max(took);
    }
    println!(
        "with Redis down, the slowest of 6 writes took {} ms",
        slowest.as_millis()
    );
    assert!(slowest < Duration::from_secs(2), "a write took {slowest:?}");
    let took = wait_version(
        &poller,
        last,
        Duration::from_secs(10),
        "the poller converging",
    )
    .await;
    println!(
        "the poller converged {} ms after the last write",
        took.as_millis()
    );
    for id in 1..=3 {
        assert_eq!(
            c.metric(id, "pulseplane_redis_connected").await,
            Some(0.0),
            "node {id} still says connected"
        );
    }

    redis.spawn().await;
    for id in 1..=3 {
        wait_until(
            Duration::from_secs(30),
            "nodes reconnected to Redis",
            || async {
                (c.metric(id, "pulseplane_redis_connected").await == Some(1.0)).then_some(())
            },
        )
        .await;
    }
    wait_until(
        Duration::from_secs(30),
        "the listener resubscribed",
        || async { (listener.metrics().notice_subscriptions > subscribed).then_some(()) },
    )
    .await;
    // The listener may have caught up with one poll on resubscribing; the
    // next change must arrive by notice.
    wait_version(
        &listener,
        last,
        Duration::from_secs(10),
        "the listener catching up",
    )
    .await;
    let sub = Subscriber::start(&redis.url(), "pulseplane:env:prod").await;
    let (v, _) = flip(&c, 2, true).await;
    let took = wait_version(
        &listener,
        v,
        Duration::from_secs(10),
        "a notice after the restart",
    )
    .await;
    println!(
        "after the Redis restart, a notice brought the change in {} ms",
        took.as_millis()
    );
    wait_until(
        Duration::from_secs(5),
        "the notice on the channel",
        || async { sub.message(v) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_drops_notices_not_writes() {
    let redis = RedisServer::start(None).await;
    let url = format!("--redis-url={}", redis.url());
    let c = Cluster::start_with(1, &[&url, "--redis-queue=2", "--redis-timeout=5s"]).await;
    let v1 = setup(&c).await;
    wait_until(Duration::from_secs(10), "connected to Redis", || async {
        (c.metric(1, "pulseplane_redis_connected").await == Some(1.0)).then_some(())
    })
    .await;
    redis.pause(true);
    let mut slowest = Duration::ZERO;
    let mut last = v1;
    for i in 0..8 {
        let (v, took) = flip(&c, 1, i % 2 == 0).await;
        slowest = slowest.max(took);
        last = v;
    }
    println!(
        "with Redis stalled, the slowest of 8 writes took {} ms",
        slowest.as_millis()
    );
    assert!(slowest < Duration::from_secs(2), "a write took {slowest:?}");
    let (s, snap) = c
        .client
        .get(
            &c.url(1),
            &format!("/v1/sdk/environments/prod/snapshot?min_version={last}&wait=5s"),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(snap["version"].as_u64(), Some(last));
    // One notice stuck in flight, two queued, the rest dropped.
    wait_until(Duration::from_secs(5), "notices dropped", || async {
        let n = c
            .metric(1, "pulseplane_redis_notices_total{outcome=\"dropped\"}")
            .await?;
        (n >= 1.0).then_some(())
    })
    .await;
    redis.pause(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_and_harmless() {
    let mut redis = RedisServer::start(Some("the-right-one")).await;
    redis.password = Some("a-wrong-one".into());
    let url = format!("--redis-url={}", redis.url());
    let c = Cluster::start_with(1, &[&url]).await;
    let v1 = setup(&c).await;
    let (v2, _) = flip(&c, 1, true).await;
    assert!(v2 > v1);
    let (s, snap) = c
        .client
        .get(
            &c.url(1),
            &format!("/v1/sdk/environments/prod/snapshot?min_version={v2}&wait=5s"),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(snap["version"].as_u64(), Some(v2));
    wait_until(
        Duration::from_secs(10),
        "the auth failure counted",
        || async {
            let n = c
                .metric(
                    1,
                    "pulseplane_redis_connect_failures_total{reason=\"auth\"}",
                )
                .await?;
            (n >= 1.0).then_some(())
        },
    )
    .await;
    assert_eq!(c.metric(1, "pulseplane_redis_connected").await, Some(0.0));
    // The line is written right after the count.
    wait_until(Duration::from_secs(5), "the log line", || async {
        c.log_tail(1, 200)
            .contains("Redis refused this node's credentials")
            .then_some(())
    })
    .await;
    let log = c.log_tail(1, 200);
    assert!(!log.contains("a-wrong-one"), "the password was logged");
}

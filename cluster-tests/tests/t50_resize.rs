//! Growing and shrinking the cluster under writes.
//!
//! Invariant: under concurrent writes, adding two nodes through the admin
//! API (each joins as a learner, catches up, then is promoted) gives five
//! voters; removing two, the leader first, gives three. Adding is
//! idempotent. No acknowledged write is lost and the remaining members
//! converge to one state digest. The window between removing the leader and
//! the next acknowledged write is printed. A follower wiped, removed and
//! added back at once under its old id catches up like any new node.

use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, load, wait_until};
use serde_json::{Value, json};

fn voters(v: &Value) -> Vec<u64> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_and_shrink_to_three_under_writes() {
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    let writers = load::start(&c.client, urls, "prod", 4);

    // Grow: 4 and 5 start empty and are added through node 2.
    for id in [4, 5] {
        let addr = c.new_node(id);
        c.spawn(id);
        let body = json!({"id": id, "address": addr, "voter": true});
        let (s, v) = c
            .client
            .post(&c.url(2), "/admin/v1/cluster/nodes", &body)
            .await
            .unwrap();
        assert_eq!(s, 200, "adding node {id}: {v}");
        assert!(voters(&v).contains(&id), "{v}");
        // Idempotent.
        let (s, v) = c
            .client
            .post(&c.url(3), "/admin/v1/cluster/nodes", &body)
            .await
            .unwrap();
        assert_eq!(s, 200, "adding node {id} again: {v}");
        c.wait_ready(id, Duration::from_secs(30)).await;
    }
    let (_, v) = c.client.get(&c.url(1), "/admin/v1/cluster").await.unwrap();
    assert_eq!(voters(&v).len(), 5, "{v}");
    // The same id at another address is refused.
    let (s, v) = c
        .client
        .post(
            &c.url(1),
            "/admin/v1/cluster/nodes",
            &json!({"id": 4, "address": "127.0.0.1:1"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 409, "{v}");

    // Shrink: remove the leader (through another node), then one more.
    let leader = c.leader(Duration::from_secs(10)).await;
    let via = [1, 2, 3, 4, 5]
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    let before = writers.acked().await;
    let removed_at = Instant::now();
    let (s, v) = c
        .client
        .delete(&c.url(via), &format!("/admin/v1/cluster/nodes/{leader}"))
        .await
        .unwrap();
    assert_eq!(s, 200, "removing the leader {leader}: {v}");
    assert!(!voters(&v).contains(&leader), "{v}");
    let window = wait_until(
        Duration::from_secs(20),
        "a write after removing the leader",
        || async { (writers.acked().await > before + 4).then_some(removed_at.elapsed()) },
    )
    .await;
    println!(
        "resize: removing leader {leader} took {} ms until writes resumed",
        window.as_millis()
    );
    c.kill9(leader);

    let remaining: Vec<u64> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let second = remaining[0];
    let (s, v) = c
        .client
        .delete(
            &c.url(remaining[1]),
            &format!("/admin/v1/cluster/nodes/{second}"),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "removing node {second}: {v}");
    c.kill9(second);
    let rest: Vec<u64> = remaining[1..].to_vec();
    let (_, v) = c
        .client
        .get(&c.url(rest[0]), "/admin/v1/cluster")
        .await
        .unwrap();
    assert_eq!(voters(&v), rest, "{v}");

    let more = writers.acked().await;
    wait_until(
        Duration::from_secs(20),
        "writes on the shrunk cluster",
        || async { (writers.acked().await > more + 10).then_some(()) },
    )
    .await;
    let record = writers.stop().await;
    c.converged(&rest, Duration::from_secs(30)).await;
    for id in &rest {
        c.assert_has_flags(*id, "prod", &record.acked).await;
    }
}

/// A follower wiped and added back at once under its old id and address,
/// under writes.
///
/// Invariant: the leader takes nothing the old node had accepted as held
/// by the new, empty one: the node catches up from the leader, all three
/// converge to one state digest, and it holds every acknowledged write,
/// including those made while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_rejoins_at_once_under_its_old_id() {
    let mut c = Cluster::start(3).await;
    c.create_env(1, "prod").await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    let survivors: Vec<String> = (1..=3)
        .filter(|id| *id != victim)
        .map(|id| c.url(id))
        .collect();
    let writers = load::start(&c.client, survivors, "prod", 4);
    wait_until(
        Duration::from_secs(30),
        "100 acknowledged writes",
        || async { (writers.acked().await >= 100).then_some(()) },
    )
    .await;

    c.kill_wipe_and_remove(victim, leader).await;
    c.spawn(victim);
    let address = c.peer_addr(victim).to_owned();
    let (s, v) = c
        .client
        .post(
            &c.url(leader),
            "/admin/v1/cluster/nodes",
            &json!({"id": victim, "address": address, "voter": true}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "adding node {victim} back: {v}");
    assert!(voters(&v).contains(&victim), "{v}");
    c.wait_ready(victim, Duration::from_secs(30)).await;

    let more = writers.acked().await;
    wait_until(
        Duration::from_secs(20),
        "writes after the node is back",
        || async { (writers.acked().await > more + 50).then_some(()) },
    )
    .await;
    let record = writers.stop().await;
    c.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    c.assert_has_flags(victim, "prod", &record.acked).await;
}

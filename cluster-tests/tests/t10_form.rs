//! Forming a cluster.
//!
//! Invariant: three nodes started with the same `--initial-cluster` form one
//! cluster with exactly one leader and three voters; every node is ready,
//! serves the admin API, refuses requests without the admin token (401) and
//! peer requests without the cluster secret (401), runs its allocator with
//! the node's own settings, and exits cleanly (0) on SIGTERM.

use std::time::Duration;

use pulseplane_cluster_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    for id in 1..=3 {
        let (s, v) = c.client.get(&c.url(id), "/admin/v1/cluster").await.unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["leader"], leader,
            "node {id} disagrees on the leader: {v}"
        );
        let members = v["members"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m["role"] == "voter"), "{v}");
    }

    // Without the admin token: 401 with the error body.
    let anon = c.client.with_token("wrong");
    let (s, v) = anon.get(&c.url(1), "/v1/environments").await.unwrap();
    assert_eq!(s, 401);
    assert_eq!(v["code"], "unauthorized");
    // Health endpoints need no token.
    let (s, _) = anon.get(&c.url(1), "/healthz").await.unwrap();
    assert_eq!(s, 200);

    // A peer request without the cluster secret: 401, and logged.
    let r = reqwest::Client::new()
        .post(format!("{}/raft/append", c.url(leader)))
        .body(vec![0u8; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = reqwest::Client::new()
        .post(format!("{}/raft/vote", c.url(leader)))
        .header("x-pulseplane-cluster-secret", "not-the-secret")
        .body(vec![0u8; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        c.log_tail(leader, 50)
            .contains("without a valid cluster secret")
    );

    // The node's jemalloc settings are in force: they start its background
    // thread, which jemalloc's defaults do not.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let pid = c.nodes[&leader].pid().unwrap();
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect();
        assert!(
            threads.iter().any(|n| n.starts_with("jemalloc_bg")),
            "{threads:?}"
        );
    }

    // SIGTERM: a clean exit.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    assert_eq!(c.stop(follower), Some(0));
}

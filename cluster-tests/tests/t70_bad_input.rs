//! Bad configuration and misuse.
//!
//! Invariant: a malformed `--initial-cluster`, a data dir in use, a data dir
//! written by another cluster or another node id, and a missing secret each
//! stop the process with a non-zero exit and a clear message, before it
//! binds, without touching the data dir; a wrong cluster secret gets 401.

use std::process::Command;
use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, SECRET, TOKEN, free_port, node_binary};

fn run(args: &[String]) -> (i32, String) {
    let out = Command::new(node_binary())
        .args(args)
        .env("PULSEPLANE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--node-id=1".to_string(),
            format!("--listen=127.0.0.1:{}", free_port()),
            format!("--data-dir={}", dir.display()),
            format!("--cluster-secret={SECRET}"),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    for (bad, expect) in [
        ("--initial-cluster=1=127.0.0.1", "--initial-cluster"),
        (
            "--initial-cluster=1=127.0.0.1:1,1=127.0.0.1:2",
            "listed twice",
        ),
        (
            "--initial-cluster=2=127.0.0.1:5",
            "does not list this node's id 1",
        ),
        ("--election-timeout=10ms", "--election-timeout"),
    ] {
        let (code, err) = run(&base(&[bad]));
        assert_ne!(code, 0, "{bad} accepted");
        assert!(err.contains(expect), "{bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.exists(), "a config error touched the data dir");

    // A data dir in use, then one of another node and another cluster.
    let mut c = Cluster::start(1).await;
    let used = c.nodes[&1].data_dir.clone();
    let mut args = base(&[]);
    args[2] = format!("--data-dir={}", used.display());
    let (code, err) = run(&args);
    assert_ne!(code, 0);
    assert!(err.contains("in use"), "{err}");
    c.stop(1);
    args[0] = "--node-id=2".into();
    let (code, err) = run(&args);
    assert_ne!(code, 0);
    assert!(err.contains("belongs to node 1"), "{err}");
    args[0] = "--node-id=1".into();
    args[3] = "--cluster-secret=another".into();
    let (code, err) = run(&args);
    assert_ne!(code, 0);
    assert!(err.contains("another cluster"), "{err}");
    // Nothing was damaged: the node starts again.
    c.spawn(1);
    c.wait_ready(1, Duration::from_secs(30)).await;
}

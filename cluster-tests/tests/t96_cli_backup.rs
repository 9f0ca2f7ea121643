//! The `pulseplane` CLI end to end against a real 3-node cluster, and a
//! backup taken under write load restored into a new cluster whose state
//! digest equals the backup's.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use pulseplane_cluster_tests::load;
use pulseplane_cluster_tests::{Cluster, SECRET, TOKEN, free_port, node_binary};
use serde_json::{Value, json};

fn cli_binary() -> std::path::PathBuf {
    node_binary().with_file_name("pulseplane")
}

/// Runs the CLI with the admin token in `PULSEPLANE_TOKEN`.
fn cli(endpoint: &str, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .arg(format!("--endpoint={endpoint}"))
        .args(args)
        .env("PULSEPLANE_TOKEN", TOKEN)
        .env_remove("PULSEPLANE_TOKEN_FILE")
        .output()
        .expect("run pulseplane")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn ok_json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_a_cluster_end_to_end() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    // A dead endpoint first: the CLI fails over to the next one.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ep = format!("{dead},{}", c.url(follower));
    let ep = ep.as_str();

    ok(&cli(ep, &["env", "create", "prod", "--name", "Production"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        json!([
            {"key": "checkout", "kind": "boolean", "default": {"variant": "on"}},
            {"key": "timeout-ms", "kind": "config", "type": "integer",
             "variants": [{"key": "short", "value": 100}, {"key": "long", "value": 2000}],
             "off_variant": "short"}
        ])
        .to_string(),
    )
    .unwrap();
    let applied = ok_json(&cli(
        ep,
        &[
            "--json",
            "flag",
            "apply",
            "prod",
            "-f",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(applied[0]["created"], true, "{applied}");
    assert_eq!(applied[1]["key"], "timeout-ms");
    let table = ok(&cli(
        ep,
        &["flag", "apply", "prod", "-f", file.to_str().unwrap()],
    ));
    assert!(table.contains("updated"), "{table}");

    let published = ok_json(&cli(
        ep,
        &["--json", "env", "publish", "prod", "-m", "first"],
    ));
    assert_eq!(published["env_version"], 1);
    let flag = ok_json(&cli(ep, &["--json", "flag", "get", "prod", "checkout"]));
    assert_eq!(flag["published"]["key"], "checkout");
    assert!(ok(&cli(ep, &["flag", "get", "prod", "checkout"])).contains("REVISION"));

    let killed = ok_json(&cli(
        ep,
        &[
            "--json", "flag", "kill", "prod", "checkout", "-m", "incident",
        ],
    ));
    assert_eq!(killed["env_version"], 2);
    assert!(ok(&cli(ep, &["flag", "restore", "prod", "checkout"])).contains("restored"));
    let history = ok_json(&cli(ep, &["--json", "flag", "history", "prod", "checkout"]));
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["restore", "kill", "publish"], "{history}");
    let changed = dir.path().join("changed.json");
    std::fs::write(
        &changed,
        json!({"key": "checkout", "kind": "boolean", "description": "v2"}).to_string(),
    )
    .unwrap();
    ok(&cli(
        ep,
        &["flag", "apply", "prod", "-f", changed.to_str().unwrap()],
    ));
    let published = ok_json(&cli(
        ep,
        &["--json", "env", "publish", "prod", "--flag", "checkout"],
    ));
    assert_eq!(published["env_version"], 4);
    let rolled = ok_json(&cli(
        ep,
        &["--json", "env", "rollback", "prod", "--to-version", "1"],
    ));
    assert_eq!(rolled["env_version"], 5);
    let text = ok(&cli(ep, &["env", "history", "prod"]));
    assert!(
        text.starts_with("VERSION") && text.lines().count() == 6,
        "{text}"
    );
    assert!(text.contains("rollback to 1"), "{text}");
    let envs = ok_json(&cli(ep, &["--json", "env", "list"]));
    assert_eq!(envs[0]["key"], "prod");
    assert_eq!(envs[0]["version"], 5);

    // Membership: add a fourth node, then remove it.
    let status = ok(&cli(ep, &["cluster", "status"]));
    assert!(
        status.contains("(leader)") && status.contains("REACHABLE"),
        "{status}"
    );
    let addr = c.new_node(4);
    c.spawn(4);
    ok(&cli(
        ep,
        &["cluster", "add", "--id", "4", "--address", &addr],
    ));
    let status = ok_json(&cli(ep, &["--json", "cluster", "status"]));
    assert_eq!(status["members"].as_array().unwrap().len(), 4, "{status}");
    ok(&cli(ep, &["cluster", "remove", "4"]));
    let status = ok_json(&cli(ep, &["--json", "cluster", "status"]));
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");

    // Export and backup write files; the token may come from a file.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let backup = dir.path().join("backup.json");
    let out = Command::new(cli_binary())
        .args([
            "--endpoint",
            ep,
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .args(["backup", "--out", backup.to_str().unwrap()])
        .env_remove("PULSEPLANE_TOKEN")
        .output()
        .unwrap();
    ok(&out);
    let b: Value = serde_json::from_slice(&std::fs::read(&backup).unwrap()).unwrap();
    assert_eq!(b["format"], "pulseplane-backup/1");
    let exported = ok_json(&cli(ep, &["export", "--env", "prod"]));
    assert_eq!(exported["version"], 5);

    // Failures: the server's message and exit 1; usage mistakes exit 2.
    let out = cli(ep, &["flag", "get", "prod", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404") && err.contains("flag_not_found"),
        "{err}"
    );
    let out = Command::new(cli_binary())
        .args(["--endpoint", ep, "env", "list"])
        .env("PULSEPLANE_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = cli("ftp://x", &["env", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&dead, &["env", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node answered"));
}

fn restore(node_dir: &Path, id: u64, backup: &Path, initial: &str) -> Output {
    Command::new(node_binary())
        .args(["restore", "--from", backup.to_str().unwrap()])
        .arg(format!("--node-id={id}"))
        .arg(format!("--data-dir={}", node_dir.display()))
        .arg(format!("--initial-cluster={initial}"))
        .arg(format!("--cluster-secret={SECRET}"))
        .output()
        .expect("run pulseplane-node restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_to_the_same_digest() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    c.create_env(leader, "prod").await;
    let urls: Vec<String> = (1..=3).map(|n| c.url(n)).collect();
    let writers = load::start(&c.client, urls, "prod", 4);
    pulseplane_cluster_tests::wait_until(Duration::from_secs(20), "writes acked", || async {
        (writers.acked().await >= 50).then_some(())
    })
    .await;
    let acked_before = writers.acked().await;
    let dir = tempfile::tempdir().unwrap();
    let backup_file = dir.path().join("backup.json");
    let out = Command::new(cli_binary())
        .args(["--endpoint", &c.url(2), "backup", "--out"])
        .arg(&backup_file)
        .env("PULSEPLANE_TOKEN", TOKEN)
        .output()
        .unwrap();
    ok(&out);
    // Writes go on while the backup is taken, and after.
    pulseplane_cluster_tests::wait_until(Duration::from_secs(20), "more writes", || async {
        (writers.acked().await >= acked_before + 20).then_some(())
    })
    .await;
    let record = writers.stop().await;
    let backup: Value = serde_json::from_slice(&std::fs::read(&backup_file).unwrap()).unwrap();
    let digest = backup["digest"].as_str().unwrap().to_owned();
    // Consistent: every write acknowledged before the backup began is in it.
    let drafts = &backup["state"]["environments"]["prod"]["draft_flags"];
    for key in &record.acked[..acked_before] {
        assert!(
            drafts.get(key).is_some(),
            "{key} acked before the backup, missing"
        );
    }
    assert!(
        record.acked.len() > drafts.as_object().unwrap().len(),
        "writes after the backup are not in it"
    );

    // A new cluster: node 1 restored from the file, nodes 2 and 3 empty.
    let mut b = Cluster::new();
    let members: Vec<(u64, String)> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let initial = members
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    for (id, addr) in &members {
        b.add_node(*id, addr, Some(initial.clone()));
    }
    let node1_dir = b.nodes[&1].data_dir.clone();
    let out = restore(&node1_dir, 1, &backup_file, &initial);
    let said = ok(&out);
    assert!(said.contains(&digest), "{said}");
    // A damaged file is refused before anything is written.
    let damaged = dir.path().join("damaged.json");
    let mut bad = backup.clone();
    bad["state"]["settings"]["version_retention"] = json!(5);
    std::fs::write(&damaged, bad.to_string()).unwrap();
    let other_dir = dir.path().join("other");
    let out = restore(&other_dir, 1, &damaged, &initial);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    assert!(!other_dir.exists());

    for id in 1..=3 {
        b.spawn(id);
    }
    for id in 1..=3 {
        b.wait_ready(id, Duration::from_secs(30)).await;
    }
    let restored = b.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    assert_eq!(restored, digest);
    // The restored cluster takes writes.
    let leader = b.leader(Duration::from_secs(10)).await;
    b.create_env(leader, "after-restore").await;
    // Restoring into a data dir in use, or one with state, is refused.
    let out = restore(&node1_dir, 1, &backup_file, &initial);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

//! Network partitions, pauses and crashes under a recorded workload.
//!
//! Every scenario runs the [`workload`] clients through the fault and ends
//! with the [`history`](pulseplane_cluster_tests::history) checker: no
//! acknowledged write lost, linearizable reads linearizable, versions only
//! growing, every node's state at an applied index equal to every other's
//! there. Each scenario states its own invariant on top.

use std::time::{Duration, Instant};

use pulseplane_cluster_tests::workload::{self, Config, Workload};
use pulseplane_cluster_tests::{Cluster, wait_until};
use serde_json::json;

const ENV: &str = "faults";

async fn cluster(n: u64, flags: &[&str]) -> Cluster {
    let c = Cluster::start_faulty(n, flags).await;
    c.create_env(1, ENV).await;
    c
}

fn run(c: &Cluster, ids: &[u64], seed: u64) -> Workload {
    let nodes = ids.iter().map(|id| (*id, c.url(*id))).collect();
    workload::start(
        &c.client,
        nodes,
        Config {
            env: ENV.into(),
            seed,
            ..Config::default()
        },
    )
}

/// Waits until the run has `n` more acknowledged operations than now.
async fn progress(w: &Workload, n: usize, what: &str) {
    let (_, start) = w.counts().await;
    wait_until(Duration::from_secs(30), what, || async {
        (w.counts().await.1 >= start + n).then_some(())
    })
    .await;
}

/// Waits until one of `ids` says it leads; returns it.
async fn leader_among(c: &Cluster, ids: &[u64], what: &str) -> u64 {
    wait_until(Duration::from_secs(15), what, || async {
        for id in ids {
            if c.node_view(*id).await?["state"] == "leader" {
                return Some(*id);
            }
        }
        None
    })
    .await
}

async fn view(c: &Cluster, id: u64) -> serde_json::Value {
    c.node_view(id).await.expect("node view")
}

async fn assert_verdict(c: &mut Cluster, w: Workload, members: &[u64]) {
    let v = c.verdict(w, ENV, members).await;
    println!(
        "history: {} ops, {} acknowledged, {} unknown, {} lost, {} violations",
        v.ops,
        v.acknowledged,
        v.indeterminate,
        v.lost_acknowledged_writes,
        v.violations.len()
    );
    assert!(v.ok(), "history check failed: {:#?}", v.violations);
    assert!(v.undecided_keys.is_empty(), "{:?}", v.undecided_keys);
}

/// Leader isolated in a minority.
///
/// Invariant: the isolated leader cannot commit (a write sent to it is not
/// acknowledged, and its applied index stays put); the majority elects a
/// new leader and keeps taking writes; once the partition heals the old
/// leader steps down and converges; no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_isolated_in_a_minority_cannot_commit() {
    let mut c = cluster(3, &[]).await;
    let w = run(&c, &[1, 2, 3], 11);
    progress(&w, 50, "operations before the partition").await;

    let old = c.leader(Duration::from_secs(10)).await;
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    c.net().isolate(old);
    let cut_at = Instant::now();

    // A write straight to the isolated leader is not acknowledged.
    let url = format!("{}/v1/environments/{ENV}/flags/minority-write", c.url(old));
    let answer = tokio::time::timeout(
        Duration::from_secs(4),
        c.client.send(
            reqwest::Method::PUT,
            &url,
            &[],
            Some(&json!({"kind": "boolean"})),
        ),
    )
    .await;
    if let Ok(Ok((status, _, body))) = &answer {
        assert!(
            *status >= 500,
            "the isolated leader answered {status} {body}"
        );
    }
    // Whatever was committed before the cut is applied by now; nothing
    // proposed since can commit.
    let applied_before = view(&c, old).await["applied_index"].as_u64().unwrap();

    // The majority elects a leader and takes writes.
    let new = leader_among(&c, &majority, "a leader in the majority").await;
    println!(
        "leader {old} isolated: node {new} leads after {} ms",
        cut_at.elapsed().as_millis()
    );
    c.put_and_publish(new, ENV, "majority-write", &json!({"kind": "boolean"}))
        .await
        .unwrap_or_else(|e| panic!("majority write: {e}"));
    progress(&w, 30, "operations while the leader is cut off").await;
    let applied_during = view(&c, old).await["applied_index"].as_u64().unwrap();
    assert_eq!(
        applied_during, applied_before,
        "the isolated node applied entries while cut off"
    );

    c.net().heal();
    wait_until(
        Duration::from_secs(15),
        "the old leader steps down",
        || async {
            let v = c.node_view(old).await?;
            (v["state"] == "follower").then_some(())
        },
    )
    .await;
    assert_verdict(&mut c, w, &[1, 2, 3]).await;
    let (s, _) = c
        .client
        .get(
            &c.url(old),
            &format!("/v1/environments/{ENV}/flags/majority-write"),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "the old leader caught up with the majority's write");
}

/// A paused leader resumes.
///
/// Invariant: a leader stopped (SIGSTOP) for longer than the election
/// timeout, holding a write it received before the pause, does not commit
/// that stale proposal in its old term: when it resumes it steps down;
/// the write is acknowledged only if it ends in the replicated state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_resumes_without_committing_stale_proposals() {
    let mut c = cluster(3, &[]).await;
    let w = run(&c, &[1, 2, 3], 12);
    progress(&w, 50, "operations before the pause").await;

    let old = c.leader(Duration::from_secs(10)).await;
    let term_before = view(&c, old).await["term"].as_u64().unwrap();
    c.pause(old);
    // Sent while it is stopped: the request waits in the socket.
    let stale = {
        let client = c.client.clone();
        let url = format!("{}/v1/environments/{ENV}/flags/stale-write", c.url(old));
        tokio::spawn(async move {
            client
                .send(
                    reqwest::Method::PUT,
                    &url,
                    &[],
                    Some(&json!({"kind": "boolean", "description": "sent to a paused leader"})),
                )
                .await
        })
    };
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = leader_among(&c, &others, "a new leader").await;
    progress(&w, 30, "operations while the leader is paused").await;
    println!("leader {old} paused; node {new} leads");

    c.resume(old);
    let v = wait_until(
        Duration::from_secs(15),
        "the old leader steps down",
        || async {
            let v = c.node_view(old).await?;
            (v["state"] == "follower").then_some(v)
        },
    )
    .await;
    assert!(v["term"].as_u64().unwrap() > term_before, "{v}");
    let stale = stale.await.unwrap();
    assert_verdict(&mut c, w, &[1, 2, 3]).await;
    let (s, _) = c
        .client
        .get(
            &c.url(new),
            &format!("/v1/environments/{ENV}/flags/stale-write?consistency=linearizable"),
        )
        .await
        .unwrap();
    match stale {
        Ok((status, _, body)) if (200..300).contains(&status) => {
            assert_eq!(
                s, 200,
                "the stale write was acknowledged ({body}) but is gone"
            )
        }
        other => println!("the write sent to the paused leader: {other:?}; present: {s}"),
    }
}

/// Membership change during a partition.
///
/// Invariant: while one member is cut off, the majority adds a fourth
/// node (learner, then voter of the joint configuration); when the
/// partition heals the cut-off member learns the new membership, and all
/// four converge with no acknowledged write lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_while_a_member_is_cut_off() {
    let mut c = cluster(3, &[]).await;
    let w = run(&c, &[1, 2, 3], 13);
    progress(&w, 40, "operations before the partition").await;

    let leader = c.leader(Duration::from_secs(10)).await;
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    c.net().isolate(cut);
    let addr = c.new_node(4);
    c.spawn(4);
    // A cut-off node 4 would stall the change: only `cut` is isolated.
    let (s, v) = c
        .client
        .post(
            &c.url(leader),
            "/admin/v1/cluster/nodes",
            &json!({"id": 4, "address": addr}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "add node 4 during the partition: {v}");
    c.wait_ready(4, Duration::from_secs(30)).await;
    progress(&w, 30, "operations after the change").await;

    c.net().heal();
    assert_verdict(&mut c, w, &[1, 2, 3, 4]).await;
    let (_, v) = c
        .client
        .get(&c.url(cut), "/admin/v1/cluster")
        .await
        .unwrap();
    let voters: Vec<u64> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "voter")
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(
        voters,
        [1, 2, 3, 4],
        "node {cut}'s view of the members: {v}"
    );
}

/// Crash during snapshot install.
///
/// Invariant: a follower that fell behind a compacted log is sent a
/// snapshot in small, slowed chunks; kill -9 in the middle of the install
/// leaves it able to restart, receive the snapshot again and converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_snapshot_install() {
    let flags = [
        "--snapshot-logs=50",
        "--keep-logs=10",
        "--snapshot-chunk-bytes=2048",
    ];
    let mut c = cluster(3, &flags).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let up: Vec<u64> = (1..=3).filter(|id| *id != behind).collect();
    c.kill9(behind);
    let w = run(&c, &up, 14);
    progress(&w, 250, "writes that compact the log").await;
    wait_until(
        Duration::from_secs(30),
        "a snapshot on the leader",
        || async {
            let v = c.node_view(leader).await?;
            (v["snapshot_index"].as_u64()? > 50).then_some(())
        },
    )
    .await;

    // Slow the leader → follower link so the install takes a while.
    c.net().delay(leader, behind, Duration::from_millis(150));
    c.spawn(behind);
    let chunks = "pulseplane_raft_snapshot_chunks_received_total";
    let installed = "pulseplane_raft_snapshots_total{kind=\"installed\"}";
    wait_until(
        Duration::from_secs(60),
        "snapshot chunks arriving",
        || async { (c.metric(behind, chunks).await? >= 3.0).then_some(()) },
    )
    .await;
    assert_eq!(
        c.metric(behind, installed).await,
        Some(0.0),
        "the snapshot was installed before the crash"
    );
    println!(
        "killing node {behind} after {:?} snapshot chunks",
        c.metric(behind, chunks).await
    );
    c.kill9(behind);

    c.net().heal();
    c.spawn(behind);
    c.wait_ready(behind, Duration::from_secs(60)).await;
    assert_verdict(&mut c, w, &[1, 2, 3]).await;
    let done = c.metric(behind, installed).await.unwrap_or(0.0);
    assert!(done >= 1.0, "node {behind} caught up by a snapshot");
}

/// Kill -9 of a follower under a high write load, then restart.
///
/// Invariant: the cluster keeps acknowledging writes on two nodes; the
/// restarted follower replays its own log, catches up and converges; no
/// acknowledged write is lost and its applied index never went back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_under_load_restarts_and_converges() {
    let mut c = cluster(3, &[]).await;
    let w = workload::start(
        &c.client,
        (1..=3).map(|id| (id, c.url(id))).collect(),
        Config {
            env: ENV.into(),
            seed: 15,
            clients: 8,
            ..Config::default()
        },
    );
    progress(&w, 100, "operations before the kill").await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    c.kill9(victim);
    progress(&w, 100, "operations with a follower down").await;
    c.spawn(victim);
    c.wait_ready(victim, Duration::from_secs(30)).await;
    progress(&w, 50, "operations after the restart").await;
    assert_verdict(&mut c, w, &[1, 2, 3]).await;
}

/// The checker can fail.
///
/// Invariant: reads served locally by a follower cut off from the leader
/// are stale; recorded as if they were linearizable reads, the history
/// checker rejects them (and accepts the same operations with the stale
/// read left out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_rejects_stale_reads_from_a_cut_off_follower() {
    use pulseplane_cluster_tests::history::{self, Call, Op};

    let mut c = cluster(3, &[]).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    let c = c;
    let cfg = Config {
        env: ENV.into(),
        linearizable_reads: false,
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut ops = Vec::new();
    let mut perform = async |node: u64, call: Call| {
        let invoke = t0.elapsed().as_nanos() as u64;
        let outcome = workload::perform(&c.client, &c.url(node), &cfg, &call).await;
        let complete = t0.elapsed().as_nanos() as u64;
        ops.push(Op {
            process: 0,
            node,
            call,
            invoke,
            complete,
            outcome,
        });
    };
    let write = |value: &str| Call::Write {
        key: "reg-0".into(),
        value: value.into(),
    };
    perform(leader, write("before")).await;
    // The follower has it before the cut.
    wait_until(Duration::from_secs(10), "the follower applied", || async {
        let (_, v) = c
            .client
            .get(&c.url(cut), &format!("/v1/environments/{ENV}/flags/reg-0"))
            .await
            .ok()?;
        (v["draft"]["description"] == "before").then_some(())
    })
    .await;
    c.net().isolate(cut);
    perform(leader, write("after")).await;
    perform(
        cut,
        Call::Read {
            key: "reg-0".into(),
        },
    )
    .await;
    c.net().heal();
    c.converged(&[1, 2, 3], Duration::from_secs(30)).await;
    let fin = workload::final_state(&c.client, &c.url(leader), ENV, Duration::from_secs(10)).await;

    let all_ok = ops
        .iter()
        .all(|o| matches!(o.outcome, history::Outcome::Ok { .. }));
    assert!(all_ok, "{ops:#?}");
    let v = history::check(&ops, &[], &fin);
    assert!(!v.ok(), "a stale read passed the checker: {ops:#?}");
    assert!(
        v.violations.iter().any(|l| l.contains("not linearizable")),
        "{:?}",
        v.violations
    );
    ops.pop();
    assert!(history::check(&ops, &[], &fin).ok());
}

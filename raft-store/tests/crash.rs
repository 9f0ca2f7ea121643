//! Durability under SIGKILL: a child process appends log entries, saves
//! votes and applies entries as fast as it can, printing each step once the
//! store has acknowledged it; the parent kills it at a random moment, reopens
//! the store, and checks that every acknowledged entry, the last
//! acknowledged vote and the last acknowledged applied state are all there.
//! Every tenth step the child also builds a snapshot (the state machine's
//! checkpoint) and purges the log up to it, so reopening exercises both the
//! checkpoint and the replay of the log after it. Repeated 20 times on the
//! same directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openraft::RaftSnapshotBuilder;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use pulseplane_core::{Command as Cmd, CommandEnvelope};
use pulseplane_raft_store::{Proposal, TypeConfig, open};

const DIR_VAR: &str = "PULSEPLANE_CRASH_TEST_DIR";
const ROUNDS: usize = 20;

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal::one(CommandEnvelope {
            idempotency_key: format!("k{index}"),
            actor: "crash-test".into(),
            at_ms: index as i64,
            command: Cmd::CreateEnvironment {
                key: format!("env-{index}"),
                name: format!("Environment {index}"),
            },
            audit: None,
        })),
    }
}

/// The child: writes until killed. Runs only when the parent sets the variable.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (mut log, mut sm) = open(Path::new(&dir)).unwrap();
        let state = log.get_log_state().await.unwrap();
        let mut next = state.last_log_id.map_or(1, |id| id.index + 1);
        let mut term = log
            .read_vote()
            .await
            .unwrap()
            .map_or(1, |v| v.leader_id.term + 1);
        // Re-apply what was logged but not applied before the last kill, as
        // Raft would.
        let (applied, _) = sm.applied_state().await.unwrap();
        let from = applied.map_or(1, |id| id.index + 1);
        let pending = log.try_get_log_entries(from..next).await.unwrap();
        if !pending.is_empty() {
            sm.apply(pending).await.unwrap();
        }
        loop {
            log.blocking_append([entry(next), entry(next + 1)])
                .await
                .unwrap();
            println!("log {}", next + 1);
            log.save_vote(&Vote::new(term, 1)).await.unwrap();
            println!("vote {term}");
            sm.apply([entry(next), entry(next + 1)]).await.unwrap();
            println!("applied {}", next + 1);
            // Every tenth step, checkpoint and compact as Raft would: build a
            // snapshot, then purge the log up to it.
            if next % 20 == 1 {
                let snapshot = sm
                    .get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .unwrap();
                if let Some(id) = snapshot.meta.last_log_id {
                    log.purge(id).await.unwrap();
                    println!("purged {}", id.index);
                }
            }
            next += 2;
            term += 1;
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a pseudo-random number of acknowledged steps (5..125).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 5 + (seed % 120) as usize;
        let (mut last_log, mut last_vote, mut last_applied) = (0u64, 0u64, 0u64);
        let started = Instant::now();
        let mut steps = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            let (Some(what), Some(n)) = (parts.next(), parts.next().and_then(|n| n.parse().ok()))
            else {
                continue;
            };
            match what {
                "log" => last_log = n,
                "vote" => last_vote = n,
                "applied" => last_applied = n,
                "purged" => {}
                _ => continue,
            }
            steps += 1;
            if steps >= kill_after || started.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        // SIGKILL: no destructors, no flushes beyond what was already synced.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(steps > 0, "round {round}: the child acknowledged nothing");
        total_acked += steps;

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (mut log, mut sm) = open(dir.path()).unwrap();
            // Every acknowledged entry is in the log or covered by a purge.
            let log_state = log.get_log_state().await.unwrap();
            let first = log_state.last_purged_log_id.map_or(1, |id| id.index + 1);
            assert!(
                log_state.last_log_id.map_or(0, |id| id.index) >= last_log,
                "round {round}: acknowledged entries lost"
            );
            let entries = log.try_get_log_entries(first..=last_log).await.unwrap();
            assert_eq!(
                entries.len() as u64,
                (last_log + 1).saturating_sub(first),
                "round {round}: acknowledged entries lost"
            );
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(e.log_id.index, first + i as u64);
            }
            let vote = log.read_vote().await.unwrap();
            assert!(
                vote.is_some_and(|v| v.leader_id.term >= last_vote),
                "round {round}: vote {vote:?} < {last_vote}"
            );
            let (applied, _) = sm.applied_state().await.unwrap();
            let applied_index = applied.map_or(0, |id| id.index);
            assert!(
                applied_index >= last_applied,
                "round {round}: applied {applied_index} < {last_applied}"
            );
            // The applied state holds every environment up to the applied index.
            let (_, state) = sm.state();
            assert_eq!(
                state.environments.len() as u64,
                applied_index,
                "round {round}"
            );
        });
    }
    assert!(total_acked >= ROUNDS);
}

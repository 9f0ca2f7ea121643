//! Eager replication: a leader sends its new entries to the other voters as
//! soon as they are written to its log, while its own WAL sync runs.
//!
//! openraft 0.9's core waits for an append's sync before it starts to
//! replicate the entries, so without this a write pays for the leader's
//! fsync and then a follower's, one after the other. Raft lets a leader
//! send entries before it has synced them itself (it counts towards a
//! quorum only once synced), so this sends the AppendEntries request that
//! openraft's replication will send: the leader's vote, the id of the
//! entry before them, the entries, and no commit index. It goes through
//! the same `/raft/append` endpoint, and a follower handles it as any
//! append from its leader: it appends and syncs the entries, or rejects
//! the request (it holds a newer vote, or lacks the entry before). Its
//! answer is not used: openraft's replication follows and alone decides
//! what is committed; it finds the entries already there and is answered
//! without waiting for another sync.
//!
//! Only plain entries are sent this way (not membership changes or a new
//! leader's first entry), only while this node leads in the entries' term,
//! only to voters that openraft's replication has brought up to the entry
//! before them, and one round at a time. So it works when the leader has
//! nothing else in flight, where it takes a follower's sync off a write's
//! path; under load, openraft's replication already overlaps the leader's
//! syncs with the followers' and is left alone.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{BasicNode, Entry, EntryPayload, LogId, RaftMetrics};
use pulseplane_raft_store::{AppendObserver, NodeId, TypeConfig};
use tokio::sync::watch;
use tracing::debug;

use crate::raft::Raft;
use crate::raft::client::{PeerClient, encode};
use crate::raft::network::PATH_APPEND;

/// A voter's id and address.
type Target = (NodeId, String);

/// What eager replication did, for `/metrics`.
#[derive(Debug, Default)]
pub struct EagerMetrics {
    /// Requests a follower accepted.
    pub accepted: AtomicU64,
    /// Requests a follower rejected (it holds a newer vote, or lacks the
    /// entry before).
    pub rejected: AtomicU64,
    /// Requests that failed on the way (unreachable, timed out).
    pub failed: AtomicU64,
    /// Appends not sent because the previous round was still out.
    pub skipped: AtomicU64,
}

/// The observer the node sets on its log store.
pub struct Eager {
    id: NodeId,
    peers: PeerClient,
    timeout: Duration,
    /// Raft's metrics, once it has started (a receiver, not a handle: the
    /// log store that holds this observer lives inside Raft).
    raft: OnceLock<watch::Receiver<RaftMetrics<NodeId, BasicNode>>>,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<EagerMetrics>,
}

impl Eager {
    pub fn new(
        id: NodeId,
        peers: PeerClient,
        timeout: Duration,
        metrics: Arc<EagerMetrics>,
    ) -> Eager {
        Eager {
            id,
            peers,
            timeout,
            raft: OnceLock::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            metrics,
        }
    }

    /// Hands over the started Raft's metrics; appends before this are not
    /// sent.
    pub fn started(&self, raft: &Raft) {
        let _ = self.raft.set(raft.metrics());
    }

    /// Whether `entries` are plain entries this node made as a leader (a
    /// follower's appends, and membership changes, are never sent).
    fn made_here(&self, entries: &[Entry<TypeConfig>]) -> bool {
        entries
            .first()
            .is_some_and(|e| e.log_id.leader_id.node_id == self.id)
            && entries
                .iter()
                .all(|e| matches!(e.payload, EntryPayload::Normal(_)))
    }

    /// The voters to send to, with the request, when this node still leads
    /// in the term that made `entries` (see [`Eager::made_here`]).
    fn request(
        &self,
        prev: LogId<NodeId>,
        entries: &[Entry<TypeConfig>],
    ) -> Option<(Vec<Target>, AppendEntriesRequest<TypeConfig>)> {
        let made_by = entries.first()?.log_id.leader_id;
        let m = self.raft.get()?.borrow();
        if m.current_leader != Some(self.id)
            || !m.vote.is_committed()
            || *m.vote.leader_id() != made_by
        {
            return None;
        }
        // Only to a voter that openraft's replication has brought up to
        // `prev`: under load its replication is busy and already overlaps
        // the leader's syncs with the followers', and a voter that lags
        // would reject the entries for the gap.
        let caught_up = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id))
                .is_some_and(|matched| *matched == Some(prev))
        };
        let membership = m.membership_config.membership();
        let targets: Vec<Target> = membership
            .voter_ids()
            .filter(|id| *id != self.id && caught_up(id))
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let vote = m.vote;
        drop(m);
        if targets.is_empty() {
            return None;
        }
        Some((
            targets,
            AppendEntriesRequest {
                vote,
                prev_log_id: Some(prev),
                entries: entries.to_vec(),
                leader_commit: None,
            },
        ))
    }
}

/// One request out: counted off when its task ends, however it ends.
struct Out(Arc<AtomicUsize>);

impl Drop for Out {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AppendObserver for Eager {
    fn appended(&self, prev: LogId<NodeId>, entries: &[Entry<TypeConfig>]) {
        if !self.made_here(entries) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // One round at a time: a new append while one is out means the
        // leader is busy, and its replication overlaps the syncs anyway.
        if self.in_flight.load(Ordering::Acquire) != 0 {
            self.metrics.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some((targets, request)) = self.request(prev, entries) else {
            return;
        };
        self.in_flight.store(targets.len(), Ordering::Release);
        let (peers, timeout) = (self.peers.clone(), self.timeout);
        let (in_flight, metrics) = (self.in_flight.clone(), self.metrics.clone());
        runtime.spawn(async move {
            let body = match encode(&request) {
                Ok(b) => b,
                Err(e) => {
                    in_flight.store(0, Ordering::Release);
                    debug!(error = %e, "eager append not encoded");
                    return;
                }
            };
            for (target, address) in targets {
                let (peers, body) = (peers.clone(), body.clone());
                let (in_flight, metrics) = (in_flight.clone(), metrics.clone());
                tokio::spawn(async move {
                    let _out = Out(in_flight);
                    let answer: Result<
                        Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>,
                        _,
                    > = peers
                        .call_encoded(&address, target, PATH_APPEND, body, timeout)
                        .await;
                    let counter = match answer {
                        Ok(Ok(AppendEntriesResponse::Success)) => &metrics.accepted,
                        Ok(_) => &metrics.rejected,
                        Err(e) => {
                            debug!(error = %e, target, "eager append failed");
                            &metrics.failed
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
    }
}

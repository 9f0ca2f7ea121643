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
//! the request (it holds a newer vote, or lacks the entry before).
//!
//! A follower's acceptance is kept in [`Acks`]. When openraft's
//! replication then asks the network to send entries that the follower
//! has already accepted under the same vote (or that a request still out
//! carries, whose answer it then awaits), the network answers `Success`
//! itself instead of sending them a second time (see [`Acks::covers`]):
//! that saves a round trip on each write's path and two requests per
//! write. A follower's acceptance of entries under a leader's vote stays
//! true (it drops them only for a newer leader, which Raft's election
//! rule makes hold every entry a majority accepted), so answering from it
//! is what a late delivery of that acceptance would be. Requests without
//! entries (heartbeats, which carry the commit index) always go out.
//!
//! Only plain entries are sent this way (not membership changes or a new
//! leader's first entry), only while this node leads in the entries' term,
//! only to voters that openraft's replication has brought up to the entry
//! before them, and one request out per voter at a time. So it works when
//! the leader has nothing else in flight, where it takes a follower's sync
//! off a write's path; under load, openraft's replication already overlaps
//! the leader's syncs with the followers' and is left alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{BasicNode, Entry, EntryPayload, LogId, RaftMetrics, Vote};
use pulseplane_raft_store::{AppendObserver, NodeId, TypeConfig};
use tokio::sync::watch;
use tracing::debug;

use crate::raft::Raft;
use crate::raft::client::{PeerClient, encode};
use crate::raft::network::PATH_APPEND;

/// A wait for an eager answer this long is logged (debug).
const SLOW_ANSWER: Duration = Duration::from_millis(20);

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
    /// Requests not sent because the voter's previous one was still out.
    pub skipped: AtomicU64,
    /// openraft replication requests answered from a follower's acceptance
    /// of an eager request, not sent again.
    pub covered: AtomicU64,
}

/// What one voter has accepted of the eager requests, and the request out
/// to it.
struct TargetAcks {
    /// The vote the entries below were sent under.
    vote: Vote<NodeId>,
    /// The last entry the voter accepted under `vote`, and when the request
    /// that carried it was sent.
    accepted: Option<(LogId<NodeId>, Instant)>,
    /// The request out to the voter: its last entry, and its outcome once
    /// answered (`Some(true)` when accepted). Cleared when its task ends.
    out: Option<(LogId<NodeId>, watch::Receiver<Option<bool>>)>,
    /// Moves on when openraft starts a new replication to the voter: the
    /// answer of a request sent before is then not taken.
    epoch: u64,
}

/// The voters' answers to eager requests, shared by [`Eager`] (which sends
/// them) and the Raft network (which asks [`Acks::covers`] before it sends
/// entries).
pub struct Acks {
    targets: Mutex<HashMap<NodeId, TargetAcks>>,
    /// How long an acceptance is used for: the peer timeout. (Openraft
    /// takes an answer as a sign of life at the time it asked; an old one
    /// would overstate that.)
    fresh_for: Duration,
    metrics: Arc<EagerMetrics>,
}

impl Acks {
    fn new(fresh_for: Duration, metrics: Arc<EagerMetrics>) -> Acks {
        Acks {
            targets: Mutex::new(HashMap::new()),
            fresh_for,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, TargetAcks>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a request out to `target` under `vote` whose last entry is
    /// `last`, unless the target's previous request is still out (`None`);
    /// the returned sender takes its outcome, and the epoch goes with the
    /// answer to [`Acks::accepted`].
    fn sending(
        &self,
        target: NodeId,
        vote: Vote<NodeId>,
        last: LogId<NodeId>,
    ) -> Option<(watch::Sender<Option<bool>>, u64)> {
        let mut targets = self.lock();
        let t = targets.entry(target).or_insert(TargetAcks {
            vote,
            accepted: None,
            out: None,
            epoch: 0,
        });
        if t.out.is_some() {
            return None;
        }
        if t.vote != vote {
            t.vote = vote;
            t.accepted = None;
        }
        let (tx, rx) = watch::channel(None);
        t.out = Some((last, rx));
        Some((tx, t.epoch))
    }

    /// Notes that the request out to `target` whose last entry is `last`
    /// has ended (answered or not): the target may be sent the next one.
    fn finished(&self, target: NodeId, last: LogId<NodeId>, epoch: u64) {
        let mut targets = self.lock();
        if let Some(t) = targets.get_mut(&target)
            && t.epoch == epoch
            && t.out.as_ref().is_some_and(|(l, _)| *l == last)
        {
            t.out = None;
        }
    }

    /// Forgets what `target` accepted, and the request out to it:
    /// openraft starts a new replication to it (a new term, or the node
    /// joined again, perhaps with an empty log under the id it had). The
    /// answer of a request sent before is not taken.
    pub fn forget(&self, target: NodeId) {
        if let Some(t) = self.lock().get_mut(&target) {
            t.accepted = None;
            t.out = None;
            t.epoch += 1;
        }
    }

    /// Notes that `target` accepted the entries up to `last` under `vote`,
    /// in a request sent at `sent`.
    fn accepted(&self, out: &Out, vote: Vote<NodeId>, sent: Instant) {
        let (target, last) = (out.target, out.last);
        let mut targets = self.lock();
        if let Some(t) = targets.get_mut(&target)
            && t.epoch == out.epoch
            && t.vote == vote
            && t.accepted.is_none_or(|(l, _)| l <= last)
        {
            t.accepted = Some((last, sent));
        }
    }

    /// Whether `target` has accepted the entries up to `last` under `vote`
    /// in an eager request: at once if it has already answered, otherwise
    /// after waiting at most `wait` for the answer of a request out that
    /// carries them. `false` means the entries must be sent.
    pub async fn covers(
        &self,
        target: NodeId,
        vote: &Vote<NodeId>,
        last: LogId<NodeId>,
        wait: Duration,
    ) -> bool {
        let out = {
            let targets = self.lock();
            let Some(t) = targets.get(&target).filter(|t| t.vote == *vote) else {
                return false;
            };
            if t.accepted
                .is_some_and(|(l, sent)| last <= l && sent.elapsed() < self.fresh_for)
            {
                self.metrics.covered.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            match &t.out {
                Some((l, rx)) if last <= *l => rx.clone(),
                _ => return false,
            }
        };
        let mut out = out;
        let started = Instant::now();
        let answered = tokio::time::timeout(wait, out.wait_for(|a| a.is_some())).await;
        let covered = matches!(answered, Ok(Ok(a)) if *a == Some(true));
        if covered {
            self.metrics.covered.fetch_add(1, Ordering::Relaxed);
        }
        let waited = started.elapsed();
        if waited >= SLOW_ANSWER {
            debug!(target, ?waited, covered, "slow answer to an eager append");
        }
        covered
    }
}

/// The observer the node sets on its log store.
pub struct Eager {
    id: NodeId,
    peers: PeerClient,
    timeout: Duration,
    /// Raft's metrics, once it has started (a receiver, not a handle: the
    /// log store that holds this observer lives inside Raft).
    raft: OnceLock<watch::Receiver<RaftMetrics<NodeId, BasicNode>>>,
    acks: Arc<Acks>,
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
            acks: Arc::new(Acks::new(timeout, metrics.clone())),
            metrics,
        }
    }

    /// The voters' answers, for the Raft network.
    pub fn acks(&self) -> Arc<Acks> {
        self.acks.clone()
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

/// One request out: when its task ends, however it ends, the outcome is
/// settled (not accepted, unless already told) and the voter may be sent
/// the next request.
struct Out {
    acks: Arc<Acks>,
    target: NodeId,
    last: LogId<NodeId>,
    epoch: u64,
    outcome: watch::Sender<Option<bool>>,
}

impl Drop for Out {
    fn drop(&mut self) {
        self.outcome
            .send_if_modified(|o| o.replace(o.unwrap_or(false)).is_none());
        self.acks.finished(self.target, self.last, self.epoch);
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
        let Some((targets, request)) = self.request(prev, entries) else {
            return;
        };
        let Some(last) = request.entries.last().map(|e| e.log_id) else {
            return;
        };
        let vote = request.vote;
        // One request out per voter: one still out means the leader is
        // busy, and its replication overlaps the syncs anyway.
        let out: Vec<(String, Out)> = targets
            .into_iter()
            .filter_map(|(target, address)| {
                let Some((outcome, epoch)) = self.acks.sending(target, vote, last) else {
                    self.metrics.skipped.fetch_add(1, Ordering::Relaxed);
                    return None;
                };
                let out = Out {
                    acks: self.acks.clone(),
                    target,
                    last,
                    epoch,
                    outcome,
                };
                Some((address, out))
            })
            .collect();
        if out.is_empty() {
            return;
        }
        let (peers, timeout) = (self.peers.clone(), self.timeout);
        let metrics = self.metrics.clone();
        let sent = Instant::now();
        runtime.spawn(async move {
            let body = match encode(&request) {
                Ok(b) => b,
                Err(e) => {
                    debug!(error = %e, "eager append not encoded");
                    return;
                }
            };
            for (address, out) in out {
                let (peers, body) = (peers.clone(), body.clone());
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let answer: Result<
                        Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>,
                        _,
                    > = peers
                        .call_encoded(&address, out.target, PATH_APPEND, body, timeout)
                        .await;
                    let counter = match answer {
                        Ok(Ok(AppendEntriesResponse::Success)) => {
                            out.acks.accepted(&out, vote, sent);
                            out.outcome.send_replace(Some(true));
                            &metrics.accepted
                        }
                        Ok(_) => &metrics.rejected,
                        Err(e) => {
                            debug!(error = %e, target = out.target, "eager append failed");
                            &metrics.failed
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn acks() -> Arc<Acks> {
        Arc::new(Acks::new(
            Duration::from_secs(5),
            Arc::new(EagerMetrics::default()),
        ))
    }

    /// A request out to `target`, as `Eager` sends one.
    fn out(acks: &Arc<Acks>, target: NodeId, vote: Vote<NodeId>, last: LogId<NodeId>) -> Out {
        let (outcome, epoch) = acks.sending(target, vote, last).expect("nothing out");
        Out {
            acks: acks.clone(),
            target,
            last,
            epoch,
            outcome,
        }
    }

    /// The request out is answered: accepted.
    fn accept(out: Out, vote: Vote<NodeId>, sent: Instant) {
        out.acks.accepted(&out, vote, sent);
        out.outcome.send_replace(Some(true));
    }

    const WAIT: Duration = Duration::from_millis(200);

    /// Entries count as accepted only when the voter accepted them (or
    /// later ones) under the same vote; anything else must be sent.
    #[tokio::test]
    async fn only_entries_accepted_under_the_same_vote_are_covered() {
        let acks = acks();
        let vote = Vote::new_committed(2, 1);
        assert!(
            !acks.covers(2, &vote, log_id(2, 5), WAIT).await,
            "nothing sent yet"
        );
        accept(out(&acks, 2, vote, log_id(2, 5)), vote, Instant::now());
        assert!(acks.covers(2, &vote, log_id(2, 5), WAIT).await);
        assert!(
            acks.covers(2, &vote, log_id(2, 4), WAIT).await,
            "earlier entries"
        );
        assert!(
            !acks.covers(2, &vote, log_id(2, 6), WAIT).await,
            "later entries"
        );
        assert!(
            !acks.covers(3, &vote, log_id(2, 5), WAIT).await,
            "another voter"
        );
        let newer = Vote::new_committed(3, 1);
        assert!(
            !acks.covers(2, &newer, log_id(2, 5), WAIT).await,
            "another vote"
        );
        // A request under a newer vote forgets what was accepted before it.
        let _out = out(&acks, 2, newer, log_id(3, 6));
        assert!(!acks.covers(2, &vote, log_id(2, 5), WAIT).await);
        assert_eq!(acks.metrics.covered.load(Ordering::Relaxed), 2);
    }

    /// A request that asks for entries a request still out carries waits
    /// for that one's answer: covered when accepted, sent when rejected or
    /// when the answer does not come in time.
    #[tokio::test]
    async fn a_request_out_is_awaited() {
        let acks = acks();
        let vote = Vote::new_committed(2, 1);
        let accepted = out(&acks, 2, vote, log_id(2, 7));
        let asking = {
            let acks = acks.clone();
            tokio::spawn(async move { acks.covers(2, &vote, log_id(2, 7), WAIT).await })
        };
        tokio::task::yield_now().await;
        accept(accepted, vote, Instant::now());
        assert!(asking.await.unwrap());

        let rejected = out(&acks, 3, vote, log_id(2, 7));
        let asking = {
            let acks = acks.clone();
            tokio::spawn(async move { acks.covers(3, &vote, log_id(2, 7), WAIT).await })
        };
        tokio::task::yield_now().await;
        drop(rejected);
        assert!(!asking.await.unwrap(), "a rejected request covers nothing");

        let _silent = out(&acks, 4, vote, log_id(2, 7));
        let t = Instant::now();
        assert!(!acks.covers(4, &vote, log_id(2, 7), WAIT).await);
        assert!(t.elapsed() >= WAIT, "waited for the answer");
    }

    /// One request out per voter: the next is refused until the one out
    /// has ended, however it ended.
    #[tokio::test]
    async fn one_request_out_per_voter() {
        let acks = acks();
        let vote = Vote::new_committed(2, 1);
        let first = out(&acks, 2, vote, log_id(2, 5));
        assert!(acks.sending(2, vote, log_id(2, 6)).is_none());
        let _other = out(&acks, 3, vote, log_id(2, 6));
        drop(first);
        let second = out(&acks, 2, vote, log_id(2, 6));
        accept(second, vote, Instant::now());
        assert!(acks.sending(2, vote, log_id(2, 7)).is_some());
    }

    /// A new replication to a voter (it may have joined again with an
    /// empty log under the same id) starts from nothing accepted.
    #[tokio::test]
    async fn a_new_replication_forgets_what_was_accepted() {
        let acks = acks();
        let vote = Vote::new_committed(2, 1);
        accept(out(&acks, 2, vote, log_id(2, 5)), vote, Instant::now());
        accept(out(&acks, 3, vote, log_id(2, 5)), vote, Instant::now());
        acks.forget(2);
        assert!(!acks.covers(2, &vote, log_id(2, 5), WAIT).await);
        assert!(
            acks.covers(3, &vote, log_id(2, 5), WAIT).await,
            "other voters keep theirs"
        );
        // A request sent before the new replication started: its answer
        // is not taken, and it neither covers nor blocks the next one.
        let before = out(&acks, 2, vote, log_id(2, 6));
        acks.forget(2);
        let next = out(&acks, 2, vote, log_id(2, 7));
        accept(before, vote, Instant::now());
        assert!(!acks.covers(2, &vote, log_id(2, 6), Duration::ZERO).await);
        assert!(
            acks.sending(2, vote, log_id(2, 8)).is_none(),
            "the next is still out"
        );
        drop(next);
        assert!(acks.sending(2, vote, log_id(2, 8)).is_some());
    }

    /// An acceptance older than the peer timeout is not used: openraft
    /// takes an answer as a sign of life at the time it asked.
    #[tokio::test]
    async fn an_old_acceptance_is_not_used() {
        let acks = Arc::new(Acks::new(
            Duration::from_millis(20),
            Arc::new(EagerMetrics::default()),
        ));
        let vote = Vote::new_committed(2, 1);
        accept(out(&acks, 2, vote, log_id(2, 5)), vote, Instant::now());
        assert!(acks.covers(2, &vote, log_id(2, 5), WAIT).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!acks.covers(2, &vote, log_id(2, 5), WAIT).await);
    }
}

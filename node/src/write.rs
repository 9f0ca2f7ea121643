//! The write path. A write becomes a [`CommandEnvelope`]; on the leader the
//! batcher coalesces whatever is queued into one Raft entry (one log fsync
//! for many writes); on a follower it is forwarded to the leader. Either way
//! it is retried across a leader change, bounded by a deadline, under the
//! same idempotency key, so it applies at most once.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use pulseplane_core::{CommandEnvelope, CommandError, Outcome};
use pulseplane_raft_store::{NodeId, Proposal};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::raft::Raft;
use crate::raft::client::PeerClient;

/// Path of the forwarding RPC.
pub const PATH_PROPOSE: &str = "/raft/propose";

/// Raft entries in flight at once; the queue fills while they commit, and
/// the next entry takes all of it.
const IN_FLIGHT: usize = 2;

/// An entry stops taking commands once it holds this many bytes (so one
/// entry is at most this plus one request body), which keeps every append
/// RPC within the peer body limit.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// What a command costs in an entry besides its request body (keys,
/// actor, envelope).
const COMMAND_OVERHEAD_BYTES: usize = 512;

/// A committed write: the log index of its entry and the command's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    pub log_index: u64,
    pub result: Result<Outcome, CommandError>,
}

/// Why a write was not committed.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum WriteError {
    /// No leader is known; retry later.
    #[error("the cluster has no leader")]
    NoLeader,
    /// This node is not the leader (a forwarded write reached a follower).
    #[error("node is not the leader; the leader is {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    /// The deadline passed; the write may or may not have been applied. A
    /// retry with the same idempotency key is safe.
    #[error(
        "the write did not commit within the deadline; retrying with the same Idempotency-Key is safe"
    )]
    Timeout,
    #[error("the node is shutting down")]
    ShuttingDown,
}

struct Pending {
    command: CommandEnvelope,
    /// Approximate encoded size, to bound an entry's bytes.
    size: usize,
    respond_to: oneshot::Sender<Result<Committed, WriteError>>,
}

/// Submits writes; clones share the batcher.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    queue: mpsc::Sender<Pending>,
    peers: PeerClient,
    timeout: Duration,
}

impl Writer {
    /// Starts the batcher task; it stops with `cancel`.
    pub fn start(
        id: NodeId,
        raft: Raft,
        peers: PeerClient,
        timeout: Duration,
        max_batch: usize,
        cancel: CancellationToken,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let task = tokio::spawn(batcher(raft.clone(), rx, max_batch, cancel));
        let writer = Writer {
            inner: Arc::new(Inner {
                id,
                raft,
                queue: tx,
                peers,
                timeout,
            }),
        };
        (writer, task)
    }

    /// The overall write deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Commits `command` through the leader, wherever it is, retrying across
    /// leader changes until the deadline. `body_len` is the size of the
    /// request that carried it.
    pub async fn write(
        &self,
        command: CommandEnvelope,
        body_len: usize,
    ) -> Result<Committed, WriteError> {
        let size = body_len.saturating_add(COMMAND_OVERHEAD_BYTES);
        let deadline = Instant::now() + self.inner.timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let leader = self.inner.raft.metrics().borrow().current_leader;
            let attempt = match leader {
                Some(l) if l == self.inner.id => {
                    // A leader that lost its quorum never commits: bound the wait.
                    let left = deadline.saturating_duration_since(Instant::now());
                    let proposed = self.propose_local(command.clone(), size);
                    match tokio::time::timeout(left, proposed).await {
                        Ok(r) => r,
                        Err(_) => return Err(WriteError::Timeout),
                    }
                }
                Some(l) => self.forward(l, &command, deadline).await,
                None => Err(WriteError::NoLeader),
            };
            match attempt {
                Ok(c) => return Ok(c),
                Err(WriteError::ShuttingDown) => return Err(WriteError::ShuttingDown),
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(match e {
                            WriteError::NoLeader => WriteError::NoLeader,
                            _ => WriteError::Timeout,
                        });
                    }
                    debug!(error = %e, "write retry");
                    let jitter =
                        Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                    tokio::time::sleep((backoff + jitter).min(deadline - now)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
            }
        }
    }

    /// Queues `command` for the local batcher (this node believes it leads).
    pub async fn propose_local(
        &self,
        command: CommandEnvelope,
        size: usize,
    ) -> Result<Committed, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .queue
            .send(Pending {
                command,
                size,
                respond_to: tx,
            })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.map_err(|_| WriteError::ShuttingDown)?
    }

    async fn forward(
        &self,
        leader: NodeId,
        command: &CommandEnvelope,
        deadline: Instant,
    ) -> Result<Committed, WriteError> {
        let address = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
        };
        let Some(address) = address else {
            return Err(WriteError::NotLeader { leader: None });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let answer: Result<Result<Committed, WriteError>, _> = self
            .inner
            .peers
            .call(
                &address,
                leader,
                PATH_PROPOSE,
                command,
                left.max(Duration::from_millis(10)),
            )
            .await;
        match answer {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, leader, "forwarding a write failed");
                Err(WriteError::NotLeader {
                    leader: Some(leader),
                })
            }
        }
    }
}

/// Takes what is queued, up to `max_batch` commands or
/// [`MAX_ENTRY_BYTES`], and proposes it as one entry; up to [`IN_FLIGHT`] entries commit at once.
async fn batcher(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            p = rx.recv() => match p {
                Some(p) => p,
                None => break,
            },
        };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < max_batch && bytes < MAX_ENTRY_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (commands, waiting): (Vec<CommandEnvelope>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.respond_to)).unzip();
        let proposal = Proposal {
            commands: commands.into(),
        };
        let receiver = raft.client_write_ff(proposal).await;
        tokio::spawn(async move {
            let _permit = permit;
            let answer = match receiver {
                Err(_) => Err(WriteError::ShuttingDown),
                Ok(rx) => match rx.await {
                    Err(_) => Err(WriteError::ShuttingDown),
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(WriteError::NotLeader {
                        leader: f.leader_id,
                    }),
                    Ok(Err(ClientWriteError::ChangeMembershipError(_))) => {
                        Err(WriteError::NotLeader { leader: None })
                    }
                },
            };
            match answer {
                Ok(resp) => {
                    let log_index = resp.log_id.index;
                    let mut results = resp.data.results.into_iter();
                    for respond_to in waiting {
                        let result = results
                            .next()
                            .ok_or(WriteError::NoLeader)
                            .map(|result| Committed { log_index, result });
                        let _ = respond_to.send(result);
                    }
                }
                Err(e) => {
                    for respond_to in waiting {
                        let _ = respond_to.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

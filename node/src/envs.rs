//! Environment actors: one per environment on every node.
//!
//! An actor owns its environment's materialized published snapshot: its
//! gzip form, the serialized JSON bytes (kept when small, otherwise made on
//! the first request that wants them), the ETag, the compiled flag set (for
//! preview evaluation) and the long-poll waiters (subscribers of its
//! `watch` channel).
//!
//! Raft apply never talks to an actor. Apply only bumps the state machine's
//! applied-index watch; the dispatcher task wakes on it, compares each
//! environment's (creation time, version) with what it last handed out, and
//! copies the published content of the changed ones under a short read lock
//! into the owning actor's mailbox. The actor serializes, compresses and
//! compiles on a blocking thread, then swaps in the new `Arc<Published>`.
//!
//! An actor that builds a newer version than the one it served queues a
//! change notice for Redis (`crate::notify`), when one is configured. It
//! also counts its snapshot polls and keeps the SDK instances that polled
//! it (the fleet).
//!
//! Reads never go through a mailbox: a request loads the current `Arc` from
//! the actor's `watch` channel. An environment with no traffic costs one
//! parked task, one map entry and its current snapshot.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use pulseplane_core::snapshot::snapshot_json;
use pulseplane_core::state::EnvState;
use pulseplane_core::{Flag, FlagSet, Segment, Snapshot};
use pulseplane_raft_store::StateMachineStore;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use crate::notify::{Notice, Notifier};

/// How long a fleet instance counts as live after its last poll.
pub const FLEET_WINDOW: Duration = Duration::from_secs(300);
/// How many instances an environment tracks at most per node.
pub const FLEET_MAX: usize = 100_000;

/// An environment's published snapshot, ready to serve.
#[derive(Debug)]
pub struct Published {
    pub env: String,
    pub version: u64,
    pub digest: String,
    /// `"<version>-<first 16 hex of the digest>"`, quoted.
    pub etag: HeaderValue,
    /// The applied log index the content was copied at.
    pub applied_index: u64,
    /// The snapshot as compact JSON, gzip-compressed once.
    pub gzip: Bytes,
    /// The size of the snapshot's JSON.
    pub body_len: usize,
    /// The snapshot as compact JSON: set at build when it is at most
    /// [`KEEP_PLAIN_BYTES`], otherwise decompressed from `gzip` on the first
    /// request that does not accept gzip (SDKs do), then kept until the
    /// next publish.
    plain: std::sync::OnceLock<Bytes>,
    /// The compiled flag set, for preview evaluation: compiled from the
    /// JSON on the first preview, not at every publish (for a large
    /// environment it is several times the size of the JSON, and only
    /// previews use it).
    flags: std::sync::OnceLock<Option<Arc<FlagSet>>>,
}

/// A snapshot whose JSON is at most this size keeps it beside its gzip
/// form; a larger one keeps only the gzip form until a request needs the
/// JSON (10,000 flags with one targeting rule each: 4.7 MB of JSON, 73 KB
/// gzipped).
pub const KEEP_PLAIN_BYTES: usize = 256 * 1024;

impl Published {
    /// The snapshot as compact JSON; decompresses it, off the async
    /// workers, when this is the first request for it. `None` only if that
    /// failed (logged).
    pub async fn body(self: &Arc<Self>) -> Option<Bytes> {
        if let Some(b) = self.plain.get().filter(|b| !b.is_empty()) {
            return Some(b.clone());
        }
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.body_blocking()).await {
            Ok(b) => b,
            Err(e) => {
                error!(env = %self.env, version = self.version, error = %e, "decompressing the snapshot failed");
                None
            }
        }
    }

    /// [`Published::body`] for a blocking thread. Requests that want it at
    /// once wait for the first one's decompression.
    pub fn body_blocking(&self) -> Option<Bytes> {
        let plain = self.plain.get_or_init(|| {
            let mut out = Vec::with_capacity(self.body_len);
            let mut gz = flate2::read::GzDecoder::new(&self.gzip[..]);
            match std::io::Read::read_to_end(&mut gz, &mut out) {
                Ok(_) => Bytes::from(out.into_boxed_slice()),
                Err(e) => {
                    error!(env = %self.env, version = self.version, error = %e, "the snapshot's gzip form does not decompress");
                    // Empty: a snapshot's JSON never is.
                    Bytes::new()
                }
            }
        });
        (!plain.is_empty()).then(|| plain.clone())
    }

    /// The compiled flag set (compiled on first use; `None` if the
    /// snapshot does not compile, which publishing rules out). Blocks.
    pub fn flag_set(&self) -> Option<Arc<FlagSet>> {
        self.flags
            .get_or_init(|| {
                match Snapshot::load(&self.body_blocking()?) {
                    Ok((_, set)) => Some(Arc::new(set)),
                    Err(e) => {
                        error!(env = %self.env, version = self.version, error = %e, "published snapshot does not compile");
                        None
                    }
                }
            })
            .clone()
    }
}

/// What the dispatcher copies out of the state for an actor.
struct Source {
    version: u64,
    applied_index: u64,
    published_at_ms: Option<i64>,
    flags: Vec<Arc<Flag>>,
    segments: Vec<Arc<Segment>>,
}

impl Source {
    fn of(e: &EnvState, applied_index: u64) -> Source {
        let version = e.version();
        let record = e.version_record(version);
        Source {
            version,
            applied_index,
            published_at_ms: record.map(|r| r.at_ms),
            flags: e
                .published_flags
                .keys()
                .filter_map(|k| e.published_flag_shared(k))
                .collect(),
            segments: e
                .published_segments
                .keys()
                .filter_map(|k| e.published_segment_shared(k))
                .collect(),
        }
    }
}

/// One SDK instance as last seen by this node.
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: u64,
    at: Instant,
}

/// One environment's actor state shared with request handlers.
pub struct EnvActor {
    /// `None` until the first snapshot is built, and again once the
    /// environment is deleted.
    current: watch::Sender<Option<Arc<Published>>>,
    fleet: Mutex<Fleet>,
    /// Snapshot polls answered: [200, 304] plain, then [200, 304] that
    /// asked to wait (long-polls).
    polls: [AtomicU64; 4],
}

/// The instances seen, and when expired ones were last swept out.
struct Fleet {
    seen: HashMap<String, Seen>,
    swept: Instant,
}

/// How often the fleet map drops instances older than the window.
const FLEET_SWEEP: Duration = Duration::from_secs(10);

impl EnvActor {
    /// The current snapshot.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.current.borrow().clone()
    }

    /// A waiter: woken on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.current.subscribe()
    }

    /// Counts one answered snapshot poll.
    pub fn count_poll(&self, not_modified: bool, long_poll: bool) {
        let i = usize::from(not_modified) + 2 * usize::from(long_poll);
        self.polls[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Snapshot polls answered so far: `(status, long_poll, count)`.
    pub fn polls(&self) -> [(u16, bool, u64); 4] {
        let n = |i: usize| self.polls[i].load(Ordering::Relaxed);
        [
            (200, false, n(0)),
            (304, false, n(1)),
            (200, true, n(2)),
            (304, true, n(3)),
        ]
    }

    /// Requests waiting on this environment (long-polls).
    pub fn waiters(&self) -> usize {
        self.current.receiver_count()
    }

    /// Records a poll from an SDK instance that has `version`.
    pub fn saw_instance(&self, instance: &str, version: u64) {
        let now = Instant::now();
        let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = fleet.seen.get_mut(instance) {
            *seen = Seen { version, at: now };
            return;
        }
        if now.duration_since(fleet.swept) >= FLEET_SWEEP {
            fleet.swept = now;
            fleet
                .seen
                .retain(|_, s| now.duration_since(s.at) < FLEET_WINDOW);
        }
        if fleet.seen.len() < FLEET_MAX {
            fleet
                .seen
                .insert(instance.to_owned(), Seen { version, at: now });
        }
    }

    /// The live instances that polled this node: id, version held, and
    /// milliseconds since the last poll.
    pub fn instances(&self) -> Vec<InstanceSeen> {
        let now = Instant::now();
        let fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        fleet
            .seen
            .iter()
            .filter(|(_, s)| now.duration_since(s.at) < FLEET_WINDOW)
            .map(|(id, s)| InstanceSeen {
                instance: id.clone(),
                version: s.version,
                ago_ms: u64::try_from(now.duration_since(s.at).as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// The live instances that polled this node, by the version they have.
    pub fn fleet(&self) -> FleetReport {
        let now = Instant::now();
        let current = self.current().map_or(0, |p| p.version);
        let fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_version: std::collections::BTreeMap<u64, usize> = Default::default();
        for s in fleet.seen.values() {
            if now.duration_since(s.at) < FLEET_WINDOW {
                *by_version.entry(s.version).or_default() += 1;
            }
        }
        let instances = by_version.values().sum();
        FleetReport {
            version: current,
            instances,
            converged: by_version.range(current..).map(|(_, n)| *n).sum::<usize>(),
            by_version: by_version
                .into_iter()
                .map(|(version, instances)| VersionCount { version, instances })
                .collect(),
            window_seconds: FLEET_WINDOW.as_secs(),
        }
    }
}

/// One SDK instance as one node last saw it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InstanceSeen {
    pub instance: String,
    pub version: u64,
    /// Milliseconds since its last poll.
    pub ago_ms: u64,
}

/// Which versions the SDK instances polling this node have.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetReport {
    /// The version this node serves.
    pub version: u64,
    /// Instances that polled within the window.
    pub instances: usize,
    /// Of those, how many have `version` or newer.
    pub converged: usize,
    pub by_version: Vec<VersionCount>,
    pub window_seconds: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionCount {
    pub version: u64,
    pub instances: usize,
}

/// All actors of this node.
pub struct Envs {
    actors: RwLock<HashMap<String, Arc<EnvActor>>>,
    /// Bumped whenever an actor is added, for requests that wait for an
    /// environment to appear.
    appeared: watch::Sender<u64>,
    node_id: HeaderValue,
    /// Queues a change notice for Redis when an actor has built a newly
    /// published version.
    notifier: Option<Notifier>,
}

impl Envs {
    pub fn new(node_id: u64, notifier: Option<Notifier>) -> Arc<Envs> {
        Arc::new(Envs {
            actors: RwLock::new(HashMap::new()),
            appeared: watch::Sender::new(0),
            node_id: HeaderValue::from(node_id),
            notifier,
        })
    }

    /// The node id as a header value.
    pub fn node_header(&self) -> &HeaderValue {
        &self.node_id
    }

    /// The actor of `env`, if this node knows the environment.
    pub fn get(&self, env: &str) -> Option<Arc<EnvActor>> {
        self.actors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(env)
            .cloned()
    }

    /// Change notices waiting for Redis (`None` without Redis).
    pub fn notices_queued(&self) -> Option<usize> {
        self.notifier.as_ref().map(Notifier::queued)
    }

    /// Every environment and its actor, sorted by key.
    pub fn actors(&self) -> Vec<(String, Arc<EnvActor>)> {
        let mut all: Vec<_> = self
            .actors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Wakes when an environment appears.
    pub fn watch_appeared(&self) -> watch::Receiver<u64> {
        self.appeared.subscribe()
    }

    /// Number of environment actors.
    pub fn len(&self) -> usize {
        self.actors.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, env: &str, actor: Arc<EnvActor>) {
        self.actors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(env.to_owned(), actor);
        self.appeared.send_modify(|n| *n += 1);
    }

    fn remove(&self, env: &str) -> Option<Arc<EnvActor>> {
        self.actors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(env)
    }
}

/// What the dispatcher remembers of each actor it feeds.
struct Handle {
    created_at_ms: i64,
    version: u64,
    mailbox: mpsc::UnboundedSender<Source>,
}

/// Starts the dispatcher; it runs until `stop` fires.
pub fn start(
    envs: Arc<Envs>,
    sm: StateMachineStore,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(dispatch(envs, sm, stop))
}

async fn dispatch(envs: Arc<Envs>, sm: StateMachineStore, stop: CancellationToken) {
    let mut applied = sm.subscribe();
    let mut handles: HashMap<String, Handle> = HashMap::new();
    loop {
        applied.borrow_and_update();
        let (changed, gone) = sm.read(|last, state| {
            let index = last.map_or(0, |l| l.index);
            let mut changed = Vec::new();
            for (key, e) in &state.environments {
                let fresh = handles.get(key).is_some_and(|h| {
                    h.created_at_ms == e.created_at_ms && h.version == e.version()
                });
                if !fresh {
                    changed.push((key.clone(), e.created_at_ms, Source::of(e, index)));
                }
            }
            let gone: Vec<String> = if handles.len() + changed.len() > state.environments.len() {
                handles
                    .keys()
                    .filter(|k| !state.environments.contains_key(*k))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            (changed, gone)
        });
        for key in gone {
            handles.remove(&key);
            if let Some(actor) = envs.remove(&key) {
                actor.current.send_replace(None);
            }
            debug!(env = %key, "environment actor stopped");
        }
        for (key, created_at_ms, source) in changed {
            let version = source.version;
            match handles.get_mut(&key) {
                Some(h) => {
                    h.created_at_ms = created_at_ms;
                    h.version = version;
                    let _ = h.mailbox.send(source);
                }
                None => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let _ = tx.send(source);
                    let actor = Arc::new(EnvActor {
                        current: watch::Sender::new(None),
                        fleet: Mutex::new(Fleet {
                            seen: HashMap::new(),
                            swept: Instant::now(),
                        }),
                        polls: Default::default(),
                    });
                    tokio::spawn(run_actor(
                        key.clone(),
                        created_at_ms,
                        actor.clone(),
                        rx,
                        envs.notifier.clone(),
                    ));
                    envs.insert(&key, actor);
                    handles.insert(
                        key,
                        Handle {
                            created_at_ms,
                            version,
                            mailbox: tx,
                        },
                    );
                }
            }
        }
        tokio::select! {
            r = applied.changed() => if r.is_err() { break },
            () = stop.cancelled() => break,
        }
    }
}

/// Runs one environment's actor. A version built after the first one is a
/// new publish seen live, and is announced through `notifier`; the first
/// build (node start, or a new environment) announces nothing.
async fn run_actor(
    env: String,
    created_at_ms: i64,
    actor: Arc<EnvActor>,
    mut mailbox: mpsc::UnboundedReceiver<Source>,
    notifier: Option<Notifier>,
) {
    while let Some(mut source) = mailbox.recv().await {
        // Only the newest content matters.
        while let Ok(newer) = mailbox.try_recv() {
            source = newer;
        }
        let name = env.clone();
        match tokio::task::spawn_blocking(move || build(&name, source)).await {
            // A mailbox closed meanwhile means the environment was deleted:
            // its snapshot must not come back.
            Ok(_) if mailbox.is_closed() => break,
            Ok(p) => {
                debug!(env = %env, version = p.version, bytes = p.body_len, gzip_bytes = p.gzip.len(), "snapshot ready");
                let notice = notifier.as_ref().map(|_| Notice {
                    env: env.clone(),
                    created_at_ms,
                    version: p.version,
                    digest: p.digest.clone(),
                });
                let before = actor.current.send_replace(Some(Arc::new(p)));
                if let (Some(n), Some(notice)) = (&notifier, notice)
                    && before.is_some_and(|b| b.version < notice.version)
                {
                    n.notify(notice);
                }
            }
            Err(e) => error!(env = %env, error = %e, "building the snapshot failed"),
        }
    }
    actor.current.send_replace(None);
}

/// Serializes, compresses and compiles one snapshot.
fn build(env: &str, source: Source) -> Published {
    let (body, digest) = snapshot_json(
        env,
        source.version,
        source.published_at_ms,
        source.flags,
        source.segments,
    );
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    let gzip = match gz.write_all(&body).and_then(|()| gz.finish()) {
        Ok(g) => g,
        Err(e) => {
            // Writing to memory does not fail; if it did, the JSON is kept
            // and the gzip form is empty.
            error!(env = %env, error = %e, "compressing the snapshot failed");
            Vec::new()
        }
    };
    let short = digest.get(..16).unwrap_or(&digest);
    let etag = HeaderValue::from_str(&format!("\"{}-{short}\"", source.version))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    Published {
        env: env.to_owned(),
        version: source.version,
        digest,
        etag,
        applied_index: source.applied_index,
        body_len: body.len(),
        // Exact-size copies: the serializer and the encoder leave up to
        // half of their buffers unused, and these live until the next
        // publish.
        plain: if body.len() <= KEEP_PLAIN_BYTES || gzip.is_empty() {
            std::sync::OnceLock::from(Bytes::from(body.into_boxed_slice()))
        } else {
            std::sync::OnceLock::new()
        },
        gzip: Bytes::from(gzip.into_boxed_slice()),
        flags: std::sync::OnceLock::new(),
    }
}

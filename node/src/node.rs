//! One running node: its stores, Raft, the write path, and the HTTP server
//! that serves the public API, the admin API and the peer transport on one
//! port. [`run`] is what `pulseplane-node` does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::ListenerExt;
use openraft::ServerState;
use pulseplane_raft_store::{NodeId, StateMachineStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::NodeConfig;
use crate::datadir::{DataDir, DataDirError, write_atomic};
use crate::envs::Envs;
use crate::identity::Authenticator;
use crate::metrics::{Metrics, Sample, label_value};
use crate::notify::Notifier;
use crate::raft::client::PeerClient;
use crate::raft::eager::{Eager, EagerMetrics};
use crate::raft::server::{LocalStatus, PATH_READ_INDEX};
use crate::raft::{self, Raft};
use crate::secret::Secret;
use crate::write::{WriteError, Writer};

/// Everything a request handler may need; shared as `Arc<Node>`.
pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    pub sm: StateMachineStore,
    pub peers: PeerClient,
    pub writer: Writer,
    pub secret: Secret,
    /// Turns credentials into callers.
    pub auth: Authenticator,
    /// Whether `/metrics`, and `/healthz` and `/readyz`, need `cluster.read`.
    pub protect_metrics: bool,
    pub protect_health: bool,
    pub max_body_bytes: usize,
    /// The API listener serves TLS (the console's cookies get `Secure`).
    pub tls: bool,
    /// The environment actors and their published snapshots.
    pub envs: Arc<Envs>,
    /// Bounds preview evaluations.
    pub evaluate_limiter: RateLimiter,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Fires when the node stops: long-polls answer at once.
    pub shutdown: CancellationToken,
    /// The commit index learned at start; ready once applied up to it.
    ready_target: Mutex<Option<u64>>,
    /// Set once the node has been ready: from then on it serves reads.
    caught_up: std::sync::atomic::AtomicBool,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot open the store: {0}")]
    Store(#[from] pulseplane_raft_store::StoreError),
    #[error(transparent)]
    Raft(#[from] raft::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("--redis-url: {0}")]
    Redis(String),
    #[error("--tls-ca-file: {0}")]
    PeerTls(String),
}

/// Why a node is not ready.
#[derive(Debug)]
pub enum NotReady {
    NotMember,
    NoLeader,
    CatchingUp { applied: u64, target: u64 },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::NotMember => f.write_str("not a member of a cluster yet"),
            NotReady::NoLeader => f.write_str("no leader known"),
            NotReady::CatchingUp { applied, target } => {
                write!(f, "applied index {applied}, catching up to {target}")
            }
        }
    }
}

impl Node {
    /// The advertised address of a member.
    pub fn member_address(&self, id: NodeId) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// This node's own view of itself.
    pub fn local_status(&self) -> LocalStatus {
        let m = self.raft.metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        LocalStatus {
            id: self.id,
            state: state.into(),
            leader: m.current_leader,
            term: m.current_term,
            applied_index: self.sm.applied_index(),
            last_log_index: m.last_log_index.unwrap_or(0),
        }
    }

    /// The leader's read index: the log index up to which this node must
    /// apply before a read is linearizable. On the leader this confirms
    /// leadership with a quorum; a follower asks the leader.
    pub async fn read_index(&self) -> Result<u64, WriteError> {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            None => Err(WriteError::NoLeader),
            Some(l) if l == self.id => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
                Err(_) => Err(WriteError::NotLeader { leader: None }),
            },
            Some(l) => {
                let address = self.member_address(l).ok_or(WriteError::NoLeader)?;
                self.peers
                    .call::<_, Result<u64, WriteError>>(
                        &address,
                        l,
                        PATH_READ_INDEX,
                        &(),
                        self.writer.timeout(),
                    )
                    .await
                    .map_err(|_| WriteError::NotLeader { leader: Some(l) })?
            }
        }
    }

    /// Figures read at scrape time for `/metrics`.
    pub fn samples(&self) -> Vec<Sample> {
        let status = self.local_status();
        let mut versions = Vec::new();
        let mut waiters = Vec::new();
        let mut instances = Vec::new();
        let mut converged = Vec::new();
        let mut polls = Vec::new();
        for (env, actor) in self.envs.actors() {
            let label = format!("env=\"{}\"", label_value(&env));
            let fleet = actor.fleet();
            versions.push((label.clone(), fleet.version as f64));
            waiters.push((label.clone(), actor.waiters() as f64));
            converged.push((label.clone(), fleet.converged as f64));
            for (status, long_poll, n) in actor.polls() {
                polls.push((
                    format!("{label},status=\"{status}\",long_poll=\"{long_poll}\""),
                    n as f64,
                ));
            }
            instances.push((label, fleet.instances as f64));
        }
        let (snapshots_built, snapshots_installed) = self.sm.snapshot_counts();
        let lag: Vec<(String, f64)> = {
            let m = self.raft.metrics().borrow().clone();
            let last = m.last_log_index.unwrap_or(0);
            m.replication
                .map(|r| {
                    r.iter()
                        .filter(|(id, _)| **id != self.id)
                        .map(|(id, matched)| {
                            let at = matched.map_or(0, |l| l.index);
                            (format!("follower=\"{id}\""), last.saturating_sub(at) as f64)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        vec![
            Sample::gauge(
                "pulseplane_redis_queue_length",
                "Change notices waiting to be published (0 without Redis).",
                self.envs.notices_queued().unwrap_or(0) as f64,
            ),
            Sample::gauge(
                "pulseplane_raft_term",
                "The Raft term this node is in.",
                status.term as f64,
            ),
            Sample::gauge(
                "pulseplane_raft_is_leader",
                "1 on the leader.",
                f64::from(u8::from(status.state == "leader")),
            ),
            Sample::gauge(
                "pulseplane_raft_applied_index",
                "The last log index applied to the state machine.",
                status.applied_index as f64,
            ),
            Sample::gauge(
                "pulseplane_raft_committed_index",
                "The last log index this node knows to be committed.",
                self.metrics
                    .log
                    .committed
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
            Sample::gauge(
                "pulseplane_raft_last_log_index",
                "The last log index in this node's log.",
                status.last_log_index as f64,
            ),
            Sample::labelled(
                "pulseplane_environment_version",
                "The published version this node serves, by environment.",
                "gauge",
                versions,
            ),
            Sample::labelled(
                "pulseplane_sdk_long_poll_waiters",
                "Snapshot requests waiting for a change, by environment.",
                "gauge",
                waiters,
            ),
            Sample::labelled(
                "pulseplane_sdk_instances",
                "SDK instances that polled this node in the fleet window, by environment.",
                "gauge",
                instances,
            ),
            Sample::labelled(
                "pulseplane_sdk_instances_converged",
                "Of those, the instances that have the version this node serves.",
                "gauge",
                converged,
            ),
            Sample::labelled(
                "pulseplane_snapshot_polls_total",
                "SDK snapshot polls answered, by environment, status (200 or 304) and whether they asked to wait (long-poll).",
                "counter",
                polls,
            ),
            Sample::labelled(
                "pulseplane_raft_replication_lag_entries",
                "On the leader: log entries each follower is behind.",
                "gauge",
                lag,
            ),
            Sample::labelled(
                "pulseplane_raft_snapshots_total",
                "Raft snapshots built here, or installed from the leader, since start.",
                "counter",
                vec![
                    ("kind=\"built\"".into(), snapshots_built as f64),
                    ("kind=\"installed\"".into(), snapshots_installed as f64),
                ],
            ),
        ]
    }

    /// Waits until this node has applied `index`, up to `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.sm.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if *rx.borrow_and_update() >= index {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && self.sm.applied_index() >= index
    }

    /// Ready: a member that knows a leader and has applied up to the commit
    /// index it learned at start.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let (member, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let member = m
                .membership_config
                .membership()
                .get_node(&self.id)
                .is_some();
            (member, m.current_leader)
        };
        if !member {
            return Err(NotReady::NotMember);
        }
        if leader.is_none() {
            return Err(NotReady::NoLeader);
        }
        let known = *self.ready_target.lock().unwrap_or_else(|p| p.into_inner());
        let target = match known {
            Some(t) => t,
            None => {
                let t = self.read_index().await.map_err(|_| NotReady::NoLeader)?;
                *self.ready_target.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
                t
            }
        };
        let applied = self.sm.applied_index();
        if applied < target {
            return Err(NotReady::CatchingUp { applied, target });
        }
        self.caught_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether this node may serve reads from its local state: once it has
    /// caught up with the commit index the cluster had when it started, so
    /// that it never serves state older than it served before it stopped.
    pub async fn may_serve_reads(&self) -> Result<(), NotReady> {
        if self.caught_up.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        // Boxed: this path is rare, and inline it would make every read's
        // future (held by each waiting long-poll) as large as the peer
        // requests it may make.
        Box::pin(self.readiness()).await
    }
}

/// A dev-mode secret kept in the data dir: the one there, or a new one that
/// is written there (mode 0600). Returns it and whether it is new.
#[allow(clippy::result_large_err)] // called once, at start
fn dev_secret(dir: &Path, name: &str) -> Result<(Secret, bool), NodeError> {
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(s) = Secret::new(text.trim())
    {
        return Ok((s, false));
    }
    std::fs::create_dir_all(dir).map_err(|source| DataDirError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let secret = Secret::generate();
    write_atomic(&path, format!("{}\n", secret.expose()).as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok((secret, true))
}

/// Builds a snapshot once `threshold` commands were applied since the last
/// one, checking every second: openraft's own policy counts log entries,
/// and one entry may carry hundreds of commands. Each node adds 0–37.5% to
/// the threshold by its id, so that replicas, which apply the same
/// commands, do not all build at the same moment.
async fn snapshot_by_commands(node: Arc<Node>, threshold: u64, cancel: CancellationToken) {
    let threshold = threshold.saturating_add(threshold / 8 * (node.id % 4));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.sm.commands_since_snapshot() >= threshold {
            info!(
                commands = node.sm.commands_since_snapshot(),
                "building a snapshot"
            );
            if node.raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

/// Runs the node until `shutdown` fires: stops accepting, finishes the
/// requests in flight, stops Raft (flushing the store), then returns.
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let cluster_secret = match &cfg.cluster_secret {
        Some(s) => s.clone(),
        None => dev_secret(&cfg.data_dir, "cluster-secret")?.0,
    };
    let dir = DataDir::open(&cfg.data_dir, cfg.node_id, &cluster_secret.fingerprint())?;
    let admin_token = match &cfg.admin_token {
        Some(t) => t.clone(),
        None => {
            let (token, new) = dev_secret(dir.path(), "admin-token")?;
            let path = dir.path().join("admin-token");
            if new {
                println!(
                    "pulseplane-node dev mode: admin token {} (also written to {})",
                    token.expose(),
                    path.display()
                );
            } else {
                println!(
                    "pulseplane-node dev mode: the admin token is in {}",
                    path.display()
                );
            }
            token
        }
    };
    // Bind before starting Raft so a taken port fails fast and cleanly.
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let (log, sm) = pulseplane_raft_store::open(&dir.raft_path())?;
    let log_metrics = log.metrics();
    let peers = PeerClient::new(cluster_secret.clone(), cfg.tls.as_ref(), cfg.peer_source_ip)
        .map_err(NodeError::PeerTls)?;
    let eager_metrics = Arc::new(EagerMetrics::default());
    let eager = Arc::new(Eager::new(
        cfg.node_id,
        peers.clone(),
        cfg.peer_timeout,
        eager_metrics.clone(),
    ));
    let acks = cfg.eager_replication.then(|| {
        log.set_append_observer(eager.clone());
        eager.acks()
    });
    let raft = raft::start(&cfg, log, sm.clone(), peers.clone(), acks).await?;
    eager.started(&raft);
    let tasks = CancellationToken::new();
    let metrics = Arc::new(Metrics {
        log: log_metrics,
        eager: eager_metrics,
        ..Metrics::default()
    });
    let (notifier, notifier_task) = match &cfg.redis {
        Some(r) => {
            let (n, task) =
                Notifier::start(r, metrics.clone(), tasks.clone()).map_err(NodeError::Redis)?;
            info!(prefix = %r.prefix, "change notices go to Redis");
            (Some(n), Some(task))
        }
        None => (None, None),
    };
    let (writer, batcher) = Writer::start(
        cfg.node_id,
        raft.clone(),
        peers.clone(),
        cfg.write_timeout,
        cfg.max_batch,
        tasks.clone(),
    );
    let node = Arc::new(Node {
        id: cfg.node_id,
        raft: raft.clone(),
        sm,
        peers,
        writer,
        secret: cluster_secret,
        auth: Authenticator {
            admin_token,
            jwt: cfg.jwt.clone(),
            proxy: cfg.trusted_proxy.clone(),
        },
        protect_metrics: cfg.protect_metrics,
        protect_health: cfg.protect_health,
        tls: cfg.tls.is_some(),
        max_body_bytes: cfg.max_body_bytes,
        envs: Envs::new(cfg.node_id, notifier),
        evaluate_limiter: RateLimiter::new(cfg.evaluate_rate),
        metrics,
        shutdown: shutdown.clone(),
        ready_target: Mutex::new(None),
        caught_up: std::sync::atomic::AtomicBool::new(false),
    });
    raft::form_cluster(&raft, &cfg).await?;
    let dispatcher = crate::envs::start(node.envs.clone(), node.sm.clone(), tasks.clone());
    let leaders = tokio::spawn(count_leader_changes(node.clone(), tasks.clone()));
    let trimmer = tokio::spawn(trim_memory(node.clone(), tasks.clone()));
    let compactor = tokio::spawn(snapshot_by_commands(
        node.clone(),
        cfg.snapshot_commands,
        tasks.clone(),
    ));
    let peer_limit = raft::server::peer_body_limit(cfg.snapshot_chunk_bytes);
    let app =
        crate::api::router(node.clone()).merge(raft::server::router(node.clone(), peer_limit));
    info!(
        node = cfg.node_id,
        listen = %cfg.listen,
        advertise = %cfg.advertise,
        tls = cfg.tls.is_some(),
        data_dir = %cfg.data_dir.display(),
        "pulseplane-node serving"
    );
    let served = match &cfg.tls {
        Some(tls) => crate::tls::serve(listener, app, tls, shutdown.clone()).await,
        None => {
            // Replies go out at once, not held back for the acknowledgement
            // of the previous segment (as the TLS listener does too).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    debug!(error = %e, "TCP_NODELAY not set");
                }
            });
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
        }
    };
    info!("stopped accepting requests; stopping raft");
    tasks.cancel();
    let _ = batcher.await;
    let _ = compactor.await;
    let _ = dispatcher.await;
    let _ = leaders.await;
    let _ = trimmer.await;
    if let Some(task) = notifier_task {
        let _ = task.await;
    }
    if let Err(e) = raft.shutdown().await {
        warn!(error = %e, "raft did not stop cleanly");
    }
    drop(node);
    drop(dir);
    if let Err(e) = served {
        error!(error = %e, "server failed");
        return Err(NodeError::Serve(e));
    }
    info!("stopped");
    Ok(())
}

/// Counts the leader changes this node sees, for `/metrics`.
async fn count_leader_changes(node: Arc<Node>, cancel: CancellationToken) {
    let mut rx = node.raft.metrics();
    let mut leader = rx.borrow_and_update().current_leader;
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = cancel.cancelled() => return,
        }
        let now = rx.borrow_and_update().current_leader;
        if now != leader {
            leader = now;
            node.metrics
                .leader_changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// How often the node checks whether to hand freed heap memory back.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Hands freed heap memory back to the system once the state has stopped
/// changing: after a check that finds the state (applied index, snapshots
/// built or installed) changed since the last trim but not since the
/// previous check. Applying large commands, building snapshots and
/// answering backups make large short-lived allocations; without this the
/// allocator keeps their pages, and the resident size stays at the peak.
/// Not trimming while writes flow matters: a trim holds the allocator's
/// lock while it walks the heap, and every thread that allocates waits.
async fn trim_memory(node: Arc<Node>, cancel: CancellationToken) {
    let state = |node: &Node| {
        let (built, installed) = node.sm.snapshot_counts();
        (node.sm.applied_index(), built + installed)
    };
    let mut trimmed_at = state(&node);
    let mut last = trimmed_at;
    loop {
        tokio::select! {
            () = tokio::time::sleep(TRIM_EVERY) => {}
            () = cancel.cancelled() => return,
        }
        let now = state(&node);
        let quiet = now == last;
        last = now;
        if !quiet || now == trimmed_at {
            continue;
        }
        trimmed_at = now;
        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
    }
}

/// Makes glibc's allocator use two arenas for all threads, unless the
/// environment chose (`MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`). The node's
/// own memory comes from jemalloc, but RocksDB's C++ side allocates from
/// glibc on its flush, compaction and writer threads; with glibc's default
/// of eight arenas per core those spread over many arenas whose partly used
/// pages cannot be handed back. Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        // SAFETY: mallopt only changes an allocator setting; it is called
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Hands the allocators' free pages back to the system: jemalloc's (the
/// node binary's allocator) and glibc's (which RocksDB's C++ side uses).
pub(crate) fn release_freed_memory() {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    // SAFETY: `arena.<all>.purge` takes no value and returns none; it only
    // returns unused dirty pages of every arena to the system. Its result
    // is ignored: a failed purge leaves the pages to the decay timer.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it
    // touches no memory in use and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A token bucket: `rate` per second, bursts of twice that.
pub struct RateLimiter {
    rate: f64,
    bucket: Mutex<(f64, std::time::Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> RateLimiter {
        let rate = f64::from(rate.max(1));
        RateLimiter {
            rate,
            bucket: Mutex::new((rate * 2.0, std::time::Instant::now())),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * self.rate;
        b.0 = (b.0 + refill).min(self.rate * 2.0);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.0) / self.rate))
        }
    }
}

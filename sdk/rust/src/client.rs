//! The client: the current compiled snapshot, typed evaluation, status and
//! listeners. The poller (`crate::poll`) feeds it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pulseplane_core::usage::{UsageCounters, UsageReport, UsageShard};
use pulseplane_core::{Context, EvaluationDetails, Flag, FlagSet, Snapshot};
use serde_json::Value;
use tokio::sync::watch;
use tracing::warn;

use crate::config::{Builder, Config, ConfigError};
use crate::hooks::{FlagChange, HookContext, HookDetails, Listener};
use crate::local::with_view;
use crate::poll::merge_usage;
use crate::{Details, ErrorCode, Reason};

/// Where the data in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Node,
    Cache,
    Bootstrap,
    Defaults,
}

/// What the client serves from, as [`Client::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A snapshot from a node, synced within the stale threshold.
    Ready,
    /// A snapshot from a node, but no successful sync within the threshold.
    Stale,
    /// The on-disk cache (no node answered yet).
    FromCache,
    /// The CI/CD bootstrap file (no node answered, no usable cache).
    FromBootstrap,
    /// Nothing: every evaluation returns the caller's default.
    DefaultsOnly,
}

/// One loaded, compiled snapshot.
pub(crate) struct Loaded {
    pub(crate) set: FlagSet,
    pub(crate) usage: UsageCounters,
    /// The usage shard of evaluations that cannot use their thread's view
    /// (see [`crate::local::with_view`]).
    pub(crate) fallback_usage: Mutex<Option<UsageShard>>,
    /// Each flag's key and a fingerprint of its content, to tell which
    /// flags a new snapshot changes (the flags themselves live on only in
    /// their compiled form).
    pub(crate) flags: BTreeMap<String, u64>,
    pub(crate) version: u64,
    pub(crate) digest: String,
    pub(crate) source: Source,
}

/// A snapshot parsed, verified and compiled: what [`Loaded`] is made of.
pub(crate) struct Parsed {
    /// The header: its flags and segments live on only in `set`.
    pub(crate) snapshot: Snapshot,
    pub(crate) fingerprints: Vec<(String, u64)>,
    pub(crate) set: FlagSet,
}

/// Parses, verifies and compiles a snapshot without keeping its flags.
pub(crate) fn parse_snapshot(bytes: &[u8]) -> Result<Parsed, pulseplane_core::SnapshotError> {
    let (snapshot, fingerprints, set) = Snapshot::load_compact(bytes, fingerprint)?;
    Ok(Parsed {
        snapshot,
        fingerprints,
        set,
    })
}

impl Loaded {
    pub(crate) fn new(parsed: Parsed, source: Source) -> Loaded {
        Loaded {
            usage: UsageCounters::new(&parsed.set),
            fallback_usage: Mutex::new(None),
            set: parsed.set,
            version: parsed.snapshot.version,
            digest: parsed.snapshot.digest,
            flags: parsed.fingerprints.into_iter().collect(),
            source,
        }
    }

    fn defaults(env: &str) -> Loaded {
        let set = FlagSet::compile(env, 0, &[], &[]).unwrap_or_else(|_| {
            // An empty set always compiles; this branch is unreachable.
            unreachable_empty()
        });
        Loaded {
            usage: UsageCounters::new(&set),
            fallback_usage: Mutex::new(None),
            set,
            flags: BTreeMap::new(),
            version: 0,
            digest: String::new(),
            source: Source::Defaults,
        }
    }
}

/// Hands the memory freed after loading a snapshot (its text, its parsed
/// flags) back to the system. glibc's allocator keeps freed memory for
/// reuse, so without this a client that loaded a large snapshot stays at
/// the size of the load's peak. Called after a new snapshot is installed
/// (rare), on the thread that loaded it.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it
    // touches no memory in use and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A hash of a flag's content (its JSON form); equal content, equal hash,
/// within one process.
fn fingerprint(flag: &Flag) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(flag).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cold]
fn unreachable_empty() -> FlagSet {
    // `FlagSet::compile` of no flags has nothing to refuse; should it ever,
    // the client still needs a set, and one with another name will do.
    FlagSet::compile("", 0, &[], &[]).unwrap_or_else(|_| std::process::abort())
}

/// Poll outcomes, counted since start.
#[derive(Debug, Default)]
pub(crate) struct PollCounters {
    pub(crate) updated: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) unchanged: AtomicU64,
    pub(crate) behind: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failovers: AtomicU64,
    pub(crate) notices: AtomicU64,
    pub(crate) notices_ignored: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
}

/// Counters a client exposes (see [`Client::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Polls that brought a newer snapshot.
    pub polls_updated: u64,
    /// Polls answered 304.
    pub polls_not_modified: u64,
    /// Polls that answered the version the client has.
    pub polls_unchanged: u64,
    /// Polls that answered an older version than the client has (ignored).
    pub polls_behind: u64,
    /// Polls that failed (connection, timeout, status).
    pub polls_failed: u64,
    /// Snapshots rejected: unparsable, digest mismatch, wrong environment,
    /// or a cache file that did not check out.
    pub snapshots_rejected: u64,
    /// Moves to another endpoint after a failure.
    pub failovers: u64,
    /// Change notices received for this environment (feature `redis`).
    pub notices: u64,
    /// Messages on the channel that were not a notice for this environment
    /// (malformed, or another environment's): ignored.
    pub notices_ignored: u64,
    /// Times the Redis listener (re)subscribed to the change channel.
    pub notice_subscriptions: u64,
    /// Seconds since the last successful sync with a node; `None` if never.
    pub seconds_since_sync: Option<f64>,
    /// The version in force.
    pub version: u64,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) current: ArcSwap<Loaded>,
    /// Unique among the process's clients: keys the threads' views.
    pub(crate) id: u64,
    /// Moves on each time a snapshot is installed, after `current` changed:
    /// a thread's view of an older generation is refreshed.
    pub(crate) generation: AtomicU64,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last good sync, plus one (0: never).
    last_sync: AtomicU64,
    pub(crate) ready: watch::Sender<bool>,
    listeners: RwLock<Vec<(Option<String>, Arc<Listener>)>>,
    pub(crate) counters: PollCounters,
    pub(crate) stop: watch::Sender<bool>,
    /// Usage counted on snapshots since replaced, not yet taken.
    retired_usage: Mutex<UsageReport>,
    /// The highest version a change notice announced and no poll has asked
    /// for yet (0: none).
    pub(crate) wanted: AtomicU64,
    /// Wakes the poller for a change notice.
    pub(crate) nudge: tokio::sync::Notify,
}

impl Inner {
    /// A change notice: version `version` was published. The poller asks
    /// for it at once (with `min_version`); a version the client has
    /// already changes nothing.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn notice(&self, version: u64) {
        self.counters.notices.fetch_add(1, Ordering::Relaxed);
        if version > self.current.load().version {
            self.wanted.fetch_max(version, Ordering::Relaxed);
            self.nudge.notify_one();
        }
    }

    /// Records a successful sync with a node (now).
    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_sync.store(ms, Ordering::Relaxed);
    }

    /// Announces that a node's snapshot is in force (and on disk).
    pub(crate) fn announce_ready(&self) {
        self.ready.send_if_modified(|r| !std::mem::replace(r, true));
    }

    fn since_sync(&self) -> Option<Duration> {
        match self.last_sync.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }

    /// Swaps in `next` and tells the listeners what changed. Listeners run
    /// without any lock held; one that panics is logged and skipped.
    pub(crate) fn install(&self, next: Loaded) {
        let next = Arc::new(next);
        let prev = self.current.swap(next.clone());
        self.generation.fetch_add(1, Ordering::Release);
        {
            let drained = prev.usage.drain(&prev.set);
            let mut retired = self.retired_usage.lock().unwrap_or_else(|p| p.into_inner());
            merge_usage(&mut retired, drained);
        }
        let listeners: Vec<(Option<String>, Arc<Listener>)> = self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if listeners.is_empty() {
            return;
        }
        let empty = Context::default();
        let null = Value::Null;
        let value = |l: &Loaded, key: &str| -> Option<Value> {
            l.flags.contains_key(key).then(|| {
                let d = l.set.json_details(key, &empty, &null);
                d.value.clone()
            })
        };
        let mut keys: Vec<&String> = prev.flags.keys().chain(next.flags.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if prev.flags.get(key) == next.flags.get(key) {
                continue;
            }
            let change = FlagChange {
                flag: key.clone(),
                old_value: value(&prev, key),
                new_value: value(&next, key),
                old_version: prev.version,
                new_version: next.version,
            };
            for (filter, listener) in &listeners {
                if filter.as_deref().is_none_or(|f| f == key) {
                    let call = std::panic::AssertUnwindSafe(|| listener(&change));
                    if std::panic::catch_unwind(call).is_err() {
                        warn!(flag = %key, "a change listener panicked");
                    }
                }
            }
        }
    }
}

/// Signals the poller to stop when the last [`Client`] handle is dropped.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// A Pulseplane client: cheap to clone, safe to share between threads.
/// Evaluation never blocks and never fails: the worst case is the caller's
/// default, with the reason.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

/// Reads a snapshot file (cache or bootstrap): parsed, digest checked,
/// compiled, and of the configured environment.
pub(crate) fn read_snapshot_file(path: &Path, env: &str) -> Result<Parsed, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let parsed = parse_snapshot(&bytes).map_err(|e| e.to_string())?;
    if parsed.snapshot.env != env {
        return Err(format!(
            "it is of environment {:?}, not {env:?}",
            parsed.snapshot.env
        ));
    }
    Ok(parsed)
}

impl Client {
    /// A builder for the client of `environment`.
    pub fn builder(environment: &str) -> Builder {
        Builder::new(environment)
    }

    /// Starts a client: loads the best local source at once (the cache,
    /// else the bootstrap file, else nothing), starts polling, and waits at
    /// most the init timeout for a fresh snapshot from a node. Only a
    /// configuration that cannot work is an error; an unreachable control
    /// plane is not.
    pub(crate) async fn start(builder: Builder) -> Result<Client, ConfigError> {
        builder.check()?;
        let config = builder.config;
        let env = config.environment.clone();
        let (stop, _) = watch::channel(false);
        let (ready, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            current: ArcSwap::from_pointee(Loaded::defaults(&env)),
            id: crate::local::next_client_id(),
            generation: AtomicU64::new(0),
            epoch: Instant::now(),
            last_sync: AtomicU64::new(0),
            ready,
            listeners: RwLock::new(Vec::new()),
            counters: PollCounters::default(),
            stop: stop.clone(),
            retired_usage: Mutex::new(UsageReport::default()),
            wanted: AtomicU64::new(0),
            nudge: tokio::sync::Notify::new(),
            config,
        });
        // The cache and the bootstrap file: the newer of the two that
        // check out (the cache on a tie).
        let mut best: Option<(Parsed, Source)> = None;
        let local = [
            (inner.config.cache_file.clone(), Source::Cache),
            (inner.config.bootstrap_file.clone(), Source::Bootstrap),
        ];
        for (path, source) in local {
            let Some(path) = path else { continue };
            if !path.exists() {
                if source == Source::Bootstrap {
                    warn!(path = %path.display(), "the bootstrap file does not exist");
                }
                continue;
            }
            let env = env.clone();
            let p = path.clone();
            match tokio::task::spawn_blocking(move || read_snapshot_file(&p, &env)).await {
                Ok(Ok(parsed)) => {
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| parsed.snapshot.version > b.snapshot.version)
                    {
                        best = Some((parsed, source));
                    }
                }
                Ok(Err(e)) => {
                    inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(path = %path.display(), error = %e, "snapshot file ignored");
                }
                Err(e) => warn!(error = %e, "reading a snapshot file failed"),
            }
        }
        if let Some((parsed, source)) = best {
            inner.install(Loaded::new(parsed, source));
            release_freed_memory();
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(inner.config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(pem) = &inner.config.tls_ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ConfigError::Http(format!("tls_ca_pem: {e}")))?;
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        let http = http.build().map_err(|e| ConfigError::Http(e.to_string()))?;
        let client = Client {
            _stop: Arc::new(StopOnDrop(stop)),
            inner: inner.clone(),
        };
        if !inner.config.endpoints.is_empty() {
            tokio::spawn(crate::poll::run(inner.clone(), http));
            #[cfg(feature = "redis")]
            if let Some(url) = inner.config.redis_url.clone() {
                let prefix = inner.config.redis_prefix.clone();
                tokio::spawn(crate::notices::listen(inner.clone(), url, prefix));
            }
            client.wait_ready(inner.config.init_timeout).await;
        }
        Ok(client)
    }

    /// Waits, at most `timeout`, until a snapshot from a node has been put
    /// in force (once; see [`Client::status`] for freshness since); true
    /// when it has.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Where the data in force comes from, and whether it is fresh.
    pub fn status(&self) -> Status {
        match self.inner.current.load().source {
            Source::Node => {
                if self.is_stale() {
                    Status::Stale
                } else {
                    Status::Ready
                }
            }
            Source::Cache => Status::FromCache,
            Source::Bootstrap => Status::FromBootstrap,
            Source::Defaults => Status::DefaultsOnly,
        }
    }

    fn is_stale(&self) -> bool {
        self.inner
            .since_sync()
            .is_none_or(|d| d > self.inner.config.stale_after)
    }

    /// The environment version in force (0 with no data).
    pub fn version(&self) -> u64 {
        self.inner.current.load().version
    }

    /// The id this client sends as `X-Pulseplane-Instance`.
    pub fn instance_id(&self) -> &str {
        &self.inner.config.instance_id
    }

    /// The digest of the snapshot in force (empty with no data).
    pub fn digest(&self) -> String {
        self.inner.current.load().digest.clone()
    }

    /// The flag keys in force.
    pub fn flag_keys(&self) -> Vec<String> {
        self.inner.current.load().flags.keys().cloned().collect()
    }

    /// Calls `listener` on every change of flag `flag` (or of any flag when
    /// `None`) brought by a new snapshot. It runs on the poller's task:
    /// keep it short, and capture a `Weak` rather than a `Client` clone
    /// (a listener holding a client keeps the poller alive).
    pub fn on_change(
        &self,
        flag: Option<&str>,
        listener: impl Fn(&FlagChange) + Send + Sync + 'static,
    ) {
        self.inner
            .listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((flag.map(str::to_owned), Arc::new(Box::new(listener))));
    }

    /// Poll counters and sync age.
    pub fn metrics(&self) -> Metrics {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Metrics {
            polls_updated: get(&c.updated),
            polls_not_modified: get(&c.not_modified),
            polls_unchanged: get(&c.unchanged),
            polls_behind: get(&c.behind),
            polls_failed: get(&c.errors),
            snapshots_rejected: get(&c.rejected),
            failovers: get(&c.failovers),
            notices: get(&c.notices),
            notices_ignored: get(&c.notices_ignored),
            notice_subscriptions: get(&c.subscriptions),
            seconds_since_sync: self.inner.since_sync().map(|d| d.as_secs_f64()),
            version: self.version(),
        }
    }

    /// Evaluations by flag and variant since the last call, across
    /// snapshot changes.
    pub fn take_usage(&self) -> UsageReport {
        let l = self.inner.current.load();
        let mut report = std::mem::take(
            &mut *self
                .inner
                .retired_usage
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        merge_usage(&mut report, l.usage.drain(&l.set));
        report
    }

    /// Stops polling; evaluation goes on with the data in force.
    pub fn close(&self) {
        self.inner.stop.send_replace(true);
    }

    // ---------------------------------------------------------- evaluation

    /// A boolean flag's value, or `default`.
    #[inline]
    pub fn bool_value(&self, key: &str, ctx: &Context, default: bool) -> bool {
        if !self.inner.config.hooks.is_empty() {
            return self.bool_details(key, ctx, default).value;
        }
        with_view(&self.inner, |l, usage| {
            let d = l.set.bool_details(key, ctx, default);
            usage.record(&d);
            d.value
        })
    }

    /// A string value, or `default`.
    pub fn string_value(&self, key: &str, ctx: &Context, default: &str) -> String {
        self.string_details(key, ctx, default).value
    }

    /// An integer value, or `default`.
    #[inline]
    pub fn int_value(&self, key: &str, ctx: &Context, default: i64) -> i64 {
        if !self.inner.config.hooks.is_empty() {
            return self.int_details(key, ctx, default).value;
        }
        with_view(&self.inner, |l, usage| {
            let d = l.set.int_details(key, ctx, default);
            usage.record(&d);
            d.value
        })
    }

    /// A number, or `default`.
    pub fn float_value(&self, key: &str, ctx: &Context, default: f64) -> f64 {
        self.float_details(key, ctx, default).value
    }

    /// Any value as JSON, or `default`.
    pub fn json_value(&self, key: &str, ctx: &Context, default: Value) -> Value {
        self.json_details(key, ctx, default).value
    }

    pub fn bool_details(&self, key: &str, ctx: &Context, default: bool) -> Details<bool> {
        self.evaluate(
            key,
            || Value::Bool(default),
            |l, usage| resolve(l.set.bool_details(key, ctx, default), usage, |v| *v),
            Value::Bool,
        )
    }

    pub fn string_details(&self, key: &str, ctx: &Context, default: &str) -> Details<String> {
        self.evaluate(
            key,
            || Value::from(default),
            |l, usage| {
                resolve(l.set.string_details(key, ctx, default), usage, |v| {
                    (*v).to_owned()
                })
            },
            Value::String,
        )
    }

    pub fn int_details(&self, key: &str, ctx: &Context, default: i64) -> Details<i64> {
        self.evaluate(
            key,
            || Value::from(default),
            |l, usage| resolve(l.set.int_details(key, ctx, default), usage, |v| *v),
            Value::from,
        )
    }

    pub fn float_details(&self, key: &str, ctx: &Context, default: f64) -> Details<f64> {
        self.evaluate(
            key,
            || Value::from(default),
            |l, usage| resolve(l.set.float_details(key, ctx, default), usage, |v| *v),
            Value::from,
        )
    }

    pub fn json_details(&self, key: &str, ctx: &Context, default: Value) -> Details<Value> {
        let for_hooks = if self.inner.config.hooks.is_empty() {
            Value::Null
        } else {
            default.clone()
        };
        self.evaluate(
            key,
            move || for_hooks,
            |l, usage| {
                resolve(l.set.json_details(key, ctx, &default), usage, |v| {
                    (*v).clone()
                })
            },
            |v| v,
        )
    }

    /// Runs the `before` hooks, evaluates (and counts), runs the `after` or
    /// `error` hooks then the `finally` hooks (both in reverse order, as
    /// OpenFeature does), and marks the result STALE when the data is.
    fn evaluate<U: Clone>(
        &self,
        key: &str,
        default_json: impl FnOnce() -> Value,
        eval: impl Fn(&Loaded, &UsageShard) -> Resolved<U>,
        to_json: impl Fn(U) -> Value,
    ) -> Details<U> {
        let hooks = &self.inner.config.hooks;
        let default = if hooks.is_empty() {
            Value::Null
        } else {
            default_json()
        };
        let hook_ctx = HookContext {
            flag: key,
            default: &default,
        };
        for h in hooks {
            h.before(&hook_ctx);
        }
        let (mut r, source) = with_view(&self.inner, |l, usage| (eval(l, usage), l.source));
        if source == Source::Defaults && r.error_code == Some(ErrorCode::FlagNotFound) {
            // No data at all: the flag is not missing, the provider is not
            // ready.
            r.error_code = Some(ErrorCode::ProviderNotReady);
        }
        let stale = source != Source::Node || self.is_stale();
        let reason = if r.error_code.is_some() {
            Reason::Error
        } else if stale && source != Source::Defaults {
            Reason::Stale
        } else {
            r.reason
        };
        if !hooks.is_empty() {
            let details = HookDetails {
                flag: key,
                value: to_json(r.value.clone()),
                variant: r.variant.as_deref(),
                reason,
                error_code: r.error_code,
                env_version: r.env_version,
            };
            for h in hooks.iter().rev() {
                if r.error_code.is_none() {
                    h.after(&hook_ctx, &details);
                } else {
                    h.error(&hook_ctx, &details);
                }
            }
            for h in hooks.iter().rev() {
                h.finally(&hook_ctx, &details);
            }
        }
        Details {
            value: r.value,
            variant: r.variant,
            reason,
            resolved_reason: r.reason,
            error_code: r.error_code,
            flag_version: r.flag_version,
            env_version: r.env_version,
        }
    }
}

/// An evaluation's result, owned.
struct Resolved<U> {
    value: U,
    variant: Option<String>,
    reason: Reason,
    error_code: Option<ErrorCode>,
    flag_version: u64,
    env_version: u64,
}

/// Counts `d` and makes it owned.
fn resolve<T, U>(
    d: EvaluationDetails<'_, T>,
    usage: &UsageShard,
    own: impl Fn(&T) -> U,
) -> Resolved<U> {
    usage.record(&d);
    Resolved {
        value: own(&d.value),
        variant: d.variant.map(str::to_owned),
        reason: Reason::from(d.reason),
        error_code: d.error_code,
        flag_version: d.flag_version,
        env_version: d.env_version,
    }
}

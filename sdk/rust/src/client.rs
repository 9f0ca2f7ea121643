//! The client: the current compiled snapshot, typed evaluation, status and
//! listeners. The poller (`crate::poll`) feeds it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pulseplane_core::usage::{UsageCounters, UsageReport};
use pulseplane_core::{Context, EvaluationDetails, Flag, FlagSet, Snapshot};
use serde_json::Value;
use tokio::sync::watch;
use tracing::warn;

use crate::config::{Builder, Config, ConfigError};
use crate::hooks::{FlagChange, HookContext, HookDetails, Listener};
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
    pub(crate) flags: BTreeMap<String, Flag>,
    pub(crate) version: u64,
    pub(crate) digest: String,
    pub(crate) source: Source,
}

impl Loaded {
    pub(crate) fn new(snapshot: Snapshot, set: FlagSet, source: Source) -> Loaded {
        Loaded {
            usage: UsageCounters::new(&set),
            set,
            version: snapshot.version,
            digest: snapshot.digest,
            flags: snapshot
                .flags
                .into_iter()
                .map(|f| (f.key.clone(), f))
                .collect(),
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
            set,
            flags: BTreeMap::new(),
            version: 0,
            digest: String::new(),
            source: Source::Defaults,
        }
    }
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
    /// Seconds since the last successful sync with a node; `None` if never.
    pub seconds_since_sync: Option<f64>,
    /// The version in force.
    pub version: u64,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) current: ArcSwap<Loaded>,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last good sync, plus one (0: never).
    last_sync: AtomicU64,
    pub(crate) ready: watch::Sender<bool>,
    listeners: RwLock<Vec<(Option<String>, Listener)>>,
    pub(crate) counters: PollCounters,
    pub(crate) stop: watch::Sender<bool>,
    /// The endpoint the poller uses now.
    pub(crate) endpoint: AtomicU64,
}

impl Inner {
    pub(crate) fn synced(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_sync.store(ms, Ordering::Relaxed);
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

    /// Swaps in `next` and tells the listeners what changed.
    pub(crate) fn install(&self, next: Loaded) {
        let next = Arc::new(next);
        let prev = self.current.swap(next.clone());
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
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
            for (filter, listener) in listeners.iter() {
                if filter.as_deref().is_none_or(|f| f == key) {
                    listener(&change);
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
pub(crate) fn read_snapshot_file(path: &Path, env: &str) -> Result<(Snapshot, FlagSet), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (snapshot, set) = Snapshot::load(&bytes).map_err(|e| e.to_string())?;
    if snapshot.env != env {
        return Err(format!(
            "it is of environment {:?}, not {env:?}",
            snapshot.env
        ));
    }
    Ok((snapshot, set))
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
            epoch: Instant::now(),
            last_sync: AtomicU64::new(0),
            ready,
            listeners: RwLock::new(Vec::new()),
            counters: PollCounters::default(),
            stop: stop.clone(),
            endpoint: AtomicU64::new(0),
            config,
        });
        let local = [
            (inner.config.cache_file.clone(), Source::Cache),
            (inner.config.bootstrap_file.clone(), Source::Bootstrap),
        ];
        for (path, source) in local {
            let Some(path) = path else { continue };
            let env = env.clone();
            let p = path.clone();
            let read = tokio::task::spawn_blocking(move || read_snapshot_file(&p, &env)).await;
            match read {
                Ok(Ok((snapshot, set))) => {
                    inner.install(Loaded::new(snapshot, set, source));
                    break;
                }
                Ok(Err(e)) => {
                    if path.exists() || source == Source::Bootstrap {
                        inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        warn!(path = %path.display(), error = %e, "snapshot file ignored");
                    }
                }
                Err(e) => warn!(error = %e, "reading a snapshot file failed"),
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(inner.config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        let client = Client {
            _stop: Arc::new(StopOnDrop(stop)),
            inner: inner.clone(),
        };
        if !inner.config.endpoints.is_empty() {
            tokio::spawn(crate::poll::run(inner.clone(), http));
            client.wait_ready(inner.config.init_timeout).await;
        }
        Ok(client)
    }

    /// Waits until a fresh snapshot from a node is in force, at most
    /// `timeout`; true when it is.
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

    /// The digest of the snapshot in force (empty with no data).
    pub fn digest(&self) -> String {
        self.inner.current.load().digest.clone()
    }

    /// The flag keys in force.
    pub fn flag_keys(&self) -> Vec<String> {
        self.inner.current.load().flags.keys().cloned().collect()
    }

    /// Calls `listener` on every change of flag `flag` (or of any flag when
    /// `None`) brought by a new snapshot.
    pub fn on_change(
        &self,
        flag: Option<&str>,
        listener: impl Fn(&FlagChange) + Send + Sync + 'static,
    ) {
        self.inner
            .listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((flag.map(str::to_owned), Box::new(listener)));
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
            seconds_since_sync: self.inner.since_sync().map(|d| d.as_secs_f64()),
            version: self.version(),
        }
    }

    /// Evaluations by flag and variant since the last call (for the
    /// snapshot in force; counts of replaced snapshots are dropped).
    pub fn take_usage(&self) -> UsageReport {
        let l = self.inner.current.load();
        l.usage.drain(&l.set)
    }

    /// Stops polling; evaluation goes on with the data in force.
    pub fn close(&self) {
        self.inner.stop.send_replace(true);
    }

    // ---------------------------------------------------------- evaluation

    /// A boolean flag's value, or `default`.
    #[inline]
    pub fn bool_value(&self, key: &str, ctx: &Context, default: bool) -> bool {
        let l = self.inner.current.load();
        if !self.inner.config.hooks.is_empty() {
            return self.bool_details(key, ctx, default).value;
        }
        let d = l.set.bool_details(key, ctx, default);
        l.usage.record(&d);
        d.value
    }

    /// A string value, or `default`.
    pub fn string_value(&self, key: &str, ctx: &Context, default: &str) -> String {
        self.string_details(key, ctx, default).value
    }

    /// An integer value, or `default`.
    #[inline]
    pub fn int_value(&self, key: &str, ctx: &Context, default: i64) -> i64 {
        let l = self.inner.current.load();
        if !self.inner.config.hooks.is_empty() {
            return self.int_details(key, ctx, default).value;
        }
        let d = l.set.int_details(key, ctx, default);
        l.usage.record(&d);
        d.value
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
        let l = self.inner.current.load();
        self.finish(key, &Value::Bool(default), l.set.bool_details(key, ctx, default), &l, |v| *v, Value::Bool)
    }

    pub fn string_details(&self, key: &str, ctx: &Context, default: &str) -> Details<String> {
        let l = self.inner.current.load();
        let d = l.set.string_details(key, ctx, default);
        self.finish(key, &Value::from(default), d, &l, |v| (*v).to_owned(), |v: String| Value::String(v))
    }

    pub fn int_details(&self, key: &str, ctx: &Context, default: i64) -> Details<i64> {
        let l = self.inner.current.load();
        self.finish(key, &Value::from(default), l.set.int_details(key, ctx, default), &l, |v| *v, Value::from)
    }

    pub fn float_details(&self, key: &str, ctx: &Context, default: f64) -> Details<f64> {
        let l = self.inner.current.load();
        self.finish(key, &Value::from(default), l.set.float_details(key, ctx, default), &l, |v| *v, Value::from)
    }

    pub fn json_details(&self, key: &str, ctx: &Context, default: Value) -> Details<Value> {
        let l = self.inner.current.load();
        let d = l.set.json_details(key, ctx, &default);
        self.finish(key, &default, d, &l, |v| (*v).clone(), |v| v)
    }

    /// Counts, runs the hooks, and turns core details into owned ones,
    /// marked STALE when the data is.
    fn finish<T, U>(
        &self,
        key: &str,
        default: &Value,
        d: EvaluationDetails<'_, T>,
        l: &Loaded,
        own: impl Fn(&T) -> U,
        to_json: impl Fn(U) -> Value,
    ) -> Details<U>
    where
        U: Clone,
    {
        l.usage.record(&d);
        let hooks = &self.inner.config.hooks;
        let hook_ctx = HookContext { flag: key, default };
        for h in hooks {
            h.before(&hook_ctx);
        }
        let stale = l.source != Source::Node || self.is_stale();
        let served = d.error_code.is_none() && d.variant.is_some();
        let reason = if d.error_code.is_some() {
            Reason::Error
        } else if stale && l.source != Source::Defaults {
            Reason::Stale
        } else {
            Reason::from(d.reason)
        };
        let value = own(&d.value);
        if !hooks.is_empty() {
            let details = HookDetails {
                flag: key,
                value: to_json(value.clone()),
                variant: d.variant,
                reason,
                env_version: d.env_version,
            };
            for h in hooks {
                if served {
                    h.after(&hook_ctx, &details);
                } else {
                    h.error(&hook_ctx, &details);
                }
            }
            for h in hooks {
                h.finally(&hook_ctx, &details);
            }
        }
        Details {
            value,
            variant: d.variant.map(str::to_owned),
            reason,
            resolved_reason: Reason::from(d.reason),
            error_code: d.error_code.map(ErrorCode::from),
            flag_version: d.flag_version,
            env_version: d.env_version,
        }
    }
}

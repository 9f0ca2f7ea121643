//! The client without a control plane: configuration checks, hooks,
//! usage counts, and local sources (the newer of cache and bootstrap).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulseplane_core::Flag;
use pulseplane_sdk::{
    Client, ConfigError, Context, Hook, HookContext, HookDetails, Reason, Snapshot, Status,
};
use serde_json::json;

fn file(dir: &std::path::Path, name: &str, version: u64, variant: &str) -> std::path::PathBuf {
    let mut f: Flag = serde_json::from_value(
        json!({"key": "a", "kind": "boolean", "default": {"variant": variant}, "version": 1}),
    )
    .unwrap();
    f.normalize();
    let path = dir.join(name);
    std::fs::write(
        &path,
        Snapshot::new("prod", version, Some(0), vec![f], vec![]).to_json(),
    )
    .unwrap();
    path
}

struct Recorder(&'static str, Arc<Mutex<Vec<String>>>);

impl Hook for Recorder {
    fn before(&self, c: &HookContext<'_>) {
        self.1
            .lock()
            .unwrap()
            .push(format!("{} before {}", self.0, c.flag));
    }
    fn after(&self, _: &HookContext<'_>, d: &HookDetails<'_>) {
        self.1
            .lock()
            .unwrap()
            .push(format!("{} after {}", self.0, d.value));
    }
    fn error(&self, _: &HookContext<'_>, d: &HookDetails<'_>) {
        self.1
            .lock()
            .unwrap()
            .push(format!("{} error {:?}", self.0, d.error_code));
    }
    fn finally(&self, _: &HookContext<'_>, _: &HookDetails<'_>) {
        self.1.lock().unwrap().push(format!("{} finally", self.0));
    }
}

#[tokio::test]
async fn hooks_run_in_openfeature_order_and_usage_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let c = Client::builder("prod")
        .bootstrap_file(file(dir.path(), "b.json", 3, "on"))
        .hook(Arc::new(Recorder("h1", log.clone())))
        .hook(Arc::new(Recorder("h2", log.clone())))
        .start()
        .await
        .unwrap();
    assert_eq!(c.status(), Status::FromBootstrap);
    let ctx = Context::new("u");
    assert!(c.bool_value("a", &ctx, false));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "h1 before a",
            "h2 before a",
            "h2 after true",
            "h1 after true",
            "h2 finally",
            "h1 finally"
        ]
    );
    log.lock().unwrap().clear();
    assert_eq!(c.string_value("missing", &ctx, "dflt"), "dflt");
    assert_eq!(
        *log.lock().unwrap(),
        [
            "h1 before missing",
            "h2 before missing",
            "h2 error Some(FlagNotFound)",
            "h1 error Some(FlagNotFound)",
            "h2 finally",
            "h1 finally"
        ]
    );
    let d = c.bool_details("a", &ctx, false);
    assert_eq!(
        (d.reason, d.resolved_reason),
        (Reason::Stale, Reason::Static)
    );
    let usage = c.take_usage();
    assert_eq!(usage.flags["a"]["on"], 2);
    assert_eq!(usage.unknown, 1);
    assert!(
        c.take_usage()
            .flags
            .values()
            .all(|v| v.values().all(|n| *n == 0))
    );
}

#[tokio::test]
async fn usage_from_many_threads_and_clients_is_counted_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let on = Client::builder("prod")
        .bootstrap_file(file(dir.path(), "on.json", 3, "on"))
        .start()
        .await
        .unwrap();
    let off = Client::builder("prod")
        .bootstrap_file(file(dir.path(), "off.json", 3, "off"))
        .start()
        .await
        .unwrap();
    let ctx = Context::new("u");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (on, off, ctx) = (on.clone(), off.clone(), &ctx);
            s.spawn(move || {
                for i in 0..1000 {
                    assert!(on.bool_value("a", ctx, false));
                    assert!(!off.bool_value("a", ctx, true));
                    if i % 10 == t {
                        let _ = on.bool_details("missing", ctx, false);
                    }
                }
            });
        }
    });
    // A client dropped while threads' views of it remain, then a new one.
    drop(off);
    let again = Client::builder("prod")
        .bootstrap_file(file(dir.path(), "off.json", 3, "off"))
        .start()
        .await
        .unwrap();
    assert!(!again.bool_value("a", &ctx, true));
    let usage = on.take_usage();
    assert_eq!(usage.flags["a"]["on"], 4000);
    assert_eq!(usage.unknown, 400);
    assert_eq!(again.take_usage().flags["a"]["off"], 1);
    assert_eq!(on.take_usage().flags.len(), 0);
}

#[tokio::test]
async fn the_newer_local_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::builder("prod")
        .cache_file(file(dir.path(), "cache.json", 2, "off"))
        .bootstrap_file(file(dir.path(), "boot.json", 5, "on"))
        .start()
        .await
        .unwrap();
    assert_eq!((c.status(), c.version()), (Status::FromBootstrap, 5));
    // A bootstrap file of another environment is refused.
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        Snapshot::new("stage", 9, Some(0), vec![], vec![]).to_json(),
    )
    .unwrap();
    let c = Client::builder("prod")
        .bootstrap_file(&other)
        .start()
        .await
        .unwrap();
    assert_eq!(c.status(), Status::DefaultsOnly);
    assert_eq!(c.metrics().snapshots_rejected, 1);
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused() {
    let refused = |b: pulseplane_sdk::Builder| async move { b.start().await.err() };
    assert!(matches!(
        refused(Client::builder("")).await,
        Some(ConfigError::Environment(..))
    ));
    assert!(matches!(
        refused(Client::builder("a/b")).await,
        Some(ConfigError::Environment(..))
    ));
    assert!(matches!(
        refused(Client::builder("prod").endpoints(["ftp://x:1"])).await,
        Some(ConfigError::Endpoint(_))
    ));
    assert!(matches!(
        refused(Client::builder("prod").endpoints(["https://"])).await,
        Some(ConfigError::Endpoint(_))
    ));
    assert!(matches!(
        refused(Client::builder("prod").endpoints(["http://"])).await,
        Some(ConfigError::Endpoint(_))
    ));
    assert!(
        refused(Client::builder("prod").long_poll_wait(Duration::ZERO))
            .await
            .is_some()
    );
    assert!(
        refused(Client::builder("prod").stale_after(Duration::from_secs(10)))
            .await
            .is_some()
    );
    assert!(
        refused(Client::builder("prod").instance_id(""))
            .await
            .is_some()
    );
    assert!(
        refused(Client::builder("prod").poll_interval(Duration::ZERO))
            .await
            .is_some()
    );
    assert!(refused(Client::builder("prod")).await.is_none());
}

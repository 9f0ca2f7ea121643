//! `pulseplane-node`: the Pulseplane server process.

use std::process::ExitCode;

use clap::Parser;
use pulseplane_node::backup::RestoreCli;
use pulseplane_node::config::Cli;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// The node allocates and frees many small blocks per write on every
/// thread (requests, replication, apply). Under write load glibc's
/// allocator took about a quarter of the nodes' CPU, jemalloc about 4%
/// (docs/benchmarks.md). RocksDB's C++ side still uses the system
/// allocator (the jemalloc symbols are prefixed).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read before `main`: one arena (a node runs a few
/// busy threads on few cores, and every extra arena keeps its own partly
/// used pages), thread caches for blocks up to 4 KiB, and a background
/// thread that hands pages freed for half a second back to the system.
/// Overridden by the `_RJEM_MALLOC_CONF` environment variable.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[unsafe(export_name = "_rjem_malloc_conf")]
#[allow(non_upper_case_globals)]
static malloc_conf: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: the pointer comes from a static C string literal.
    unsafe {
        &*c"narenas:1,tcache_max:4096,dirty_decay_ms:500,muzzy_decay_ms:0,background_thread:true"
            .as_ptr()
    },
);

fn main() -> ExitCode {
    pulseplane_node::node::limit_malloc_arenas();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "restore") {
        return restore(args);
    }
    let cli = Cli::parse();
    let cfg = match cli.into_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("pulseplane-node: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // rediss:// connections use rustls with ring; installed once, up front.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The trace exporter's guard with the `otel` feature, `()` without it.
    #[allow(clippy::let_unit_value)]
    let _exporter = match init_tracing(&cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pulseplane-node: cannot start the trace exporter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("pulseplane-worker");
    if cfg.worker_threads > 0 {
        builder.worker_threads(cfg.worker_threads);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pulseplane-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            signals.cancel();
        });
        match pulseplane_node::node::run(cfg, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pulseplane-node: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// What keeps exporting spans until `main` returns (nothing without the
/// feature `otel`).
#[cfg(feature = "otel")]
type Exporter = Option<pulseplane_node::otel::Exporter>;
#[cfg(not(feature = "otel"))]
type Exporter = ();

/// Logs to stderr (text or JSON, filtered by `PULSEPLANE_LOG`), and, with
/// `--otlp-endpoint`, spans to the collector (filtered by
/// `PULSEPLANE_OTLP_LOG`, by default as the logs).
fn init_tracing(cfg: &pulseplane_node::config::NodeConfig) -> std::io::Result<Exporter> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    const DEFAULT: &str = "info,openraft=warn";
    let filter =
        || EnvFilter::try_from_env("PULSEPLANE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT));
    let logs = if cfg.json_logs {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_filter(filter())
            .boxed()
    };
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otel")]
    {
        if let Some((endpoint, service)) = &cfg.otlp {
            let (layer, exporter) =
                pulseplane_node::otel::Exporter::start(endpoint, service, cfg.node_id)?;
            let spans = EnvFilter::try_from_env("PULSEPLANE_OTLP_LOG").unwrap_or_else(|_| filter());
            registry.with(layer.with_filter(spans)).init();
            return Ok(Some(exporter));
        }
        registry.init();
        Ok(None)
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Ok(())
    }
}

/// `pulseplane-node restore ...`: seeds a data dir from a backup.
fn restore(mut args: Vec<std::ffi::OsString>) -> ExitCode {
    args.remove(1);
    let cli = RestoreCli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pulseplane-node restore: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(r) => {
            println!(
                "restored state {} (applied index {} of the source, {} environments) into {} as node {} of {:?}; start the members with the same --initial-cluster",
                r.digest,
                r.applied_index,
                r.environments,
                cli.data_dir.display(),
                cli.node_id,
                r.members
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pulseplane-node restore: {e}");
            ExitCode::from(2)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

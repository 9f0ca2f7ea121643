//! Runs a recorded workload on a real cluster while mixing network
//! partitions, pauses and crashes at random, then checks the history.
//!
//!   cargo run -p pulseplane-cluster-tests --bin nemesis -- --duration 60s --seed 7
//!
//! Options: `--duration` (60s), `--seed` (1), `--nodes` (3), `--clients`
//! (4). The `pulseplane-node` binary is `PULSEPLANE_NODE_BIN`, or the one
//! beside this program; when neither exists it is built (same profile).
//! Prints each fault, a summary table and the verdict; the last line is
//! `NEMESIS_RESULT {...}`. Exits 1 when the verdict fails, 2 on bad
//! options.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use pulseplane_cluster_tests::nemesis::{self, Options, parse_duration};

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "nemesis: {problem}\nusage: nemesis [--duration 60s] [--seed N] [--nodes 3] [--clients 4]"
    );
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seed: 1,
        duration: Duration::from_secs(60),
        nodes: 3,
        clients: 4,
        node_bin: PathBuf::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        };
        match name {
            "--duration" => {
                o.duration = parse_duration(&value()?).map_err(|e| format!("--duration: {e}"))?
            }
            "--seed" => o.seed = number(value()?)?,
            "--nodes" => {
                o.nodes = number(value()?)?;
                if !(3..=9).contains(&o.nodes) {
                    return Err("--nodes must be between 3 and 9".into());
                }
            }
            "--clients" => {
                o.clients = number(value()?)? as usize;
                if !(1..=64).contains(&o.clients) {
                    return Err("--clients must be between 1 and 64".into());
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.duration < Duration::from_secs(5) {
        return Err("--duration must be at least 5s".into());
    }
    Ok(o)
}

/// Finds the node binary, building it when it is missing.
fn locate_node() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PULSEPLANE_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dir = exe.parent().ok_or("own directory")?;
    let beside = dir.join("pulseplane-node");
    if beside.exists() {
        return Ok(beside);
    }
    let release = dir.file_name().is_some_and(|n| n == "release");
    eprintln!("nemesis: building pulseplane-node ...");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.args(["build", "-p", "pulseplane-node", "--bin", "pulseplane-node"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() || !beside.exists() {
        return Err(format!(
            "building pulseplane-node failed ({status}); set PULSEPLANE_NODE_BIN"
        ));
    }
    Ok(beside)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => return usage(&e),
    };
    match locate_node() {
        Ok(bin) => opts.node_bin = bin,
        Err(e) => {
            eprintln!("nemesis: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let seed = opts.seed;
    // A run that cannot finish (the cluster never converges after the
    // faults heal, say) panics inside its task; that is a failed verdict.
    match runtime.block_on(async { tokio::spawn(nemesis::run(opts)).await }) {
        Ok(report) => {
            println!("{}", report.render());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let problem = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the run panicked".into()),
                Err(e) => e.to_string(),
            };
            println!("\nverdict: FAIL ({problem})");
            let result = serde_json::json!({
                "ok": false, "seed": seed, "error": problem,
                "lost_acknowledged_writes": null, "violations": null, "ops": null, "faults": null,
            });
            println!("NEMESIS_RESULT {result}");
            ExitCode::from(1)
        }
    }
}

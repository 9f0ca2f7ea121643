//! `pulseplane`: the operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pulseplane_node::cli::eval::ValueType;
use pulseplane_node::cli::export::ExportArgs;

#[derive(Parser)]
#[command(name = "pulseplane", version, about = "Pulseplane operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Evaluate a flag from a snapshot or bootstrap file and print the details as JSON.
    Eval {
        /// Snapshot or bootstrap file (the SDK snapshot format).
        #[arg(long, env = "PULSEPLANE_SNAPSHOT_FILE")]
        file: PathBuf,
        /// Flag key.
        #[arg(long)]
        flag: String,
        /// Evaluation context as JSON: {"targeting_key": "...", "attributes": {...}}.
        #[arg(long, default_value = "{}")]
        context: String,
        /// The typed call to make, as an SDK would; a served value of another
        /// type gives the default with TYPE_MISMATCH.
        #[arg(long = "type", value_enum, default_value = "json")]
        value_type: ValueType,
        /// The caller's default as JSON, returned when evaluation fails.
        #[arg(long)]
        default: Option<String>,
    },
    /// Download an environment's bootstrap file (snapshot plus digest) from
    /// any node, check its digest, and write it to stdout or --out.
    Export {
        /// A node's base URL, e.g. http://127.0.0.1:7401.
        #[arg(long, env = "PULSEPLANE_ENDPOINT")]
        endpoint: String,
        /// Environment key.
        #[arg(long)]
        env: String,
        /// Bearer token.
        #[arg(long, env = "PULSEPLANE_TOKEN", hide_env_values = true)]
        token: String,
        /// Write here (atomically) instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Require at least this environment version.
        #[arg(long)]
        min_version: Option<u64>,
        /// How long the node may wait for --min-version (at most 60s).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// Request timeout.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn export(args: &ExportArgs<'_>, out: Option<&std::path::Path>) -> ExitCode {
    let (bytes, snapshot) = match pulseplane_node::cli::export::run(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let written = match out {
        Some(path) => {
            pulseplane_node::datadir::write_atomic(path, &bytes).map_err(|e| e.to_string())
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = written {
        eprintln!("error: cannot write the file: {e}");
        return ExitCode::from(2);
    }
    eprintln!(
        "exported {} version {} ({} flags, digest {})",
        snapshot.env,
        snapshot.version,
        snapshot.flags.len(),
        snapshot.digest
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Export {
            endpoint,
            env,
            token,
            out,
            min_version,
            wait,
            timeout,
        } => export(
            &ExportArgs {
                endpoint: &endpoint,
                env: &env,
                token: &token,
                min_version,
                wait,
                timeout,
            },
            out.as_deref(),
        ),
        Cmd::Eval {
            file,
            flag,
            context,
            value_type,
            default,
        } => match pulseplane_node::cli::eval::run(
            &file,
            &flag,
            &context,
            value_type,
            default.as_deref(),
        ) {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

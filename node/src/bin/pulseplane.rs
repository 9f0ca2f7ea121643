//! `pulseplane`: the operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pulseplane_node::cli::eval::ValueType;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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

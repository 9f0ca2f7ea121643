//! `pulseplane`: the operator CLI (see `pulseplane_node::cli`).

use std::process::ExitCode;

use clap::Parser;
use pulseplane_node::cli::args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match pulseplane_node::cli::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

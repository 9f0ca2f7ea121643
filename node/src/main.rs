//! `pulseplane-node`: the Pulseplane server process.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("pulseplane-node: the replicated node is not built yet; use `pulseplane eval`");
    ExitCode::from(2)
}

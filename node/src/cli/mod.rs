//! The `pulseplane` operator CLI.
//!
//! Layout:
//! - `args`: the command line (clap); docs/cli.md is generated from it
//! - `commands`: what each command does and prints
//! - `http`: endpoints with failover, the token, error answers
//! - `eval`: evaluate a flag from a snapshot file and explain the result
//! - `export`: download and check an environment's bootstrap file

pub mod args;
pub mod commands;
pub mod eval;
pub mod export;
pub mod http;

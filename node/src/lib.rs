//! pulseplane-node: the Pulseplane server and the `pulseplane` operator CLI.
//!
//! Layout:
//! - `cli`: the `pulseplane` operator commands (`eval` today)
pub mod cli;

//! The `pulseplane` operator CLI.
//!
//! Layout:
//! - `eval`: evaluate a flag from a snapshot file and explain the result
//! - `export`: download and check an environment's bootstrap file

pub mod eval;
pub mod export;

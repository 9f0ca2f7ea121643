//! The `pulseplane` operator CLI.
//!
//! Layout:
//! - `eval`: evaluate a flag from a snapshot file and explain the result

pub mod eval;

//! pulseplane-raft-store: Raft log and state-machine storage.
//!
//! The replicated commands and the state they drive live in
//! [`pulseplane_core::command`] and [`pulseplane_core::state`]; this crate
//! persists them.
//!
//! Layout:
//! - re-exports of the replicated command and state types
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use pulseplane_core::{CommandEnvelope, State};

//! pulseplane-sdk: the Rust client for Pulseplane.
//!
//! Evaluation is synchronous and pure, over [`pulseplane_core`]. The poller,
//! cache, bootstrap loading and change notifications are built on top.
//!
//! Layout:
//! - re-exports of the evaluation types from `pulseplane-core`
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use pulseplane_core::{Context, ErrorCode, EvaluationDetails, FlagSet, Reason, Snapshot};

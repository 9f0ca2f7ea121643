//! pulseplane-sdk: the Rust client for Pulseplane.
//!
//! A [`Client`] polls any node of the cluster for its environment's
//! snapshot (ETag/304 and the node's long-poll), fails over between nodes,
//! keeps the last good snapshot on disk, and evaluates flags locally,
//! synchronously and without locks, with the same core as the nodes.
//! Startup never fails because the control plane is down: it serves, in
//! order, a fresh snapshot, the on-disk cache, the CI/CD bootstrap file, or
//! the caller's defaults, and says which ([`Client::status`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), pulseplane_sdk::ConfigError> {
//! use pulseplane_sdk::{Client, Context};
//! let client = Client::builder("prod")
//!     .endpoints(["http://10.0.0.1:7401", "http://10.0.0.2:7401"])
//!     .sdk_key("...")
//!     .cache_file("/var/cache/myapp/flags.json")
//!     .bootstrap_file("/etc/myapp/flag-defaults.json")
//!     .start()
//!     .await?;
//! let on = client.bool_value("new-checkout", &Context::new("user-42"), false);
//! # let _ = on; Ok(()) }
//! ```
//!
//! Layout:
//! - `config`: the builder and its settings
//! - `client`: the client, evaluation, status, metrics and listeners
//! - `poll`: the poller (long-poll, failover, backoff, cache writes)
//! - `hooks`: evaluation hooks and change events
//! - `notices`: the Redis change-notice listener (feature `redis`)
//! - [`openfeature`]: the OpenFeature provider (feature `openfeature`)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod config;
mod hooks;
mod local;
#[cfg(feature = "redis")]
mod notices;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod poll;

pub use client::{Client, Metrics, Status};
pub use config::{Builder, ConfigError};
pub use hooks::{FlagChange, Hook, HookContext, HookDetails};
/// Why the caller's default was served (OpenFeature's names): the core's.
pub use pulseplane_core::ErrorCode;
pub use pulseplane_core::usage::UsageReport;
pub use pulseplane_core::{Context, FlagSet, Snapshot};

impl Builder {
    /// Starts the client (see [`Client`]): returns within the init timeout
    /// whatever the control plane does.
    pub async fn start(self) -> Result<Client, ConfigError> {
        Client::start(self).await
    }
}

/// Why a value was served (OpenFeature's names), with `Stale` for data not
/// synced with a node within the stale threshold (or from the cache or the
/// bootstrap file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Static,
    TargetingMatch,
    Split,
    Disabled,
    Default,
    PrerequisiteFailed,
    Stale,
    Error,
}

impl From<pulseplane_core::Reason> for Reason {
    fn from(r: pulseplane_core::Reason) -> Reason {
        use pulseplane_core::Reason as R;
        match r {
            R::Static => Reason::Static,
            R::TargetingMatch => Reason::TargetingMatch,
            R::Split => Reason::Split,
            R::Disabled => Reason::Disabled,
            R::Default => Reason::Default,
            R::PrerequisiteFailed => Reason::PrerequisiteFailed,
            R::Error => Reason::Error,
        }
    }
}

/// An evaluation's value with how it was reached.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Details<T> {
    pub value: T,
    /// The served variant; `None` when the caller's default was returned.
    pub variant: Option<String>,
    /// `Stale` when the data is stale, else the core's reason.
    pub reason: Reason,
    /// The core's reason, stale or not.
    pub resolved_reason: Reason,
    pub error_code: Option<ErrorCode>,
    /// The flag's revision (0 when unknown).
    pub flag_version: u64,
    /// The environment version evaluated.
    pub env_version: u64,
}

//! pulseplane-node: the Pulseplane server and the `pulseplane` operator CLI.
//!
//! Layout:
//! - `config`: flags and `PULSEPLANE_*` variables, checked into a `NodeConfig`
//! - `datadir`: the data dir's lock and identity
//! - `secret`: secrets and tokens (redacted, compared in constant time)
//! - `tls`: the TLS listener and peer trust
//! - `identity`: who is calling (JWT, trusted proxy, admin token, SDK keys)
//! - `node`: one running node and [`node::run`]
//! - `raft`: Raft start-up, the peer transport and membership
//! - `envs`: environment actors (published snapshots, long-poll waiters)
//! - `notify`: change notices over Redis Pub/Sub
//! - `metrics`: counters and the `/metrics` text
//! - `write`: the write path (batching on the leader, forwarding from followers)
//! - `api`: the HTTP API (public and admin)
//! - `backup`: backup files and `pulseplane-node restore`
//! - `cli`: the `pulseplane` operator commands
pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod console;
pub mod datadir;
pub mod envs;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod otel;
pub mod raft;
pub mod secret;
pub mod tls;
pub mod write;

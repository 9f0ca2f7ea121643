//! Evaluation hooks, in OpenFeature's style, and change listeners.

use serde_json::Value;

use crate::{ErrorCode, Reason};

/// What a hook is told about an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    pub flag: &'a str,
    /// The caller's default, as JSON.
    pub default: &'a Value,
}

/// The outcome an `after` or `finally` hook sees.
#[derive(Debug, Clone)]
pub struct HookDetails<'a> {
    pub flag: &'a str,
    pub value: Value,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    /// Why the caller's default was served, for `error` hooks.
    pub error_code: Option<ErrorCode>,
    pub env_version: u64,
}

/// Called around every evaluation: `before` in registration order, then
/// `after` (or `error`) and `finally` in reverse order. The methods should
/// be quick: they run on the caller's thread.
pub trait Hook: Send + Sync {
    fn before(&self, _ctx: &HookContext<'_>) {}
    /// The evaluation served a flag's variant.
    fn after(&self, _ctx: &HookContext<'_>, _details: &HookDetails<'_>) {}
    /// The caller's default was served because of an error (unknown flag,
    /// type mismatch, ...).
    fn error(&self, _ctx: &HookContext<'_>, _details: &HookDetails<'_>) {}
    fn finally(&self, _ctx: &HookContext<'_>, _details: &HookDetails<'_>) {}
}

/// A change of one flag between two snapshots, as listeners see it. The
/// values are what the flag serves to an empty context (`null` when that
/// evaluation fails, e.g. a rollout that needs a targeting key), `None`
/// when the flag is absent on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagChange {
    pub flag: String,
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
    pub old_version: u64,
    pub new_version: u64,
}

/// A change listener.
pub type Listener = Box<dyn Fn(&FlagChange) + Send + Sync>;

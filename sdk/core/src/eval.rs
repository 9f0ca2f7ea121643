//! Deterministic evaluation over a compiled [`FlagSet`].
//!
//! Typed calls take the caller's default and never fail: a missing flag, a
//! type mismatch or a broken prerequisite yields that default with a reason.
//! No randomness, no clock, no allocation on the path for boolean and string
//! flags.

use serde::Serialize;
use serde_json::Value;

use crate::bucket::bucket_for;
use crate::compile::{Attr, CClause, CFlag, COp, CServe, Cmp, FlagSet, InSet, StrSet};
use crate::context::{AttrRef, Context, Found};
use crate::limits::MAX_PREREQUISITE_DEPTH;
use crate::text::{Fingerprint, Key};
use crate::time::parse_rfc3339;

/// Why a value was served (OpenFeature's reason names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No rules and no prerequisites: the same value for every context.
    Static,
    /// A rule matched and serves a fixed variant.
    TargetingMatch,
    /// A rollout picked the variant (from a rule, or the default).
    Split,
    /// The flag is disabled or killed: its `off_variant` is served.
    Disabled,
    /// No rule matched: the flag's default variant.
    Default,
    /// A prerequisite did not serve the required variant: `off_variant`.
    PrerequisiteFailed,
    /// The caller's default is returned; see the error code.
    Error,
}

/// Error codes (OpenFeature's names) that accompany [`Reason::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The provider has no flag set yet (used by SDKs before the first load).
    ProviderNotReady,
    FlagNotFound,
    TypeMismatch,
    /// The default serve is a rollout and the context lacks its attribute.
    TargetingKeyMissing,
    /// A prerequisite could not be evaluated.
    General,
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvaluationDetails<'a, T> {
    pub value: T,
    /// The served variant's key; `None` when the caller's default is returned.
    pub variant: Option<&'a str>,
    pub reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'static str>,
    /// Index of the rule that decided, if one did.
    pub rule_index: Option<u32>,
    /// The flag's revision; 0 when the flag is unknown.
    pub flag_version: u64,
    /// The environment version of the flag set.
    pub env_version: u64,
    #[serde(skip)]
    pub(crate) flag_index: Option<u32>,
    #[serde(skip)]
    pub(crate) variant_index: Option<u16>,
}

impl<T> EvaluationDetails<'_, T> {
    /// Index of the flag within its set (for usage counters).
    pub fn flag_index(&self) -> Option<u32> {
        self.flag_index
    }

    /// Index of the served variant within its flag (for usage counters).
    pub fn variant_index(&self) -> Option<u16> {
        self.variant_index
    }
}

/// Why an evaluation fell back to the caller's default.
#[derive(Clone, Copy, Debug)]
enum Failure {
    FlagNotFound,
    VariantMissing,
    TypeMismatch,
    PrerequisiteMissing,
    PrerequisiteTooDeep,
    PrerequisiteBroken,
    TargetingKeyMissing,
}

impl Failure {
    fn code(self) -> ErrorCode {
        match self {
            Failure::FlagNotFound => ErrorCode::FlagNotFound,
            Failure::TypeMismatch => ErrorCode::TypeMismatch,
            Failure::TargetingKeyMissing => ErrorCode::TargetingKeyMissing,
            Failure::VariantMissing
            | Failure::PrerequisiteMissing
            | Failure::PrerequisiteTooDeep
            | Failure::PrerequisiteBroken => ErrorCode::General,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Failure::FlagNotFound => "flag not found",
            Failure::VariantMissing => "variant missing",
            Failure::TypeMismatch => "served value has another type",
            Failure::PrerequisiteMissing => "prerequisite flag missing",
            Failure::PrerequisiteTooDeep => "prerequisite chain too deep",
            Failure::PrerequisiteBroken => "prerequisite could not be evaluated",
            Failure::TargetingKeyMissing => {
                "the default rollout's bucketing attribute is missing from the context"
            }
        }
    }
}

/// A variant-level result before typing; small enough to live in registers.
#[derive(Clone, Copy, Debug)]
struct Resolution {
    variant: Option<u16>,
    reason: Reason,
    error: Option<Failure>,
    rule: Option<u32>,
}

impl Resolution {
    fn served(variant: u16, reason: Reason, rule: Option<u32>) -> Self {
        Resolution {
            variant: Some(variant),
            reason,
            error: None,
            rule,
        }
    }

    fn error(failure: Failure) -> Self {
        Resolution {
            variant: None,
            reason: Reason::Error,
            error: Some(failure),
            rule: None,
        }
    }
}

impl FlagSet {
    #[inline]
    fn lookup(&self, key: &str) -> Option<u32> {
        self.index
            .get(key, |p| self.flags.get(p).map_or("", |f| &*f.key))
    }

    /// Evaluates `key` and converts the served value with `convert`; a value
    /// `convert` rejects is a type mismatch.
    #[inline]
    fn typed<'a, T>(
        &'a self,
        key: &str,
        ctx: &Context,
        default: T,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> EvaluationDetails<'a, T> {
        let Some(fi) = self.lookup(key) else {
            return self.miss(default, None, 0, Resolution::error(Failure::FlagNotFound));
        };
        let Some(flag) = self.flags.get(fi as usize) else {
            return self.miss(default, None, 0, Resolution::error(Failure::FlagNotFound));
        };
        let r = match flag.fixed {
            Some((v, reason)) => Resolution::served(v, reason, None),
            None => self.resolve(flag, ctx, 0),
        };
        let Some(vi) = r.variant else {
            return self.miss(default, Some(fi), flag.version, r);
        };
        let Some(variant) = flag.variants.get(vi as usize) else {
            return self.miss(
                default,
                Some(fi),
                flag.version,
                Resolution::error(Failure::VariantMissing),
            );
        };
        match convert(&variant.value) {
            Some(value) => EvaluationDetails {
                value,
                variant: Some(&variant.key),
                reason: r.reason,
                error_code: None,
                error_message: None,
                rule_index: r.rule,
                flag_version: flag.version,
                env_version: self.version,
                flag_index: Some(fi),
                variant_index: Some(vi),
            },
            None => self.miss(
                default,
                Some(fi),
                flag.version,
                Resolution::error(Failure::TypeMismatch),
            ),
        }
    }

    #[cold]
    fn miss<'a, T>(
        &'a self,
        default: T,
        flag_index: Option<u32>,
        flag_version: u64,
        r: Resolution,
    ) -> EvaluationDetails<'a, T> {
        EvaluationDetails {
            value: default,
            variant: None,
            reason: r.reason,
            error_code: r.error.map(Failure::code),
            error_message: r.error.map(Failure::message),
            rule_index: r.rule,
            flag_version,
            env_version: self.version,
            flag_index,
            variant_index: None,
        }
    }

    /// A boolean flag's value, or `default`.
    #[inline]
    pub fn bool_details(
        &self,
        key: &str,
        ctx: &Context,
        default: bool,
    ) -> EvaluationDetails<'_, bool> {
        self.typed(key, ctx, default, Value::as_bool)
    }

    /// A string value, or `default`.
    #[inline]
    pub fn string_details<'a>(
        &'a self,
        key: &str,
        ctx: &Context,
        default: &'a str,
    ) -> EvaluationDetails<'a, &'a str> {
        self.typed(key, ctx, default, Value::as_str)
    }

    /// An integer value, or `default`.
    pub fn int_details(
        &self,
        key: &str,
        ctx: &Context,
        default: i64,
    ) -> EvaluationDetails<'_, i64> {
        self.typed(key, ctx, default, Value::as_i64)
    }

    /// A numeric value (integer or float), or `default`.
    pub fn float_details(
        &self,
        key: &str,
        ctx: &Context,
        default: f64,
    ) -> EvaluationDetails<'_, f64> {
        self.typed(key, ctx, default, Value::as_f64)
    }

    /// Any value as JSON, or `default`.
    pub fn json_details<'a>(
        &'a self,
        key: &str,
        ctx: &Context,
        default: &'a Value,
    ) -> EvaluationDetails<'a, &'a Value> {
        self.typed(key, ctx, default, Some)
    }

    /// Shorthands returning only the value.
    #[inline]
    pub fn bool_value(&self, key: &str, ctx: &Context, default: bool) -> bool {
        self.bool_details(key, ctx, default).value
    }

    fn resolve(&self, flag: &CFlag, ctx: &Context, depth: usize) -> Resolution {
        if !flag.enabled {
            return Resolution::served(flag.off, Reason::Disabled, None);
        }
        if !flag.prerequisites.is_empty()
            && let Some(r) = self.check_prerequisites(flag, ctx, depth)
        {
            return r;
        }
        self.targeting(flag, ctx)
    }

    /// `Some(result)` when a prerequisite decides the flag's result.
    #[cold]
    fn check_prerequisites(&self, flag: &CFlag, ctx: &Context, depth: usize) -> Option<Resolution> {
        for p in flag.prerequisites.iter() {
            let Some(pre) = self.flags.get(p.flag as usize) else {
                return Some(Resolution::error(Failure::PrerequisiteMissing));
            };
            if depth >= MAX_PREREQUISITE_DEPTH {
                return Some(Resolution::error(Failure::PrerequisiteTooDeep));
            }
            let r = self.resolve(pre, ctx, depth + 1);
            if r.error.is_some() {
                return Some(Resolution::error(Failure::PrerequisiteBroken));
            }
            if r.variant != Some(p.variant) {
                return Some(Resolution::served(
                    flag.off,
                    Reason::PrerequisiteFailed,
                    None,
                ));
            }
        }
        None
    }

    /// Rules, then the default.
    #[inline]
    fn targeting(&self, flag: &CFlag, ctx: &Context) -> Resolution {
        for (i, rule) in flag.rules.iter().enumerate() {
            if !self.all_match(&rule.clauses, ctx) {
                continue;
            }
            match &rule.serve {
                CServe::Variant(v) => {
                    return Resolution::served(*v, Reason::TargetingMatch, Some(i as u32));
                }
                CServe::Rollout(r) => {
                    // A rollout whose bucketing attribute is missing does not match.
                    if let Some(v) = bucket_for(r, ctx) {
                        return Resolution::served(v, Reason::Split, Some(i as u32));
                    }
                }
            }
        }
        match &flag.default {
            CServe::Variant(v) => {
                let reason = if flag.rules.is_empty() && flag.prerequisites.is_empty() {
                    Reason::Static
                } else {
                    Reason::Default
                };
                Resolution::served(*v, reason, None)
            }
            CServe::Rollout(r) => match bucket_for(r, ctx) {
                Some(v) => Resolution::served(v, Reason::Split, None),
                None => Resolution::error(Failure::TargetingKeyMissing),
            },
        }
    }

    /// True when every clause of a rule matches.
    #[inline]
    fn all_match(&self, clauses: &[CClause], ctx: &Context) -> bool {
        for c in clauses {
            let hit = match &c.op {
                COp::InSegment(segs) => {
                    let mut any = false;
                    for &s in segs.iter() {
                        if self.in_segment(s, ctx) {
                            any = true;
                            break;
                        }
                    }
                    any != c.negate
                }
                _ => leaf_matches(c, ctx),
            };
            if !hit {
                return false;
            }
        }
        true
    }

    #[inline]
    fn in_segment(&self, s: u32, ctx: &Context) -> bool {
        let Some(seg) = self.segments.get(s as usize) else {
            return false;
        };
        if (!seg.included.is_empty() || !seg.excluded.is_empty())
            && let Some(k) = ctx.targeting_key()
        {
            if seg.included.contains(k) {
                return true;
            }
            if seg.excluded.contains(k) {
                return false;
            }
        }
        if seg.clauses.is_empty() {
            return false;
        }
        for c in seg.clauses.iter() {
            if !leaf_matches(c, ctx) {
                return false;
            }
        }
        true
    }
}

/// A clause other than `in_segment` (segments cannot nest, so this never
/// recurses).
#[inline(always)]
fn leaf_matches(c: &CClause, ctx: &Context) -> bool {
    let found = match &c.attr {
        Attr::TargetingKey => ctx.lookup_targeting_key(),
        Attr::Named(n) => ctx.lookup(n),
    };
    if let COp::Exists = c.op {
        // Presence alone decides, whatever the value (an empty list is present).
        return found.is_some() != c.negate;
    }
    let Some(found) = found else {
        // A missing attribute never matches, negated or not.
        return false;
    };
    let hit = match &c.op {
        // The common case: a string in a short list, decided by fingerprints
        // the context computed once; the text is read only for long values.
        COp::In(InSet {
            strings: StrSet::Small(items),
            ..
        }) if found.is_str() => small_set_contains(items, &found),
        op => match found.value() {
            AttrRef::List(items) => items.iter().any(|s| op_matches(op, AttrRef::Str(s))),
            v => op_matches(op, v),
        },
    };
    hit != c.negate
}

#[inline(always)]
fn op_matches(op: &COp, v: AttrRef<'_>) -> bool {
    match (op, v) {
        (COp::Exists, _) => true,
        (COp::In(set), v) => in_set(set, v),
        (COp::StartsWith(p), AttrRef::Str(s)) => p.iter().any(|p| s.starts_with(&**p)),
        (COp::EndsWith(p), AttrRef::Str(s)) => p.iter().any(|p| s.ends_with(&**p)),
        (COp::Contains(p), AttrRef::Str(s)) => p.iter().any(|p| s.contains(&**p)),
        (COp::Matches(rs), AttrRef::Str(s)) => rs.iter().any(|r| r.is_match(s)),
        (COp::Number(cmp, ns), AttrRef::Number(n)) => {
            ns.iter().any(|&x| compare(*cmp, n.partial_cmp(&x)))
        }
        (COp::Semver(cmp, vs), AttrRef::Str(s)) => match semver::Version::parse(s) {
            Ok(v) => vs.iter().any(|x| compare(*cmp, Some(v.cmp_precedence(x)))),
            Err(_) => false,
        },
        (COp::Before(ts), v) => time_of(v).is_some_and(|t| ts.iter().any(|&x| t < x)),
        (COp::After(ts), v) => time_of(v).is_some_and(|t| ts.iter().any(|&x| t > x)),
        _ => false,
    }
}

#[inline(always)]
fn in_set(set: &InSet, v: AttrRef<'_>) -> bool {
    match v {
        AttrRef::Str(s) => match &set.strings {
            StrSet::Small(items) => {
                let fp = Fingerprint::of(s.as_bytes());
                items.iter().any(|x| x.matches(s, &fp))
            }
            StrSet::Hashed(h) => h.contains(s),
        },
        AttrRef::Number(n) => set.numbers.contains(&n),
        AttrRef::Bool(b) => set.bools[usize::from(b)],
        AttrRef::List(_) => false,
    }
}

#[inline(always)]
fn small_set_contains(items: &[Key], found: &Found<'_>) -> bool {
    for x in items {
        if x.fp == found.fp {
            if found.fp.len <= 16 {
                return true;
            }
            if let AttrRef::Str(s) = found.value()
                && x.matches(s, &found.fp)
            {
                return true;
            }
        }
    }
    false
}

fn compare(cmp: Cmp, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (cmp, ord),
        (Cmp::Eq, Some(Equal))
            | (Cmp::Lt, Some(Less))
            | (Cmp::Lte, Some(Less | Equal))
            | (Cmp::Gt, Some(Greater))
            | (Cmp::Gte, Some(Greater | Equal))
    )
}

/// Nanoseconds since the epoch of an RFC 3339 string or a number of seconds.
fn time_of(v: AttrRef<'_>) -> Option<i128> {
    match v {
        AttrRef::Str(s) => parse_rfc3339(s),
        AttrRef::Number(n) if n.is_finite() && n.abs() < 1e15 => Some((n * 1e9) as i128),
        _ => None,
    }
}

//! Validation and compilation: model types become [`FlagSet`], the form that
//! evaluation runs on. Regexes are compiled, segment and prerequisite
//! references become indices, rollouts become cumulative tables.
//!
//! Every check lives here once: validating a draft means compiling it and
//! keeping only the problems.

use ahash::{AHashMap, AHashSet};
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::eval::Reason;
use crate::issue::{Issue, Issues, ValidationError};
use crate::limits::*;
use crate::model::{
    Clause, ConfigType, Flag, FlagKind, Operator, Rollout, Segment, Serve, TARGETING_KEY,
};
use crate::text::{Key, KeyIndex};
use crate::time::parse_rfc3339;

/// A compiled environment: everything evaluation needs, immutable.
#[derive(Debug)]
pub struct FlagSet {
    pub(crate) env: Box<str>,
    pub(crate) version: u64,
    pub(crate) index: KeyIndex,
    pub(crate) flags: Vec<CFlag>,
    pub(crate) segments: Vec<CSegment>,
}

#[derive(Debug)]
pub(crate) struct CFlag {
    pub(crate) key: Box<str>,
    pub(crate) version: u64,
    pub(crate) enabled: bool,
    pub(crate) variants: Box<[CVariant]>,
    pub(crate) off: u16,
    pub(crate) prerequisites: Box<[CPrereq]>,
    pub(crate) rules: Box<[CRule]>,
    pub(crate) default: CServe,
    /// Set when the result cannot depend on the context (disabled, or no
    /// rules and no prerequisites and a fixed default).
    pub(crate) fixed: Option<(u16, Reason)>,
}

#[derive(Debug)]
pub(crate) struct CVariant {
    pub(crate) key: Box<str>,
    pub(crate) value: Value,
}

#[derive(Debug)]
pub(crate) struct CPrereq {
    pub(crate) flag: u32,
    pub(crate) variant: u16,
}

#[derive(Debug)]
pub(crate) struct CRule {
    pub(crate) clauses: Box<[CClause]>,
    pub(crate) serve: CServe,
}

#[derive(Debug)]
pub(crate) enum CServe {
    Variant(u16),
    Rollout(CRollout),
}

#[derive(Debug)]
pub(crate) struct CRollout {
    pub(crate) bucket_by: Attr,
    /// The hash state after the seed, so evaluation hashes only the value.
    pub(crate) seed: crate::murmur3::Murmur3,
    pub(crate) total: u64,
    pub(crate) arms: Box<[Arm]>,
}

/// A rollout arm: served when `bucket < upto` and no earlier arm was.
#[derive(Debug)]
pub(crate) struct Arm {
    pub(crate) upto: u64,
    pub(crate) variant: u16,
}

#[derive(Debug)]
pub(crate) enum Attr {
    TargetingKey,
    Named(Key),
}

#[derive(Debug)]
pub(crate) struct CClause {
    pub(crate) attr: Attr,
    pub(crate) negate: bool,
    pub(crate) op: COp,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug)]
pub(crate) enum COp {
    In(InSet),
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    Contains(Box<[Box<str>]>),
    Matches(Box<[Regex]>),
    Number(Cmp, Box<[f64]>),
    Semver(Cmp, Box<[semver::Version]>),
    Before(Box<[i128]>),
    After(Box<[i128]>),
    Exists,
    InSegment(Box<[u32]>),
}

#[derive(Debug)]
pub(crate) struct InSet {
    pub(crate) strings: StrSet,
    pub(crate) numbers: Box<[f64]>,
    pub(crate) bools: [bool; 2],
}

/// Few values are scanned; many are hashed.
#[derive(Debug)]
pub(crate) enum StrSet {
    Small(Box<[Key]>),
    Hashed(AHashSet<Box<str>>),
}

#[derive(Debug)]
pub(crate) struct CSegment {
    pub(crate) included: AHashSet<Box<str>>,
    pub(crate) excluded: AHashSet<Box<str>>,
    pub(crate) clauses: Box<[CClause]>,
}

const SMALL_SET: usize = 16;

/// Resolves names a flag refers to while compiling it.
pub(crate) trait Refs {
    /// Index of a segment by key.
    fn segment(&self, key: &str) -> Option<u32>;
    /// Index of a flag by key, and the index of `variant` in it.
    fn flag_variant(&self, key: &str, variant: &str) -> Option<(u32, Option<u16>)>;
}

struct SetRefs<'a> {
    segments: &'a AHashMap<&'a str, u32>,
    flags: &'a AHashMap<&'a str, u32>,
    flag_list: &'a [&'a Flag],
}

impl Refs for SetRefs<'_> {
    fn segment(&self, key: &str) -> Option<u32> {
        self.segments.get(key).copied()
    }

    fn flag_variant(&self, key: &str, variant: &str) -> Option<(u32, Option<u16>)> {
        let idx = *self.flags.get(key)?;
        let flag = self.flag_list.get(idx as usize)?;
        let v = flag
            .variants
            .iter()
            .position(|v| v.key == variant)
            .map(|i| i as u16);
        Some((idx, v))
    }
}

impl FlagSet {
    /// Validates and compiles one environment's published content. Every
    /// problem is reported, with paths like `/flags/<key>/rules/0/...`.
    pub fn compile(
        env: &str,
        version: u64,
        flags: &[Flag],
        segments: &[Segment],
    ) -> Result<FlagSet, ValidationError> {
        let flags: Vec<&Flag> = flags.iter().collect();
        let segments: Vec<&Segment> = segments.iter().collect();
        FlagSet::compile_with(env, version, &flags, None, &segments)
    }

    /// As [`FlagSet::compile`], for flags and segments held elsewhere (such
    /// as behind `Arc`s): nothing is copied but the flags that still need
    /// [`Flag::normalize`].
    pub fn compile_refs(
        env: &str,
        version: u64,
        flags: &[&Flag],
        segments: &[&Segment],
    ) -> Result<FlagSet, ValidationError> {
        FlagSet::compile_with(env, version, flags, None, segments)
    }

    /// As [`FlagSet::compile`], taking the flags by value: they are
    /// normalized in place rather than copied, so a large snapshot compiles
    /// without a second copy of its flags.
    pub fn compile_owned(
        env: &str,
        version: u64,
        mut flags: Vec<Flag>,
        segments: &[Segment],
    ) -> Result<FlagSet, ValidationError> {
        for f in &mut flags {
            f.normalize();
        }
        let flags: Vec<&Flag> = flags.iter().collect();
        let segments: Vec<&Segment> = segments.iter().collect();
        FlagSet::compile_with(env, version, &flags, Some(&flags), &segments)
    }

    /// `normalized`: `flags` already normalized, if the caller has them.
    fn compile_with(
        env: &str,
        version: u64,
        flags: &[&Flag],
        normalized: Option<&[&Flag]>,
        segments: &[&Segment],
    ) -> Result<FlagSet, ValidationError> {
        let mut issues = Vec::new();
        if flags.len() > MAX_FLAGS {
            issues.push(Issue::new("/flags", format!("more than {MAX_FLAGS} flags")));
        }
        if segments.len() > MAX_SEGMENTS {
            issues.push(Issue::new(
                "/segments",
                format!("more than {MAX_SEGMENTS} segments"),
            ));
        }
        if !issues.is_empty() {
            // Too large to be worth compiling: report the size alone.
            return Err(ValidationError { issues });
        }
        let mut seg_index: AHashMap<&str, u32> = AHashMap::new();
        for (i, s) in segments.iter().enumerate() {
            if seg_index.insert(s.key.as_str(), i as u32).is_some() {
                issues.push(Issue::new(
                    format!("/segments/{}/key", s.key),
                    "duplicate segment key",
                ));
            }
        }
        let mut flag_index: AHashMap<&str, u32> = AHashMap::new();
        for (i, f) in flags.iter().enumerate() {
            if flag_index.insert(f.key.as_str(), i as u32).is_some() {
                issues.push(Issue::new(
                    format!("/flags/{}/key", f.key),
                    "duplicate flag key",
                ));
            }
        }
        // Only the flags that normalizing would change are copied.
        let copies: Vec<std::borrow::Cow<'_, Flag>>;
        let flag_list: Vec<&Flag> = match normalized {
            Some(n) => n.to_vec(),
            None => {
                copies = flags
                    .iter()
                    .map(|f| {
                        if f.is_normalized() {
                            std::borrow::Cow::Borrowed(*f)
                        } else {
                            let mut f = (*f).clone();
                            f.normalize();
                            std::borrow::Cow::Owned(f)
                        }
                    })
                    .collect();
                copies.iter().map(|c| &**c).collect()
            }
        };

        let refs = SetRefs {
            segments: &seg_index,
            flags: &flag_index,
            flag_list: &flag_list,
        };
        let mut csegs = Vec::with_capacity(segments.len());
        for s in segments {
            let prefix = format!("/segments/{}", s.key);
            let mut out = Vec::new();
            if let Some(c) = compile_segment(s, &mut Issues { out: &mut out }) {
                csegs.push(c);
            }
            issues.extend(ValidationError { issues: out }.prefixed(&prefix).issues);
        }
        let mut cflags = Vec::with_capacity(flags.len());
        for f in flags {
            let prefix = format!("/flags/{}", f.key);
            let mut out = Vec::new();
            if let Some(c) = compile_flag(f, &refs, &mut Issues { out: &mut out }) {
                cflags.push(c);
            }
            issues.extend(ValidationError { issues: out }.prefixed(&prefix).issues);
        }
        issues.extend(check_prerequisite_graph(flags.iter().copied()));
        ValidationError::check(issues)?;
        let index = KeyIndex::new(flags.iter().map(|f| f.key.as_str()));
        Ok(FlagSet {
            env: env.into(),
            version,
            index,
            flags: cflags,
            segments: csegs,
        })
    }

    /// The environment key.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// The environment version this set was published as.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// True when the set has no flags.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flag keys, in the order of the snapshot.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| &*f.key)
    }
}

/// Checks one flag on its own and against the names in its environment:
/// `segment_exists(key)` and `flag_variants(key)` (the variant keys of
/// another flag, `None` when there is no such flag).
pub fn validate_flag(
    flag: &Flag,
    segment_exists: &dyn Fn(&str) -> bool,
    flag_variants: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Vec<Issue> {
    struct FnRefs<'a> {
        segment_exists: &'a dyn Fn(&str) -> bool,
        flag_variants: &'a dyn Fn(&str) -> Option<Vec<String>>,
    }
    impl Refs for FnRefs<'_> {
        fn segment(&self, key: &str) -> Option<u32> {
            (self.segment_exists)(key).then_some(0)
        }
        fn flag_variant(&self, key: &str, variant: &str) -> Option<(u32, Option<u16>)> {
            let vs = (self.flag_variants)(key)?;
            Some((0, vs.iter().position(|v| v == variant).map(|i| i as u16)))
        }
    }
    let mut out = Vec::new();
    compile_flag(
        flag,
        &FnRefs {
            segment_exists,
            flag_variants,
        },
        &mut Issues { out: &mut out },
    );
    out
}

/// Checks one segment on its own.
pub fn validate_segment(segment: &Segment) -> Vec<Issue> {
    let mut out = Vec::new();
    compile_segment(segment, &mut Issues { out: &mut out });
    out
}

/// Finds prerequisite cycles, chains deeper than [`MAX_PREREQUISITE_DEPTH`]
/// and flags whose evaluation would visit more than
/// [`MAX_PREREQUISITE_EVALUATIONS`] prerequisites (counting repeats) among
/// `flags`. Paths are `/flags/<key>/prerequisites`.
pub fn check_prerequisite_graph<'a>(flags: impl Iterator<Item = &'a Flag>) -> Vec<Issue> {
    let by_key: AHashMap<&str, &Flag> = flags.map(|f| (f.key.as_str(), f)).collect();
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();
    // depth[key]: longest chain below the flag; computed by iterative DFS.
    let mut depth: AHashMap<&str, usize> = AHashMap::new();
    // work[key]: prerequisite evaluations below the flag, repeats included.
    let mut work: AHashMap<&str, u64> = AHashMap::new();
    let mut issues = Vec::new();
    let mut reported_cycle: AHashSet<&str> = AHashSet::new();
    for &start in &keys {
        if depth.contains_key(start) {
            continue;
        }
        // Stack of (flag, next prerequisite index); `on_path` marks the DFS path.
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        let mut on_path: AHashSet<&str> = AHashSet::from_iter([start]);
        while let Some(&mut (key, ref mut next)) = stack.last_mut() {
            let prereqs = by_key.get(key).map(|f| &f.prerequisites[..]).unwrap_or(&[]);
            if let Some(p) = prereqs.get(*next) {
                *next += 1;
                let child = p.flag.as_str();
                if !by_key.contains_key(child) || depth.contains_key(child) {
                    continue;
                }
                if on_path.contains(child) {
                    if reported_cycle.insert(child) {
                        let mut cycle: Vec<&str> = stack
                            .iter()
                            .map(|(k, _)| *k)
                            .skip_while(|k| *k != child)
                            .collect();
                        cycle.push(child);
                        issues.push(Issue::new(
                            format!("/flags/{child}/prerequisites"),
                            format!("prerequisite cycle: {}", cycle.join(" -> ")),
                        ));
                    }
                    continue;
                }
                on_path.insert(child);
                stack.push((child, 0));
            } else {
                let d = prereqs
                    .iter()
                    .map(|p| depth.get(p.flag.as_str()).map_or(1, |d| d + 1))
                    .max()
                    .unwrap_or(0);
                if d > MAX_PREREQUISITE_DEPTH {
                    issues.push(Issue::new(
                        format!("/flags/{key}/prerequisites"),
                        format!(
                            "prerequisite chain is {d} deep; the limit is {MAX_PREREQUISITE_DEPTH}"
                        ),
                    ));
                }
                let w = prereqs.iter().fold(0u64, |acc, p| {
                    acc.saturating_add(1 + work.get(p.flag.as_str()).copied().unwrap_or(0))
                });
                if w > MAX_PREREQUISITE_EVALUATIONS && d <= MAX_PREREQUISITE_DEPTH {
                    issues.push(Issue::new(
                        format!("/flags/{key}/prerequisites"),
                        format!(
                            "evaluating this flag visits {w} prerequisites; the limit is {MAX_PREREQUISITE_EVALUATIONS}"
                        ),
                    ));
                }
                depth.insert(key, d);
                work.insert(key, w);
                on_path.remove(key);
                stack.pop();
            }
        }
    }
    issues
}

fn check_description(text: &str, path: &str, issues: &mut Issues<'_>) {
    if text.len() > MAX_DESCRIPTION_LEN {
        issues.push(path, format!("longer than {MAX_DESCRIPTION_LEN} bytes"));
    }
}

/// Checks a JSON value a variant may serve (no nulls, integers exact in a
/// double, nested at most [`MAX_VALUE_DEPTH`] deep); returns the problem.
fn check_json_value(v: &Value) -> Option<String> {
    check_json_value_at(v, 0)
}

fn check_json_value_at(v: &Value, depth: usize) -> Option<String> {
    let nested = || format!("arrays and objects nest more than {MAX_VALUE_DEPTH} deep");
    match v {
        Value::Null => Some("null is not a valid value".into()),
        Value::Number(n) if !number_is_exact(n) => Some(format!(
            "integer {n} is outside ±{MAX_SAFE_INTEGER} and cannot be represented exactly"
        )),
        Value::Array(_) | Value::Object(_) if depth >= MAX_VALUE_DEPTH => Some(nested()),
        Value::Array(items) => items.iter().find_map(|i| check_json_value_at(i, depth + 1)),
        Value::Object(map) => map.values().find_map(|i| check_json_value_at(i, depth + 1)),
        _ => None,
    }
}

fn number_is_exact(n: &serde_json::Number) -> bool {
    if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        true
    }
}

fn value_matches_type(t: ConfigType, v: &Value) -> bool {
    match t {
        ConfigType::String => v.is_string(),
        ConfigType::Integer => v.as_i64().is_some() || v.as_u64().is_some(),
        ConfigType::Float => v.is_number(),
        ConfigType::Bool => v.is_boolean(),
        ConfigType::Json => true,
    }
}

/// Whether `item`, as JSON, is over `limit` bytes; if so, says so. The JSON
/// is counted as it is written, not kept.
fn over_size_limit<T: serde::Serialize>(
    item: &T,
    what: &str,
    limit: usize,
    issues: &mut Issues<'_>,
) -> bool {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    if serde_json::to_writer(&mut count, item).is_err() || count.0 <= limit {
        return false;
    }
    issues.push(
        "",
        format!("{what} is {} bytes; the limit is {limit}", count.0),
    );
    true
}

pub(crate) fn compile_flag(flag: &Flag, refs: &dyn Refs, issues: &mut Issues<'_>) -> Option<CFlag> {
    let start = issues.len();
    if let Some(p) = check_key(&flag.key) {
        issues.push("/key", p);
    }
    check_description(&flag.description, "/description", issues);
    if over_size_limit(flag, "flag", MAX_FLAG_BYTES, issues) {
        return None;
    }
    // Normalize a copy so callers may pass operator input as written; a
    // flag normalizing would not change is used as it is.
    let normalized;
    let flag = if flag.is_normalized() {
        flag
    } else {
        let mut copy = flag.clone();
        copy.normalize();
        normalized = copy;
        &normalized
    };

    match (flag.kind, flag.value_type) {
        (FlagKind::Config, None) => issues.push("/type", "required for config flags"),
        (FlagKind::Boolean | FlagKind::Multivariate, Some(_)) => {
            issues.push("/type", "only config flags have a type")
        }
        _ => {}
    }
    if flag.variants.is_empty() {
        issues.push("/variants", "at least one variant is required");
    }
    if flag.variants.len() > MAX_VARIANTS {
        issues.push("/variants", format!("more than {MAX_VARIANTS} variants"));
    }
    let mut seen = AHashSet::new();
    for (i, v) in flag.variants.iter().enumerate() {
        let path = format!("/variants/{i}");
        if let Some(p) = check_key(&v.key) {
            issues.push(format!("{path}/key"), p);
        } else if !seen.insert(v.key.as_str()) {
            issues.push(
                format!("{path}/key"),
                format!("duplicate variant {:?}", v.key),
            );
        }
        check_description(&v.description, &format!("{path}/description"), issues);
        if let Some(p) = check_json_value(&v.value) {
            issues.push(format!("{path}/value"), p);
            continue;
        }
        match flag.kind {
            FlagKind::Boolean => {
                let expected = match v.key.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => None,
                };
                match expected {
                    None => issues.push(
                        format!("{path}/key"),
                        "boolean flags have exactly the variants \"on\" and \"off\"",
                    ),
                    Some(b) if v.value != Value::Bool(b) => issues.push(
                        format!("{path}/value"),
                        format!("boolean variant {:?} must be {b}", v.key),
                    ),
                    Some(_) => {}
                }
            }
            FlagKind::Multivariate => {}
            FlagKind::Config => {
                if let Some(t) = flag.value_type
                    && !value_matches_type(t, &v.value)
                {
                    issues.push(
                        format!("{path}/value"),
                        format!("expected a value of type {}", type_name(t)),
                    );
                }
            }
        }
    }
    if flag.kind == FlagKind::Boolean && flag.variants.len() != 2 && !flag.variants.is_empty() {
        issues.push(
            "/variants",
            "boolean flags have exactly the variants \"on\" and \"off\"",
        );
    }
    let variant_index = |key: &str| {
        flag.variants
            .iter()
            .position(|v| v.key == key)
            .map(|i| i as u16)
    };

    let off = match &flag.off_variant {
        None => {
            issues.push("/off_variant", "required: the variant served when disabled");
            None
        }
        Some(k) => {
            let i = variant_index(k);
            if i.is_none() {
                issues.push("/off_variant", format!("unknown variant {k:?}"));
            }
            i
        }
    };

    if flag.prerequisites.len() > MAX_PREREQUISITES {
        issues.push(
            "/prerequisites",
            format!("more than {MAX_PREREQUISITES} prerequisites"),
        );
    }
    let mut prerequisites = Vec::with_capacity(flag.prerequisites.len());
    for (i, p) in flag.prerequisites.iter().enumerate() {
        let path = format!("/prerequisites/{i}");
        if p.flag == flag.key {
            issues.push(
                format!("{path}/flag"),
                "a flag cannot be its own prerequisite",
            );
            continue;
        }
        match refs.flag_variant(&p.flag, &p.variant) {
            None => issues.push(format!("{path}/flag"), format!("unknown flag {:?}", p.flag)),
            Some((_, None)) => issues.push(
                format!("{path}/variant"),
                format!("flag {:?} has no variant {:?}", p.flag, p.variant),
            ),
            Some((f, Some(v))) => prerequisites.push(CPrereq {
                flag: f,
                variant: v,
            }),
        }
    }

    if flag.rules.len() > MAX_RULES {
        issues.push("/rules", format!("more than {MAX_RULES} rules"));
    }
    let mut rules = Vec::with_capacity(flag.rules.len());
    for (i, r) in flag.rules.iter().enumerate() {
        let path = format!("/rules/{i}");
        check_description(&r.description, &format!("{path}/description"), issues);
        let clauses = compile_clauses(&r.clauses, &format!("{path}/clauses"), Some(refs), issues);
        let serve = compile_serve(
            &r.serve,
            &format!("{path}/serve"),
            flag,
            &variant_index,
            issues,
        );
        if let (Some(clauses), Some(serve)) = (clauses, serve) {
            rules.push(CRule { clauses, serve });
        }
    }
    let default = match &flag.default {
        Some(s) => compile_serve(s, "/default", flag, &variant_index, issues),
        None => {
            issues.push("/default", "required: what to serve when no rule matches");
            None
        }
    };
    if issues.len() > start {
        return None;
    }
    let enabled = flag.enabled && !flag.killed;
    let default = default?;
    let fixed = match (&default, enabled) {
        (_, false) => Some((off?, Reason::Disabled)),
        (CServe::Variant(v), true) if rules.is_empty() && prerequisites.is_empty() => {
            Some((*v, Reason::Static))
        }
        _ => None,
    };
    Some(CFlag {
        key: flag.key.as_str().into(),
        version: flag.version,
        enabled,
        variants: flag
            .variants
            .iter()
            .map(|v| CVariant {
                key: v.key.as_str().into(),
                value: v.value.clone(),
            })
            .collect(),
        off: off?,
        prerequisites: prerequisites.into(),
        rules: rules.into(),
        default,
        fixed,
    })
}

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::String => "string",
        ConfigType::Integer => "integer",
        ConfigType::Float => "float",
        ConfigType::Bool => "bool",
        ConfigType::Json => "json",
    }
}

fn compile_serve(
    serve: &Serve,
    path: &str,
    flag: &Flag,
    variant_index: &dyn Fn(&str) -> Option<u16>,
    issues: &mut Issues<'_>,
) -> Option<CServe> {
    match serve {
        Serve::Variant(k) => match variant_index(k) {
            Some(i) => Some(CServe::Variant(i)),
            None => {
                issues.push(format!("{path}/variant"), format!("unknown variant {k:?}"));
                None
            }
        },
        Serve::Rollout(r) => {
            compile_rollout(r, &format!("{path}/rollout"), flag, variant_index, issues)
                .map(CServe::Rollout)
        }
    }
}

fn compile_rollout(
    r: &Rollout,
    path: &str,
    flag: &Flag,
    variant_index: &dyn Fn(&str) -> Option<u16>,
    issues: &mut Issues<'_>,
) -> Option<CRollout> {
    let start = issues.len();
    let bucket_by = match r.bucket_by.as_deref() {
        None => Attr::TargetingKey,
        Some(a) => match check_attribute(a) {
            Some(p) => {
                issues.push(format!("{path}/bucket_by"), p);
                Attr::TargetingKey
            }
            None => attr(a),
        },
    };
    let seed = r.seed.as_deref().unwrap_or(&flag.key);
    if seed.len() > MAX_VALUE_LEN {
        issues.push(
            format!("{path}/seed"),
            format!("longer than {MAX_VALUE_LEN} bytes"),
        );
    }
    if r.variants.is_empty() {
        issues.push(
            format!("{path}/variants"),
            "at least one weighted variant is required",
        );
    }
    if r.variants.len() > MAX_ROLLOUT_ARMS {
        issues.push(
            format!("{path}/variants"),
            format!("more than {MAX_ROLLOUT_ARMS} arms"),
        );
    }
    let mut total: u64 = 0;
    let mut arms = Vec::with_capacity(r.variants.len());
    for (i, w) in r.variants.iter().enumerate() {
        total += u64::from(w.weight);
        match variant_index(&w.variant) {
            Some(v) => arms.push(Arm {
                upto: total,
                variant: v,
            }),
            None => issues.push(
                format!("{path}/variants/{i}/variant"),
                format!("unknown variant {:?}", w.variant),
            ),
        }
    }
    if !r.variants.is_empty() && total == 0 {
        issues.push(format!("{path}/variants"), "the weights must not all be 0");
    }
    if total > MAX_TOTAL_WEIGHT {
        issues.push(
            format!("{path}/variants"),
            format!("total weight {total} exceeds {MAX_TOTAL_WEIGHT}"),
        );
    }
    if issues.len() > start {
        return None;
    }
    Some(CRollout {
        bucket_by,
        seed: {
            let mut m = crate::murmur3::Murmur3::new(0);
            m.write(seed.as_bytes());
            m
        },
        total,
        arms: arms.into(),
    })
}

fn check_attribute(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("attribute name must not be empty".into())
    } else if name.len() > MAX_ATTRIBUTE_LEN {
        Some(format!(
            "attribute name longer than {MAX_ATTRIBUTE_LEN} bytes"
        ))
    } else {
        None
    }
}

fn attr(name: &str) -> Attr {
    if name == TARGETING_KEY {
        Attr::TargetingKey
    } else {
        Attr::Named(Key::new(name))
    }
}

pub(crate) fn compile_segment(s: &Segment, issues: &mut Issues<'_>) -> Option<CSegment> {
    let start = issues.len();
    if let Some(p) = check_key(&s.key) {
        issues.push("/key", p);
    }
    check_description(&s.description, "/description", issues);
    if s.included.len() + s.excluded.len() > MAX_SEGMENT_KEYS {
        issues.push(
            "",
            format!("more than {MAX_SEGMENT_KEYS} included and excluded keys"),
        );
    }
    if over_size_limit(s, "segment", MAX_SEGMENT_BYTES, issues) {
        return None;
    }
    let clauses = compile_clauses(&s.clauses, "/clauses", None, issues);
    if issues.len() > start {
        return None;
    }
    Some(CSegment {
        included: s.included.iter().map(|k| Box::from(k.as_str())).collect(),
        excluded: s.excluded.iter().map(|k| Box::from(k.as_str())).collect(),
        clauses: clauses?,
    })
}

fn compile_clauses(
    clauses: &[Clause],
    path: &str,
    refs: Option<&dyn Refs>,
    issues: &mut Issues<'_>,
) -> Option<Box<[CClause]>> {
    if clauses.len() > MAX_CLAUSES {
        issues.push(path, format!("more than {MAX_CLAUSES} clauses"));
    }
    let mut out = Vec::with_capacity(clauses.len());
    let mut ok = true;
    for (i, c) in clauses.iter().enumerate() {
        match compile_clause(c, &format!("{path}/{i}"), refs, issues) {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    ok.then(|| out.into())
}

fn compile_clause(
    c: &Clause,
    path: &str,
    refs: Option<&dyn Refs>,
    issues: &mut Issues<'_>,
) -> Option<CClause> {
    let start = issues.len();
    if c.operator != Operator::InSegment
        && let Some(p) = check_attribute(&c.attribute)
    {
        issues.push(format!("{path}/attribute"), p);
    }
    if c.values.len() > MAX_VALUES {
        issues.push(
            format!("{path}/values"),
            format!("more than {MAX_VALUES} values"),
        );
    }
    let needs_values = c.operator != Operator::Exists;
    if needs_values && c.values.is_empty() {
        issues.push(format!("{path}/values"), "at least one value is required");
    }
    if !needs_values && !c.values.is_empty() {
        issues.push(format!("{path}/values"), "exists takes no values");
    }
    let vpath = |i: usize| format!("{path}/values/{i}");
    // String values with their positions in `values`, for error paths.
    let strings = |issues: &mut Issues<'_>| -> Vec<(usize, &str)> {
        let mut out = Vec::with_capacity(c.values.len());
        for (i, v) in c.values.iter().enumerate() {
            match v.as_str() {
                Some(s) if s.len() > MAX_VALUE_LEN => {
                    issues.push(vpath(i), format!("longer than {MAX_VALUE_LEN} bytes"))
                }
                Some(s) => out.push((i, s)),
                None => issues.push(vpath(i), "expected a string"),
            }
        }
        out
    };
    let boxed = |v: Vec<(usize, &str)>| -> Box<[Box<str>]> {
        v.into_iter().map(|(_, s)| Box::from(s)).collect()
    };
    let numbers = |issues: &mut Issues<'_>| -> Vec<f64> {
        let mut out = Vec::with_capacity(c.values.len());
        for (i, v) in c.values.iter().enumerate() {
            match v {
                Value::Number(n) if number_is_exact(n) => out.push(n.as_f64().unwrap_or(0.0)),
                Value::Number(_) => issues.push(vpath(i), "integer cannot be represented exactly"),
                _ => issues.push(vpath(i), "expected a number"),
            }
        }
        out
    };
    let semvers = |issues: &mut Issues<'_>| -> Vec<semver::Version> {
        let mut out = Vec::new();
        for (i, s) in strings(issues) {
            match semver::Version::parse(s) {
                Ok(v) => out.push(v),
                Err(e) => issues.push(vpath(i), format!("invalid semantic version: {e}")),
            }
        }
        out
    };
    let times = |issues: &mut Issues<'_>| -> Vec<i128> {
        let mut out = Vec::new();
        for (i, s) in strings(issues) {
            match parse_rfc3339(s) {
                Some(t) => out.push(t),
                None => issues.push(vpath(i), "expected an RFC 3339 timestamp"),
            }
        }
        out
    };
    let op = match c.operator {
        Operator::In => {
            let mut strs = Vec::new();
            let mut nums = Vec::new();
            let mut bools = [false; 2];
            for (i, v) in c.values.iter().enumerate() {
                match v {
                    Value::String(s) if s.len() > MAX_VALUE_LEN => {
                        issues.push(vpath(i), format!("longer than {MAX_VALUE_LEN} bytes"))
                    }
                    Value::String(s) => strs.push(Box::<str>::from(s.as_str())),
                    Value::Number(n) if number_is_exact(n) => nums.push(n.as_f64().unwrap_or(0.0)),
                    Value::Number(_) => {
                        issues.push(vpath(i), "integer cannot be represented exactly")
                    }
                    Value::Bool(b) => bools[usize::from(*b)] = true,
                    _ => issues.push(vpath(i), "expected a string, number or boolean"),
                }
            }
            let strings = if strs.len() <= SMALL_SET {
                StrSet::Small(strs.iter().map(|s| Key::new(s)).collect())
            } else {
                StrSet::Hashed(strs.into_iter().collect())
            };
            COp::In(InSet {
                strings,
                numbers: nums.into(),
                bools,
            })
        }
        Operator::StartsWith => COp::StartsWith(boxed(strings(issues))),
        Operator::EndsWith => COp::EndsWith(boxed(strings(issues))),
        Operator::Contains => COp::Contains(boxed(strings(issues))),
        Operator::Matches => {
            let mut regexes = Vec::new();
            for (i, v) in c.values.iter().enumerate() {
                let Some(pattern) = v.as_str() else {
                    issues.push(vpath(i), "expected a string");
                    continue;
                };
                if pattern.len() > MAX_REGEX_LEN {
                    issues.push(vpath(i), format!("regex longer than {MAX_REGEX_LEN} bytes"));
                    continue;
                }
                match RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(r) => regexes.push(r),
                    Err(e) => issues.push(vpath(i), format!("invalid regex: {e}")),
                }
            }
            COp::Matches(regexes.into())
        }
        Operator::Lt => COp::Number(Cmp::Lt, numbers(issues).into()),
        Operator::Lte => COp::Number(Cmp::Lte, numbers(issues).into()),
        Operator::Gt => COp::Number(Cmp::Gt, numbers(issues).into()),
        Operator::Gte => COp::Number(Cmp::Gte, numbers(issues).into()),
        Operator::SemverEq => COp::Semver(Cmp::Eq, semvers(issues).into()),
        Operator::SemverLt => COp::Semver(Cmp::Lt, semvers(issues).into()),
        Operator::SemverLte => COp::Semver(Cmp::Lte, semvers(issues).into()),
        Operator::SemverGt => COp::Semver(Cmp::Gt, semvers(issues).into()),
        Operator::SemverGte => COp::Semver(Cmp::Gte, semvers(issues).into()),
        Operator::Before => COp::Before(times(issues).into()),
        Operator::After => COp::After(times(issues).into()),
        Operator::Exists => COp::Exists,
        Operator::InSegment => {
            let mut segs = Vec::new();
            match refs {
                None => issues.push(
                    format!("{path}/operator"),
                    "segments cannot refer to other segments",
                ),
                Some(refs) => {
                    for (i, v) in c.values.iter().enumerate() {
                        match v.as_str() {
                            None => issues.push(vpath(i), "expected a segment key"),
                            Some(k) => match refs.segment(k) {
                                Some(s) => segs.push(s),
                                None => issues.push(vpath(i), format!("unknown segment {k:?}")),
                            },
                        }
                    }
                }
            }
            COp::InSegment(segs.into())
        }
    };
    if issues.len() > start {
        return None;
    }
    Some(CClause {
        attr: attr(&c.attribute),
        negate: c.negate,
        op,
    })
}

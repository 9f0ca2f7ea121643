//! The flag model and its JSON wire format (see docs/flags.md).
//!
//! These are the plain serde types that operators write and that snapshots
//! carry. They are checked by [`crate::validate`] and turned into the
//! evaluation form by [`crate::compile`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The attribute name that addresses the context's targeting key.
pub const TARGETING_KEY: &str = "targeting_key";

/// An environment such as `dev`, `stage` or `prod`. Flags and segments live
/// inside one environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Environment {
    pub key: String,
    pub name: String,
}

/// What a flag serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Variants `on` = true and `off` = false.
    Boolean,
    /// Named variants whose values are strings, numbers or JSON.
    Multivariate,
    /// A typed runtime configuration value; every variant has the declared type.
    Config,
}

/// The declared value type of a `config` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    String,
    Integer,
    Float,
    Bool,
    Json,
}

/// A named value a flag can serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Variant {
    pub key: String,
    pub value: Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A feature flag or config value, as written by operators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Flag {
    /// Filled from the URL path by the API when absent from the body.
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub kind: FlagKind,
    /// Required for `config` flags, absent otherwise.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub value_type: Option<ConfigType>,
    /// Boolean flags get `on`/`off` when empty.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// The kill switch: a disabled flag serves `off_variant`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Served when disabled or when a prerequisite is not met. Boolean flags
    /// default to `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variant: Option<String>,
    /// Flags that must serve a given variant for this one to be evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<Prerequisite>,
    /// Ordered; the first rule whose clauses all match decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Served when no rule matches. Defaults to `off_variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Serve>,
    /// Revision of this flag, set by the control plane (0 in operator input).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// Set in published snapshots while a kill switch is in force.
    #[serde(default, skip_serializing_if = "is_false")]
    pub killed: bool,
}

/// Another flag must serve `variant` for the dependent flag to be evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prerequisite {
    pub flag: String,
    pub variant: String,
}

/// A targeting rule: all clauses must match (AND), then `serve` decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub clauses: Vec<Clause>,
    pub serve: Serve,
}

/// One condition on a context attribute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Clause {
    /// Context attribute name; `targeting_key` is the targeting key. Unused
    /// by `in_segment`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attribute: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub negate: bool,
}

/// Clause operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    In,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverEq,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    Before,
    After,
    Exists,
    InSegment,
}

/// What a rule or the default serves: one variant, or a weighted rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    Variant(String),
    Rollout(Rollout),
}

/// A deterministic weighted split; see docs/flags.md, "Bucketing".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollout {
    /// The attribute to bucket by; the targeting key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
    /// Prefix hashed before the value; the flag key when absent. May be "".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    pub variants: Vec<WeightedVariant>,
}

/// One arm of a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WeightedVariant {
    pub variant: String,
    pub weight: u32,
}

/// A reusable, named set of clauses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Segment {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Targeting keys always in the segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included: Vec<String>,
    /// Targeting keys never in the segment (unless also included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    /// ANDed; a segment with no clauses holds only its `included` keys.
    #[serde(default)]
    pub clauses: Vec<Clause>,
    /// Revision, set by the control plane (0 in operator input).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
}

fn default_true() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Flag {
    /// A new flag of `kind` with every optional field at its default.
    pub fn new(key: impl Into<String>, kind: FlagKind) -> Flag {
        let mut flag = Flag {
            key: key.into(),
            description: String::new(),
            kind,
            value_type: None,
            variants: Vec::new(),
            enabled: true,
            off_variant: None,
            prerequisites: Vec::new(),
            rules: Vec::new(),
            default: None,
            version: 0,
            killed: false,
        };
        flag.normalize();
        flag
    }

    /// Fills in the defaults the wire format allows to be omitted: boolean
    /// variants, the boolean `off_variant`, and `default` = `off_variant`.
    /// Idempotent.
    pub fn normalize(&mut self) {
        if self.kind == FlagKind::Boolean {
            if self.variants.is_empty() {
                self.variants = vec![
                    Variant {
                        key: "on".into(),
                        value: Value::Bool(true),
                        description: String::new(),
                    },
                    Variant {
                        key: "off".into(),
                        value: Value::Bool(false),
                        description: String::new(),
                    },
                ];
            }
            if self.off_variant.is_none() {
                self.off_variant = Some("off".into());
            }
        }
        if self.default.is_none()
            && let Some(off) = &self.off_variant
        {
            self.default = Some(Serve::Variant(off.clone()));
        }
    }

    /// True when [`Flag::normalize`] would change nothing.
    pub fn is_normalized(&self) -> bool {
        let boolean_done = self.kind != FlagKind::Boolean
            || (!self.variants.is_empty() && self.off_variant.is_some());
        boolean_done && (self.default.is_some() || self.off_variant.is_none())
    }

    /// The variant with key `key`.
    pub fn variant(&self, key: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.key == key)
    }

    /// This flag with the control plane's fields (`version`, `killed`) cleared:
    /// what an operator's edit is compared on.
    pub fn content(&self) -> Flag {
        Flag {
            version: 0,
            killed: false,
            ..self.clone()
        }
    }

    /// Whether the two flags' contents are equal: `self.content() ==
    /// other.content()`, without the copies.
    pub fn same_content(&self, other: &Flag) -> bool {
        // Every field is named, so a new one is not forgotten here.
        let Flag {
            key,
            description,
            kind,
            value_type,
            variants,
            enabled,
            off_variant,
            prerequisites,
            rules,
            default,
            version: _,
            killed: _,
        } = self;
        *key == other.key
            && *description == other.description
            && *kind == other.kind
            && *value_type == other.value_type
            && *variants == other.variants
            && *enabled == other.enabled
            && *off_variant == other.off_variant
            && *prerequisites == other.prerequisites
            && *rules == other.rules
            && *default == other.default
    }
}

impl Segment {
    /// This segment with `version` cleared.
    pub fn content(&self) -> Segment {
        Segment {
            version: 0,
            ..self.clone()
        }
    }

    /// Whether the two segments' contents are equal: `self.content() ==
    /// other.content()`, without the copies.
    pub fn same_content(&self, other: &Segment) -> bool {
        let Segment {
            key,
            description,
            included,
            excluded,
            clauses,
            version: _,
        } = self;
        *key == other.key
            && *description == other.description
            && *included == other.included
            && *excluded == other.excluded
            && *clauses == other.clauses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn is_normalized_says_whether_normalize_changes_anything() {
        let cases = [
            json!({"kind": "boolean"}),
            json!({"kind": "boolean", "off_variant": "off"}),
            json!({"kind": "boolean", "default": {"variant": "on"}}),
            json!({"kind": "multivariate", "variants": [{"key": "a", "value": "x"}]}),
            json!({"kind": "multivariate", "variants": [{"key": "a", "value": "x"}], "off_variant": "a"}),
            json!({"kind": "multivariate", "variants": [{"key": "a", "value": "x"}], "off_variant": "a", "default": {"variant": "a"}}),
        ];
        for case in cases {
            let mut f: Flag = serde_json::from_value(case.clone()).unwrap();
            let before = f.clone();
            f.normalize();
            assert_eq!(before.is_normalized(), before == f, "{case}");
            assert!(f.is_normalized(), "{case}");
        }
    }

    #[test]
    fn minimal_boolean_flag_serves_off() {
        let mut f: Flag = serde_json::from_value(json!({"kind": "boolean"})).unwrap();
        f.normalize();
        assert_eq!(f.variants.len(), 2);
        assert_eq!(f.off_variant.as_deref(), Some("off"));
        assert_eq!(f.default, Some(Serve::Variant("off".into())));
        assert!(f.enabled);
        let again = f.clone();
        f.normalize();
        assert_eq!(f, again);
    }

    #[test]
    fn serve_wire_format() {
        let s: Serve = serde_json::from_value(json!({"variant": "on"})).unwrap();
        assert_eq!(s, Serve::Variant("on".into()));
        let r: Serve = serde_json::from_value(json!({"rollout": {
            "variants": [{"variant": "on", "weight": 1}, {"variant": "off", "weight": 3}]
        }}))
        .unwrap();
        let Serve::Rollout(r) = r else { panic!() };
        assert_eq!(r.bucket_by, None);
        assert_eq!(r.seed, None);
        assert_eq!(r.variants[1].weight, 3);
    }
}

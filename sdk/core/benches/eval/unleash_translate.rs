//! Translates an Unleash client-API feature set (the peer benchmark's data)
//! into Pulseplane flags and segments with the same targeting shape.
//!
//! - a lone unconstrained `default` strategy → the default serve `on`; other
//!   `default` strategies → a rule serving `on` (or the feature's variants);
//! - `flexibleRollout` r% → a rollout of r% `on` by the stickiness attribute,
//!   seeded with the strategy's groupId; with variants, a rollout over them;
//! - `userWithId` → `targeting_key in [...]`; `remoteAddress` → `remote_address in [...]`;
//! - constraints → clauses (IN, NOT_IN, STR_STARTS_WITH, DATE_AFTER), segments → `in_segment`.

use pulseplane_core::model::{
    Clause, Flag, FlagKind, Operator, Rollout, Rule, Segment, Serve, Variant, WeightedVariant,
};
use serde_json::{Value, json};

fn attribute(unleash: &str) -> String {
    match unleash {
        "userId" => "targeting_key".into(),
        "sessionId" => "session_id".into(),
        "appName" => "app_name".into(),
        "remoteAddress" => "remote_address".into(),
        "currentTime" => "current_time".into(),
        other => other.into(),
    }
}

fn clause(c: &Value) -> Clause {
    let (operator, negate_op) = match c["operator"].as_str().unwrap_or("") {
        "IN" => (Operator::In, false),
        "NOT_IN" => (Operator::In, true),
        "STR_STARTS_WITH" => (Operator::StartsWith, false),
        "DATE_AFTER" => (Operator::After, false),
        other => panic!("constraint operator {other} is not translated"),
    };
    let values = match c.get("values").and_then(Value::as_array) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => vec![c["value"].clone()],
    };
    Clause {
        attribute: attribute(c["contextName"].as_str().unwrap_or("")),
        operator,
        values,
        negate: c["inverted"].as_bool().unwrap_or(false) != negate_op,
    }
}

fn clauses(strategy: &Value) -> Vec<Clause> {
    let mut out: Vec<Clause> = strategy["constraints"]
        .as_array()
        .map(|cs| cs.iter().map(clause).collect())
        .unwrap_or_default();
    if let Some(segs) = strategy.get("segments").and_then(Value::as_array) {
        for s in segs {
            out.push(Clause {
                attribute: String::new(),
                operator: Operator::InSegment,
                values: vec![json!(format!("seg-{s}"))],
                negate: false,
            });
        }
    }
    out
}

/// The strategy's constraints plus `attribute in <comma-separated parameter>`.
fn list_clause(strategy: &Value, parameter: &str, attribute: &str) -> Vec<Clause> {
    let values: Vec<Value> = strategy["parameters"][parameter]
        .as_str()
        .unwrap_or("")
        .split(',')
        .map(|v| json!(v.trim()))
        .collect();
    let mut out = clauses(strategy);
    out.push(Clause {
        attribute: attribute.into(),
        operator: Operator::In,
        values,
        negate: false,
    });
    out
}

fn bucket_by(stickiness: Option<&str>) -> Option<String> {
    match stickiness {
        None | Some("default") | Some("userId") => None,
        Some(other) => Some(attribute(other)),
    }
}

/// Weighted arms over named variants, scaled to `percent` with `off` for the rest.
fn variant_arms(variants: &[Value], percent: u32) -> Vec<WeightedVariant> {
    let mut arms: Vec<WeightedVariant> = variants
        .iter()
        .map(|v| WeightedVariant {
            variant: v["name"].as_str().unwrap_or("").to_owned(),
            weight: v["weight"].as_u64().unwrap_or(0) as u32 * percent,
        })
        .collect();
    if percent < 100 {
        arms.push(WeightedVariant {
            variant: "off".into(),
            weight: 1000 * (100 - percent),
        });
    }
    arms
}

/// Translates `{"features": [...], "segments": [...]}`.
pub fn translate(doc: &Value) -> (Vec<Flag>, Vec<Segment>) {
    let segments = doc["segments"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .map(|s| Segment {
                    key: format!("seg-{}", s["id"]),
                    description: String::new(),
                    included: Vec::new(),
                    excluded: Vec::new(),
                    clauses: s["constraints"]
                        .as_array()
                        .map(|cs| cs.iter().map(clause).collect())
                        .unwrap_or_default(),
                    version: 0,
                })
                .collect()
        })
        .unwrap_or_default();
    let features = doc["features"].as_array().cloned().unwrap_or_default();
    let flags = features.iter().map(feature).collect();
    (flags, segments)
}

fn feature(f: &Value) -> Flag {
    let key = f["name"].as_str().unwrap_or("").to_owned();
    let strategies = f["strategies"].as_array().cloned().unwrap_or_default();
    let feature_variants = f["variants"].as_array().cloned().unwrap_or_default();
    let mut all_variants: Vec<Value> = feature_variants.clone();
    for s in &strategies {
        if let Some(vs) = s["variants"].as_array() {
            all_variants.extend(vs.iter().cloned());
        }
    }
    let multivariate = !all_variants.is_empty();
    let mut flag = Flag::new(
        key.clone(),
        if multivariate {
            FlagKind::Multivariate
        } else {
            FlagKind::Boolean
        },
    );
    flag.enabled = f["enabled"].as_bool().unwrap_or(false);
    if multivariate {
        let mut variants = vec![Variant {
            key: "off".into(),
            value: json!("disabled"),
            description: String::new(),
        }];
        for v in &all_variants {
            let name = v["name"].as_str().unwrap_or("").to_owned();
            if variants.iter().any(|x| x.key == name) {
                continue;
            }
            let value = v["payload"]["value"].clone();
            variants.push(Variant {
                key: name,
                value: if value.is_null() { json!("") } else { value },
                description: String::new(),
            });
        }
        flag.variants = variants;
        flag.off_variant = Some("off".into());
        flag.default = Some(Serve::Variant("off".into()));
    }
    let on = if multivariate {
        None
    } else {
        Some(Serve::Variant("on".into()))
    };
    // A lone `default` strategy without constraints is "on for everyone":
    // the flag's default serve.
    if let [only] = &strategies[..] {
        let unconstrained = only["constraints"].as_array().is_none_or(Vec::is_empty)
            && only
                .get("segments")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if only["name"] == "default"
            && unconstrained
            && feature_variants.is_empty()
            && let Some(serve) = on
        {
            flag.default = Some(serve);
            return flag;
        }
    }
    for s in &strategies {
        let params = &s["parameters"];
        let strategy_variants = s["variants"].as_array().cloned().unwrap_or_default();
        let (clauses, serve) = match s["name"].as_str().unwrap_or("") {
            "default" => {
                let serve = if !feature_variants.is_empty() {
                    let stick = feature_variants[0]["stickiness"].as_str();
                    Serve::Rollout(Rollout {
                        bucket_by: bucket_by(stick),
                        seed: None,
                        variants: variant_arms(&feature_variants, 100),
                    })
                } else {
                    on.clone().unwrap_or(Serve::Variant("off".into()))
                };
                (clauses(s), serve)
            }
            "flexibleRollout" => {
                let percent: u32 = params["rollout"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(100);
                let seed = params["groupId"].as_str().map(str::to_owned);
                let by = bucket_by(params["stickiness"].as_str());
                let arms = if strategy_variants.is_empty() {
                    vec![
                        WeightedVariant {
                            variant: "on".into(),
                            weight: percent * 1000,
                        },
                        WeightedVariant {
                            variant: "off".into(),
                            weight: (100 - percent) * 1000,
                        },
                    ]
                } else {
                    variant_arms(&strategy_variants, percent)
                };
                let serve = if multivariate && strategy_variants.is_empty() {
                    // A plain rollout on a flag whose other strategies carry variants.
                    Serve::Variant("off".into())
                } else if percent == 100 && strategy_variants.is_empty() {
                    Serve::Variant("on".into())
                } else {
                    Serve::Rollout(Rollout {
                        bucket_by: by,
                        seed,
                        variants: arms,
                    })
                };
                (clauses(s), serve)
            }
            "userWithId" => (
                list_clause(s, "userIds", "targeting_key"),
                on.clone().unwrap_or(Serve::Variant("off".into())),
            ),
            "remoteAddress" => (
                list_clause(s, "IPs", "remote_address"),
                on.clone().unwrap_or(Serve::Variant("off".into())),
            ),
            other => panic!("strategy {other} is not translated"),
        };
        flag.rules.push(Rule {
            description: String::new(),
            clauses,
            serve,
        });
    }
    flag
}

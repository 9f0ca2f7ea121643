//! No panic is reachable from data: arbitrary JSON in place of flags,
//! segments and contexts is either accepted or refused with issues, and
//! evaluation of whatever compiles never panics.

use proptest::prelude::*;
use pulseplane_core::issue::parse_json;
use pulseplane_core::{Context, Flag, Segment, Snapshot};
use serde_json::{Value, json};

/// Arbitrary JSON, biased towards the words the model uses so that many
/// documents get past parsing and reach validation and evaluation.
fn json_value() -> impl Strategy<Value = Value> {
    let words = prop_oneof![
        Just("on"),
        Just("off"),
        Just("a"),
        Just("b"),
        Just("boolean"),
        Just("multivariate"),
        Just("config"),
        Just("in"),
        Just("matches"),
        Just("semver_gt"),
        Just("after"),
        Just("exists"),
        Just("in_segment"),
        Just("targeting_key"),
        Just("country"),
        Just("s"),
        Just("f0"),
        Just("f1"),
        Just("(a|b)*"),
        Just("1.2.3"),
        Just("2026-01-01T00:00:00Z"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        words.prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("key".to_string()),
                    Just("kind".to_string()),
                    Just("variants".to_string()),
                    Just("value".to_string()),
                    Just("rules".to_string()),
                    Just("clauses".to_string()),
                    Just("attribute".to_string()),
                    Just("operator".to_string()),
                    Just("values".to_string()),
                    Just("serve".to_string()),
                    Just("variant".to_string()),
                    Just("rollout".to_string()),
                    Just("weight".to_string()),
                    Just("default".to_string()),
                    Just("off_variant".to_string()),
                    Just("prerequisites".to_string()),
                    Just("flag".to_string()),
                    Just("type".to_string()),
                    Just("negate".to_string()),
                    Just("enabled".to_string()),
                    Just("bucket_by".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_flags_never_panic(flags in prop::collection::vec(json_value(), 0..4),
                                   seg in json_value(),
                                   ctx in json_value()) {
        let flags: Vec<Flag> = flags
            .into_iter()
            .filter_map(|v| parse_json(&serde_json::to_vec(&v).unwrap()).ok())
            .collect();
        let segments: Vec<Segment> = parse_json(&serde_json::to_vec(&seg).unwrap()).into_iter().collect();
        let snap = Snapshot::new("e", 1, Some(0), flags, segments);
        // The snapshot round-trips through its wire form either way.
        let reloaded = Snapshot::from_json(&snap.to_json());
        prop_assert!(reloaded.is_ok());
        let context: Context = parse_json(&serde_json::to_vec(&ctx).unwrap()).unwrap_or_default();
        if let Ok(set) = snap.compile() {
            for f in &snap.flags {
                let _ = set.bool_details(&f.key, &context, false);
                let _ = set.string_details(&f.key, &context, "");
                let _ = set.json_details(&f.key, &context, &Value::Null);
            }
        }
    }

    #[test]
    fn arbitrary_snapshot_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Snapshot::load(&bytes);
    }
}

/// Well-formed flags with random rules always compile or report issues, and
/// the result of evaluating them is one of their variants or the default.
#[test]
fn every_valid_example_evaluates_to_a_variant_or_the_default() {
    let flag: Flag = serde_json::from_value(json!({
        "key": "f", "kind": "multivariate", "off_variant": "a",
        "variants": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
        "rules": [{"clauses": [{"attribute": "n", "operator": "gt", "values": [3]}],
                   "serve": {"rollout": {"bucket_by": "n", "variants": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 1}]}}}]
    }))
    .unwrap();
    let set = Snapshot::new("e", 1, Some(0), vec![flag], vec![])
        .compile()
        .unwrap();
    for n in [-1e300, -1.5, 0.0, 3.0, 3.5, 1e21, f64::MAX] {
        let ctx = Context::new("u").with("n", n);
        let d = set.string_details("f", &ctx, "default");
        assert!(["A", "B"].contains(&d.value), "{n}: {d:?}");
    }
}

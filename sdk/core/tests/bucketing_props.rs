//! Property tests of rollout bucketing through full evaluation.

use proptest::prelude::*;
use pulseplane_core::model::{Rollout, Serve, WeightedVariant};
use pulseplane_core::{Context, Flag, FlagKind, FlagSet, Snapshot};
use serde_json::json;

fn multivariate(key: &str, weights: &[u32], seed: Option<String>) -> Flag {
    let variants: Vec<_> = (0..weights.len())
        .map(|i| json!({"key": format!("v{i}"), "value": i}))
        .collect();
    let mut flag: Flag = serde_json::from_value(json!({
        "key": key, "kind": "multivariate", "variants": variants, "off_variant": "v0"
    }))
    .unwrap();
    flag.default = Some(Serve::Rollout(Rollout {
        bucket_by: None,
        seed,
        variants: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| WeightedVariant {
                variant: format!("v{i}"),
                weight: w,
            })
            .collect(),
    }));
    flag
}

fn compile(flags: Vec<Flag>) -> FlagSet {
    Snapshot::new("props", 1, Some(0), flags, vec![])
        .compile()
        .unwrap()
}

fn percent_flag(key: &str, on_weight: u32) -> Flag {
    let mut f = Flag::new(key, FlagKind::Boolean);
    f.default = Some(Serve::Rollout(Rollout {
        bucket_by: None,
        seed: None,
        variants: vec![
            WeightedVariant {
                variant: "on".into(),
                weight: on_weight,
            },
            WeightedVariant {
                variant: "off".into(),
                weight: 100_000 - on_weight,
            },
        ],
    }));
    f
}

/// Weights of 2 to 5 arms summing to 100 000.
fn weights() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(1u32..1000, 2..=5).prop_map(|raw| {
        let sum: u32 = raw.iter().sum();
        let mut w: Vec<u32> = raw.iter().map(|r| r * 100_000 / sum).collect();
        let rest = 100_000 - w.iter().sum::<u32>();
        w[0] += rest;
        w
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Over 100 000 targeting keys the observed split is within ±1% of the weights.
    #[test]
    fn split_matches_weights(w in weights(), key in "[a-z][a-z0-9-]{0,20}", prefix in "[a-z]{1,8}") {
        let set = compile(vec![multivariate(&key, &w, None)]);
        let mut counts = vec![0u64; w.len()];
        let n = 100_000u64;
        let mut ctx = Context::default();
        for i in 0..n {
            ctx.clear();
            ctx.set_targeting_key(&format!("{prefix}-{i}"));
            let d = set.int_details(&key, &ctx, -1);
            prop_assert!(d.value >= 0);
            counts[d.value as usize] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            let observed = *c as f64 / n as f64;
            let expected = f64::from(w[i]) / 100_000.0;
            prop_assert!((observed - expected).abs() <= 0.01,
                "arm {} observed {:.4}, weight {:.4}", i, observed, expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The same input always gives the same output, across separate compiles.
    #[test]
    fn evaluation_is_deterministic(
        w in weights(),
        key in "[a-z][a-z0-9.-]{0,20}",
        seed in proptest::option::of(".{0,12}"),
        users in prop::collection::vec(".{0,40}", 1..50),
    ) {
        let a = compile(vec![multivariate(&key, &w, seed.clone())]);
        let b = compile(vec![multivariate(&key, &w, seed)]);
        for u in users {
            let ctx = Context::new(u);
            let x = a.int_details(&key, &ctx, -1);
            let y = a.int_details(&key, &ctx, -1);
            let z = b.int_details(&key, &ctx, -1);
            prop_assert_eq!(&x, &y);
            prop_assert_eq!(x.value, z.value);
            prop_assert_eq!(x.variant, z.variant);
        }
    }

    /// Raising a rollout keeps every user who was already in.
    #[test]
    fn raising_a_rollout_keeps_users_in(
        low in 0u32..=100_000,
        raise in 0u32..=100_000,
        key in "[a-z][a-z0-9-]{0,20}",
        users in prop::collection::vec("[a-z0-9-]{1,24}", 1..200),
    ) {
        let high = (low + raise).min(100_000);
        let before = compile(vec![percent_flag(&key, low)]);
        let after = compile(vec![percent_flag(&key, high)]);
        for u in users {
            let ctx = Context::new(u);
            if before.bool_value(&key, &ctx, false) {
                prop_assert!(after.bool_value(&key, &ctx, false));
            }
        }
    }
}

/// The 10% → 20% step over 100 000 users, exhaustively.
#[test]
fn ten_to_twenty_percent_keeps_everyone() {
    let before = compile(vec![percent_flag("promo", 10_000)]);
    let after = compile(vec![percent_flag("promo", 20_000)]);
    let (mut was_in, mut now_in) = (0, 0);
    for i in 0..100_000 {
        let ctx = Context::new(format!("user-{i}"));
        let b = before.bool_value("promo", &ctx, false);
        let a = after.bool_value("promo", &ctx, false);
        assert!(!b || a, "user-{i} left the rollout");
        was_in += u32::from(b);
        now_in += u32::from(a);
    }
    assert!((9_000..11_000).contains(&was_in), "{was_in}");
    assert!((19_000..21_000).contains(&now_in), "{now_in}");
}

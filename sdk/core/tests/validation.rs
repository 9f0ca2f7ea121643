//! Every validation rule, and malformed JSON: each problem is reported with
//! the JSON pointer of the offending field, all problems at once.

use pulseplane_core::compile::{check_prerequisite_graph, validate_flag, validate_segment};
use pulseplane_core::issue::parse_json;
use pulseplane_core::{Flag, FlagSet, Issue, Segment};
use serde_json::{Value, json};

/// Validates `flag` in an environment holding segment `beta` and boolean flag `base`.
fn check(flag: Value) -> Vec<Issue> {
    let text = serde_json::to_vec(&flag).unwrap();
    let flag: Flag = match parse_json(&text) {
        Ok(f) => f,
        Err(e) => return e.issues,
    };
    validate_flag(&flag, &|s| s == "beta", &|f| {
        (f == "base").then(|| vec!["on".to_string(), "off".to_string()])
    })
}

fn mv(extra: Value) -> Value {
    let mut base = json!({
        "key": "f", "kind": "multivariate", "off_variant": "a",
        "variants": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn clause_flag(clause: Value) -> Value {
    mv(json!({"rules": [{"clauses": [clause], "serve": {"variant": "b"}}]}))
}

#[track_caller]
fn expect(flag: Value, path: &str, message: &str) {
    let issues = check(flag.clone());
    assert!(
        issues
            .iter()
            .any(|i| i.path == path && i.message.contains(message)),
        "expected {path}: ...{message}... for {flag}\ngot {issues:?}"
    );
}

#[test]
fn valid_flags_pass() {
    assert_eq!(check(json!({"key": "f", "kind": "boolean"})), vec![]);
    assert_eq!(check(mv(json!({}))), vec![]);
    assert_eq!(
        check(
            json!({"key": "t", "kind": "config", "type": "integer", "off_variant": "n",
                     "variants": [{"key": "n", "value": 3}]})
        ),
        vec![]
    );
}

#[test]
fn keys_and_descriptions() {
    expect(
        json!({"key": "", "kind": "boolean"}),
        "/key",
        "must not be empty",
    );
    expect(
        json!({"key": "a b", "kind": "boolean"}),
        "/key",
        "may only contain",
    );
    expect(
        json!({"key": "-a", "kind": "boolean"}),
        "/key",
        "must start with",
    );
    expect(
        json!({"key": "x".repeat(129), "kind": "boolean"}),
        "/key",
        "longer than 128",
    );
    expect(
        json!({"key": "f", "kind": "boolean", "description": "d".repeat(4097)}),
        "/description",
        "longer than 4096",
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": 1, "description": "d".repeat(5000)}]})),
        "/variants/0/description",
        "longer than",
    );
}

#[test]
fn kinds_types_and_variants() {
    expect(
        json!({"key": "f", "kind": "config", "off_variant": "a", "variants": [{"key": "a", "value": 1}]}),
        "/type",
        "required for config",
    );
    expect(
        json!({"key": "f", "kind": "boolean", "type": "bool"}),
        "/type",
        "only config flags",
    );
    expect(
        mv(json!({"variants": []})),
        "/variants",
        "at least one variant",
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"key": format!("v{i}"), "value": i}))
        .collect();
    expect(
        mv(json!({"variants": many})),
        "/variants",
        "more than 100 variants",
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]})),
        "/variants/1/key",
        "duplicate variant",
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": 1}, {"key": "b c", "value": 2}]})),
        "/variants/1/key",
        "may only contain",
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": null}]})),
        "/variants/0/value",
        "null",
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": 9007199254740993u64}]})),
        "/variants/0/value",
        "cannot be represented exactly",
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": {"deep": [1, null]}}]})),
        "/variants/0/value",
        "null",
    );
    // Values nest at most 32 deep: stored state and audit entries hold them
    // several levels down, under the JSON readers' limit of 128.
    let nested = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    assert_eq!(
        check(mv(json!({"variants": [{"key": "a", "value": nested(32)}]}))),
        vec![]
    );
    expect(
        mv(json!({"variants": [{"key": "a", "value": nested(33)}]})),
        "/variants/0/value",
        "nest more than 32 deep",
    );
    expect(
        json!({"key": "f", "kind": "boolean", "variants": [{"key": "on", "value": true}, {"key": "maybe", "value": true}]}),
        "/variants/1/key",
        "exactly the variants",
    );
    expect(
        json!({"key": "f", "kind": "boolean", "variants": [{"key": "on", "value": false}, {"key": "off", "value": false}]}),
        "/variants/0/value",
        "must be true",
    );
    expect(
        json!({"key": "f", "kind": "boolean", "variants": [{"key": "on", "value": true}]}),
        "/variants",
        "exactly the variants",
    );
    for (t, bad) in [
        ("string", json!(1)),
        ("integer", json!(1.5)),
        ("float", json!("1")),
        ("bool", json!("true")),
    ] {
        expect(
            json!({"key": "f", "kind": "config", "type": t, "off_variant": "a", "variants": [{"key": "a", "value": bad}]}),
            "/variants/0/value",
            &format!("type {t}"),
        );
    }
    expect(mv(json!({"off_variant": null})), "/off_variant", "required");
    expect(
        mv(json!({"off_variant": "zzz"})),
        "/off_variant",
        "unknown variant",
    );
    expect(
        mv(json!({"off_variant": null, "default": null})),
        "/default",
        "required",
    );
    expect(
        mv(json!({"default": {"variant": "zzz"}})),
        "/default/variant",
        "unknown variant",
    );
}

#[test]
fn prerequisites() {
    let many: Vec<Value> = (0..21)
        .map(|_| json!({"flag": "base", "variant": "on"}))
        .collect();
    expect(
        mv(json!({"prerequisites": many})),
        "/prerequisites",
        "more than 20",
    );
    expect(
        mv(json!({"prerequisites": [{"flag": "f", "variant": "a"}]})),
        "/prerequisites/0/flag",
        "its own prerequisite",
    );
    expect(
        mv(json!({"prerequisites": [{"flag": "nope", "variant": "on"}]})),
        "/prerequisites/0/flag",
        "unknown flag",
    );
    expect(
        mv(json!({"prerequisites": [{"flag": "base", "variant": "maybe"}]})),
        "/prerequisites/0/variant",
        "no variant",
    );
}

#[test]
fn prerequisite_cycles_and_depth() {
    let flag = |key: &str, pre: &[&str]| -> Flag {
        let pre: Vec<Value> = pre
            .iter()
            .map(|p| json!({"flag": p, "variant": "on"}))
            .collect();
        serde_json::from_value(json!({"key": key, "kind": "boolean", "prerequisites": pre}))
            .unwrap()
    };
    let cyc = [
        flag("a", &["b"]),
        flag("b", &["c"]),
        flag("c", &["a"]),
        flag("d", &["a"]),
    ];
    let issues = check_prerequisite_graph(cyc.iter());
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(
        issues[0]
            .message
            .contains("prerequisite cycle: a -> b -> c -> a"),
        "{issues:?}"
    );
    // The set-level compile reports it as well.
    let err = FlagSet::compile("e", 1, &cyc, &[]).unwrap_err();
    assert!(
        err.issues.iter().any(|i| i.message.contains("cycle")),
        "{err}"
    );

    let chain: Vec<Flag> = (0..12)
        .map(|i| {
            let pre = format!("f{}", i + 1);
            if i == 11 {
                flag(&format!("f{i}"), &[])
            } else {
                flag(&format!("f{i}"), &[&pre])
            }
        })
        .collect();
    let issues = check_prerequisite_graph(chain.iter());
    assert!(
        issues
            .iter()
            .any(|i| i.path == "/flags/f0/prerequisites" && i.message.contains("11 deep")),
        "{issues:?}"
    );
    assert!(check_prerequisite_graph(chain[1..].iter()).is_empty());

    // Shallow but wide: 4 layers of 5 flags, each requiring all of the next
    // layer, would make one evaluation visit 5 + 25 + 125 prerequisites.
    let layer = |l: usize| -> Vec<String> { (0..5).map(|i| format!("l{l}-{i}")).collect() };
    let mut wide = vec![];
    for l in 0..4 {
        for key in layer(l) {
            let next = if l == 3 { vec![] } else { layer(l + 1) };
            let next: Vec<&str> = next.iter().map(String::as_str).collect();
            wide.push(flag(&key, &next));
        }
    }
    wide.push(flag(
        "top",
        &layer(0).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let issues = check_prerequisite_graph(wide.iter());
    assert!(
        issues.iter().any(|i| i.path == "/flags/top/prerequisites"
            && i.message.contains("visits 780 prerequisites")),
        "{issues:?}"
    );
    assert!(
        issues.iter().all(|i| !i.path.starts_with("/flags/l1")),
        "{issues:?}"
    );
}

#[test]
fn rules_and_clauses() {
    let rules: Vec<Value> = (0..501)
        .map(|_| json!({"serve": {"variant": "a"}}))
        .collect();
    expect(mv(json!({"rules": rules})), "/rules", "more than 500 rules");
    let clauses: Vec<Value> = (0..51)
        .map(|_| json!({"attribute": "x", "operator": "exists"}))
        .collect();
    expect(
        mv(json!({"rules": [{"clauses": clauses, "serve": {"variant": "a"}}]})),
        "/rules/0/clauses",
        "more than 50 clauses",
    );
    let values: Vec<Value> = (0..10_001).map(|i| json!(format!("v{i}"))).collect();
    expect(
        clause_flag(json!({"attribute": "x", "operator": "in", "values": values})),
        "/rules/0/clauses/0/values",
        "more than 10000",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "in", "values": ["v".repeat(4097)]})),
        "/rules/0/clauses/0/values/0",
        "longer than 4096",
    );
    expect(
        clause_flag(json!({"attribute": "", "operator": "in", "values": ["a"]})),
        "/rules/0/clauses/0/attribute",
        "must not be empty",
    );
    expect(
        clause_flag(json!({"attribute": "a".repeat(257), "operator": "in", "values": ["a"]})),
        "/rules/0/clauses/0/attribute",
        "longer than 256",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "in", "values": []})),
        "/rules/0/clauses/0/values",
        "at least one value",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "exists", "values": ["a"]})),
        "/rules/0/clauses/0/values",
        "exists takes no values",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "in", "values": [null]})),
        "/rules/0/clauses/0/values/0",
        "expected a string, number or boolean",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "in", "values": [{"a": 1}]})),
        "/rules/0/clauses/0/values/0",
        "expected a string, number or boolean",
    );
    for op in ["starts_with", "ends_with", "contains", "matches"] {
        expect(
            clause_flag(json!({"attribute": "x", "operator": op, "values": ["ok", 3]})),
            "/rules/0/clauses/0/values/1",
            "expected a string",
        );
    }
    expect(
        clause_flag(json!({"attribute": "x", "operator": "matches", "values": ["a(b"]})),
        "/rules/0/clauses/0/values/0",
        "invalid regex",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "matches", "values": ["a".repeat(1025)]})),
        "/rules/0/clauses/0/values/0",
        "regex longer than 1024",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "matches", "values": ["(\\w{50}){50}"]})),
        "/rules/0/clauses/0/values/0",
        "invalid regex",
    );
    for op in ["lt", "lte", "gt", "gte"] {
        expect(
            clause_flag(json!({"attribute": "x", "operator": op, "values": ["3"]})),
            "/rules/0/clauses/0/values/0",
            "expected a number",
        );
    }
    for op in [
        "semver_eq",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
    ] {
        expect(
            clause_flag(json!({"attribute": "x", "operator": op, "values": ["1.2"]})),
            "/rules/0/clauses/0/values/0",
            "invalid semantic version",
        );
    }
    // Error paths name the offending element, even after a non-string one.
    expect(
        clause_flag(
            json!({"attribute": "x", "operator": "semver_gt", "values": [1, "1.0.0", "bad"]}),
        ),
        "/rules/0/clauses/0/values/2",
        "invalid semantic version",
    );
    expect(
        clause_flag(json!({"attribute": "x", "operator": "in", "values": [9007199254740993u64]})),
        "/rules/0/clauses/0/values/0",
        "cannot be represented exactly",
    );
    for op in ["before", "after"] {
        expect(
            clause_flag(
                json!({"attribute": "x", "operator": op, "values": ["2026-13-01T00:00:00Z"]}),
            ),
            "/rules/0/clauses/0/values/0",
            "RFC 3339",
        );
        expect(
            clause_flag(json!({"attribute": "x", "operator": op, "values": [1700000000]})),
            "/rules/0/clauses/0/values/0",
            "expected a string",
        );
    }
    expect(
        clause_flag(json!({"operator": "in_segment", "values": ["nope"]})),
        "/rules/0/clauses/0/values/0",
        "unknown segment",
    );
    expect(
        clause_flag(json!({"operator": "in_segment", "values": [1]})),
        "/rules/0/clauses/0/values/0",
        "expected a segment key",
    );
    assert_eq!(
        check(clause_flag(
            json!({"operator": "in_segment", "values": ["beta"]})
        )),
        vec![]
    );
}

#[test]
fn rollouts() {
    let ro = |r: Value| mv(json!({"default": {"rollout": r}}));
    expect(
        ro(json!({"variants": []})),
        "/default/rollout/variants",
        "at least one",
    );
    expect(
        ro(json!({"variants": [{"variant": "a", "weight": 0}, {"variant": "b", "weight": 0}]})),
        "/default/rollout/variants",
        "must not all be 0",
    );
    expect(
        ro(json!({"variants": [{"variant": "zzz", "weight": 1}]})),
        "/default/rollout/variants/0/variant",
        "unknown variant",
    );
    expect(
        ro(
            json!({"variants": [{"variant": "a", "weight": 4294967295u32}, {"variant": "b", "weight": 1}]}),
        ),
        "/default/rollout/variants",
        "exceeds",
    );
    expect(
        ro(json!({"bucket_by": "", "variants": [{"variant": "a", "weight": 1}]})),
        "/default/rollout/bucket_by",
        "must not be empty",
    );
    expect(
        ro(json!({"seed": "s".repeat(4097), "variants": [{"variant": "a", "weight": 1}]})),
        "/default/rollout/seed",
        "longer than",
    );
    let arms: Vec<Value> = (0..101)
        .map(|_| json!({"variant": "a", "weight": 1}))
        .collect();
    expect(
        ro(json!({"variants": arms})),
        "/default/rollout/variants",
        "more than 100 arms",
    );
    expect(
        mv(
            json!({"rules": [{"serve": {"rollout": {"variants": [{"variant": "q", "weight": 1}]}}}]}),
        ),
        "/rules/0/serve/rollout/variants/0/variant",
        "unknown variant",
    );
    assert_eq!(
        check(ro(
            json!({"seed": "", "bucket_by": "org", "variants": [{"variant": "a", "weight": 1}]})
        )),
        vec![]
    );
}

#[test]
fn size_limit() {
    let big: Vec<Value> = (0..5).map(|_| json!("x".repeat(4000))).collect();
    let rules: Vec<Value> = (0..40)
        .map(|_| json!({"clauses": [{"attribute": "x", "operator": "in", "values": big}], "serve": {"variant": "a"}}))
        .collect();
    expect(mv(json!({"rules": rules})), "", "the limit is 524288");
}

#[test]
fn every_problem_is_reported_at_once() {
    let issues = check(json!({
        "key": "bad key", "kind": "multivariate", "off_variant": "zzz",
        "variants": [{"key": "a", "value": null}],
        "rules": [{"clauses": [{"attribute": "x", "operator": "matches", "values": ["("]}], "serve": {"variant": "q"}}]
    }));
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for p in [
        "/key",
        "/variants/0/value",
        "/off_variant",
        "/rules/0/clauses/0/values/0",
        "/rules/0/serve/variant",
    ] {
        assert!(paths.contains(&p), "{p} missing from {issues:?}");
    }
}

#[test]
fn malformed_json() {
    let cases: &[(&str, &str, &str)] = &[
        ("{", "", "EOF"),
        ("", "", "EOF"),
        ("[]", "", "expected struct Flag"),
        (r#"{"key":"f"}"#, "", "missing field `kind`"),
        (
            r#"{"key":"f","kind":"tri-state"}"#,
            "/kind",
            "unknown variant",
        ),
        (
            r#"{"key":"f","kind":"boolean","enabled":"yes"}"#,
            "/enabled",
            "invalid type",
        ),
        (
            r#"{"key":"f","kind":"boolean","rules":[{"serve":{"maybe":"on"}}]}"#,
            "/rules/0/serve",
            "unknown variant",
        ),
        (
            r#"{"key":"f","kind":"boolean","rules":[{"clauses":[{"attribute":"x","operator":"like","values":[]}],"serve":{"variant":"on"}}]}"#,
            "/rules/0/clauses/0/operator",
            "unknown variant",
        ),
        (
            r#"{"key":"f","kind":"boolean","default":{"rollout":{"variants":[{"variant":"on","weight":-1}]}}}"#,
            "/default/rollout/variants/0/weight",
            "invalid value",
        ),
        (
            r#"{"key":"f","kind":"boolean"} trailing"#,
            "",
            "trailing characters",
        ),
    ];
    for (text, path, message) in cases {
        let err = parse_json::<Flag>(text.as_bytes()).unwrap_err();
        assert_eq!(err.issues.len(), 1, "{text}");
        let issue = &err.issues[0];
        assert_eq!(issue.path, *path, "{text}: {issue}");
        assert!(issue.message.contains(message), "{text}: {issue}");
    }
}

#[test]
fn segments() {
    let seg = |v: Value| -> Vec<Issue> {
        validate_segment(&serde_json::from_value::<Segment>(v).unwrap())
    };
    assert_eq!(
        seg(
            json!({"key": "s", "clauses": [{"attribute": "x", "operator": "in", "values": ["a"]}]})
        ),
        vec![]
    );
    assert!(seg(json!({"key": "no good"}))[0].path == "/key");
    let inner = seg(json!({"key": "s", "clauses": [{"operator": "in_segment", "values": ["t"]}]}));
    assert_eq!(inner[0].path, "/clauses/0/operator", "{inner:?}");
    assert!(inner[0].message.contains("cannot refer to other segments"));
    let keys: Vec<String> = (0..100_001).map(|i| format!("u{i}")).collect();
    let many = seg(json!({"key": "s", "included": keys}));
    assert!(
        many.iter().any(|i| i.message.contains("more than 100000")),
        "{many:?}"
    );
    // Few keys, but over 4 MiB of JSON.
    let long: Vec<String> = (0..50)
        .map(|i| format!("{i}{}", "u".repeat(100_000)))
        .collect();
    let large = seg(json!({"key": "s", "included": long}));
    assert!(
        large.iter().any(|i| i.path.is_empty()
            && i.message.starts_with("segment is 50")
            && i.message.ends_with("bytes; the limit is 4194304")),
        "{large:?}"
    );
}

#[test]
fn environment_sets() {
    let f: Flag = serde_json::from_value(json!({"key": "a", "kind": "boolean"})).unwrap();
    let err = FlagSet::compile("e", 1, &[f.clone(), f.clone()], &[]).unwrap_err();
    assert_eq!(err.issues[0].path, "/flags/a/key");
    let mut bad = f.clone();
    bad.off_variant = Some("zzz".into());
    let err = FlagSet::compile("e", 1, &[bad], &[]).unwrap_err();
    assert_eq!(err.issues[0].path, "/flags/a/off_variant");
    let many: Vec<Flag> = (0..10_001)
        .map(|i| Flag {
            key: format!("f{i}"),
            ..f.clone()
        })
        .collect();
    let err = FlagSet::compile("e", 1, &many, &[]).unwrap_err();
    assert!(err.issues.iter().any(|i| i.path == "/flags"), "{err}");
}

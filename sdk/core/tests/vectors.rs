//! Runs the language-neutral JSON vectors under `sdk/core/vectors/`: the
//! same files any other SDK must pass.

use pulseplane_core::bucket::{bucket, bucket_hash, bucket_of};
use pulseplane_core::jcs::write_number;
use pulseplane_core::murmur3::murmur3_x86_32;
use pulseplane_core::{Context, Flag, Segment, Snapshot};
use serde_json::Value;

/// This package's directory: from `cargo test`'s environment when set (a
/// test binary built in one checkout may run in another that shares the
/// target dir), else where it was built.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}

fn load(name: &str) -> Value {
    let path = format!("{}/vectors/{name}", manifest_dir());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn murmur3_vectors() {
    let doc = load("murmur3.json");
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let input = v["input"].as_str().unwrap();
        assert_eq!(
            u64::from(murmur3_x86_32(input.as_bytes(), 0)),
            v["hash"].as_u64().unwrap(),
            "{input:?}"
        );
    }
}

#[test]
fn bucketing_vectors() {
    let doc = load("bucketing.json");
    for v in doc["vectors"].as_array().unwrap() {
        let seed = v["seed"].as_str().unwrap();
        let total = v["total"].as_u64().unwrap();
        let text = match &v["value"] {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => {
                let mut s = String::new();
                write_number(n.as_f64().unwrap(), &mut s).unwrap();
                s
            }
            other => panic!("unexpected value {other}"),
        };
        assert_eq!(format!("{seed}{text}"), v["hashed_text"].as_str().unwrap());
        let h = bucket_hash(seed.as_bytes(), text.as_bytes());
        assert_eq!(u64::from(h), v["hash"].as_u64().unwrap(), "{v}");
        assert_eq!(bucket_of(h, total), v["bucket"].as_u64().unwrap(), "{v}");
        assert_eq!(bucket(seed, &text, total), v["bucket"].as_u64().unwrap());
    }
}

/// Each case is published as one environment; the typed call named by
/// `type` runs with the given caller default.
#[test]
fn evaluation_vectors() {
    let doc = load("evaluation.json");
    let mut count = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let flags: Vec<Flag> = serde_json::from_value(case["flags"].clone()).unwrap();
        let segments: Vec<Segment> = serde_json::from_value(case["segments"].clone()).unwrap();
        let snap = Snapshot::new("vectors", 1, Some(0), flags, segments);
        let set = snap
            .compile()
            .unwrap_or_else(|e| panic!("case {name:?} does not compile: {e}"));
        for e in case["evaluations"].as_array().unwrap() {
            let flag = e["flag"].as_str().unwrap();
            let ctx: Context = serde_json::from_value(e["context"].clone()).unwrap();
            let default = &e["default"];
            let got = match e["type"].as_str().unwrap() {
                "bool" => {
                    serde_json::to_value(set.bool_details(flag, &ctx, default.as_bool().unwrap()))
                }
                "string" => {
                    serde_json::to_value(set.string_details(flag, &ctx, default.as_str().unwrap()))
                }
                "int" => {
                    serde_json::to_value(set.int_details(flag, &ctx, default.as_i64().unwrap()))
                }
                "float" => {
                    serde_json::to_value(set.float_details(flag, &ctx, default.as_f64().unwrap()))
                }
                "json" => serde_json::to_value(set.json_details(flag, &ctx, default)),
                other => panic!("unknown type {other}"),
            }
            .unwrap();
            let want = &e["expect"];
            for field in ["value", "variant", "reason", "error_code", "rule_index"] {
                let g = got.get(field).cloned().unwrap_or(Value::Null);
                let w = want.get(field).cloned().unwrap_or(Value::Null);
                let same = match (g.as_f64(), w.as_f64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => g == w,
                };
                assert!(
                    same,
                    "case {name:?}, flag {flag}, context {}: {field} is {g}, expected {w}",
                    e["context"]
                );
            }
            assert_eq!(got["env_version"], 1);
            count += 1;
        }
    }
    assert!(count >= 100, "only {count} evaluations ran");
}

/// The snapshot in docs/flags.md: its stated digest is the SHA-256 of its
/// canonical form, and this build recomputes it.
#[test]
fn snapshot_digest_vector() {
    let path = format!("{}/vectors/snapshot-digest.json", manifest_dir());
    let bytes = std::fs::read(&path).unwrap();
    let snap = Snapshot::from_json(&bytes).unwrap();
    assert_eq!(
        snap.digest,
        "d6ad60fba7508f5924b57e2a5ae591d4d32f8e3f1f67a4da04f0888f4a0e568c"
    );
    assert_eq!(snap.compute_digest(), snap.digest);
    let set = snap.compile().unwrap();
    assert!(set.bool_value("dark-mode", &Context::default(), false));
    // The example snapshot shipped for the quickstart verifies too.
    let example = format!(
        "{}/../../deploy/examples/prod-snapshot.json",
        manifest_dir()
    );
    let (_, set) = Snapshot::load(&std::fs::read(example).unwrap()).unwrap();
    assert_eq!(set.len(), 3);
}

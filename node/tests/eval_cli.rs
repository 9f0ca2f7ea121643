//! `pulseplane eval` against the example snapshot: explained results, and
//! clear errors for bad input.

use std::process::Command;

use serde_json::Value;

fn example() -> String {
    // `cargo test` sets the variable at run time too; a test binary may run
    // from another checkout that shares the target dir.
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    format!("{dir}/../deploy/examples/prod-snapshot.json")
}

fn eval(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pulseplane"))
        .arg("eval")
        .args(args)
        .output()
        .expect("run pulseplane");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn explains_a_rule_match() {
    let file = example();
    let (code, v, _) = eval(&[
        "--file",
        &file,
        "--flag",
        "request-timeout-ms",
        "--context",
        r#"{"targeting_key":"u","attributes":{"app_version":"2.5.0"}}"#,
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["value"], 800);
    assert_eq!(v["variant"], "fast");
    assert_eq!(v["reason"], "TARGETING_MATCH");
    assert_eq!(v["rule_index"], 0);
    assert_eq!(v["flag_version"], 4);
    assert_eq!(v["env_version"], 7);
}

#[test]
fn explains_segments_prerequisites_and_unknown_flags() {
    let file = example();
    let (_, v, _) = eval(&[
        "--file",
        &file,
        "--flag",
        "new-checkout",
        "--context",
        r#"{"targeting_key":"user-1"}"#,
    ]);
    assert_eq!(
        (v["value"].clone(), v["reason"].clone()),
        (Value::Bool(true), "TARGETING_MATCH".into())
    );
    let (_, v, _) = eval(&[
        "--file",
        &file,
        "--flag",
        "checkout-theme",
        "--context",
        r#"{"targeting_key":"user-9"}"#,
    ]);
    assert_eq!(v["reason"], "PREREQUISITE_FAILED");
    assert_eq!(v["variant"], "classic");
    let (code, v, _) = eval(&[
        "--file",
        &file,
        "--flag",
        "nope",
        "--default",
        "\"fallback\"",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["value"], "fallback");
    assert_eq!(v["reason"], "ERROR");
    assert_eq!(v["error_code"], "FLAG_NOT_FOUND");
    // A typed call, as an SDK makes it: a string flag asked for a bool.
    let (code, v, _) = eval(&[
        "--file",
        &file,
        "--flag",
        "checkout-theme",
        "--type",
        "bool",
        "--default",
        "true",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        (v["value"].clone(), v["error_code"].clone()),
        (Value::Bool(true), "TYPE_MISMATCH".into())
    );
    let (code, v, _) = eval(&[
        "--file",
        &file,
        "--flag",
        "request-timeout-ms",
        "--type",
        "int",
    ]);
    assert_eq!(
        (code, v["value"].clone(), v["reason"].clone()),
        (0, 2000.into(), "DEFAULT".into())
    );
    let (code, _, err) = eval(&[
        "--file",
        &file,
        "--flag",
        "request-timeout-ms",
        "--type",
        "int",
        "--default",
        "\"x\"",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("expected an integer"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let file = example();
    let (code, _, err) = eval(&[
        "--file",
        &file,
        "--flag",
        "x",
        "--context",
        r#"{"attributes":{"a":null}}"#,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--context: ") && err.contains("/attributes"),
        "{err}"
    );
    let (code, _, err) = eval(&["--file", "/nonexistent/snap.json", "--flag", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent/snap.json"), "{err}");
    let dir = std::env::temp_dir().join(format!("pulseplane-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tampered = dir.join("tampered.json");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"weight\": 50000", "\"weight\": 90000");
    std::fs::write(&tampered, text).unwrap();
    let (code, _, err) = eval(&[
        "--file",
        tampered.to_str().unwrap(),
        "--flag",
        "new-checkout",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("digest mismatch"), "{err}");
    std::fs::write(&tampered, "{not json").unwrap();
    let (code, _, err) = eval(&[
        "--file",
        tampered.to_str().unwrap(),
        "--flag",
        "new-checkout",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not valid JSON"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

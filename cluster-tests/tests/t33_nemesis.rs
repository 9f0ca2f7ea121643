//! The nemesis in CI: a short set of seeds.
//!
//! Invariant: for each seed, the `nemesis` program (a real 3-node cluster,
//! a recorded workload and random partitions, pauses and crashes) exits 0
//! and its last line is `NEMESIS_RESULT` with `ok: true`, no lost
//! acknowledged write and no history violation.

use std::process::Command;

use serde_json::Value;

#[test]
fn three_short_seeds_pass() {
    for seed in [1, 2, 3] {
        let out = Command::new(env!("CARGO_BIN_EXE_nemesis"))
            .args(["--duration", "20s", "--seed", &seed.to_string()])
            .env(
                "PULSEPLANE_NODE_BIN",
                pulseplane_cluster_tests::node_binary(),
            )
            .output()
            .expect("run nemesis");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        let last = stdout.lines().last().unwrap_or("");
        let result: Value =
            serde_json::from_str(last.strip_prefix("NEMESIS_RESULT ").unwrap_or_else(|| {
                panic!(
                    "seed {seed}: no result line: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            }))
            .expect("result JSON");
        assert!(out.status.success(), "seed {seed}: {result}");
        assert_eq!(result["ok"], true, "seed {seed}: {result}");
        assert_eq!(result["lost_acknowledged_writes"], 0);
        assert_eq!(result["violations"], 0);
        assert!(result["faults"].as_u64().unwrap() >= 3, "{result}");
        assert!(result["acknowledged"].as_u64().unwrap() > 50, "{result}");
    }
}

#[test]
fn bad_options_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_nemesis"))
        .args(["--duration", "soon"])
        .output()
        .expect("run nemesis");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}

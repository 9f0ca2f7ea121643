//! Flag and segment JSON: validation, compilation and evaluation.
//!
//! The input is an SDK snapshot (or bootstrap file) as JSON, optionally
//! followed by a line `--` and a context as JSON. Every flag the snapshot
//! holds is evaluated for that context and for a fixed one. The first part
//! is also read as one flag and as one segment, as the draft API reads a
//! write's body, and validated. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulseplane_core::compile::{validate_flag, validate_segment};
use pulseplane_core::{Context, Flag, Segment, Snapshot};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (doc, ctx) = match find(data, b"\n--\n") {
        Some(i) => (&data[..i], Some(&data[i + 4..])),
        None => (data, None),
    };
    if let Ok(flag) = serde_json::from_slice::<Flag>(doc) {
        let _ = validate_flag(&flag, &|s| s == "beta", &|f| {
            (f == "other").then(|| vec!["on".to_owned(), "off".to_owned()])
        });
    }
    if let Ok(segment) = serde_json::from_slice::<Segment>(doc) {
        let _ = validate_segment(&segment);
    }
    let Ok((_, set)) = Snapshot::load(doc) else {
        return;
    };
    let mut contexts = vec![Context::new("user-42")];
    if let Some(text) = ctx.and_then(|c| std::str::from_utf8(c).ok()) {
        if let Ok(c) = Context::from_json(text) {
            contexts.push(c);
        }
    }
    let fallback = Value::Null;
    let keys: Vec<String> = set.keys().map(str::to_owned).collect();
    for ctx in &contexts {
        for key in &keys {
            let _ = set.json_details(key, ctx, &fallback);
            let _ = set.bool_details(key, ctx, false);
        }
        let _ = set.json_details("no-such-flag", ctx, &fallback);
    }
});

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

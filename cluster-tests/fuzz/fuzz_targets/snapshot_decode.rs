//! The Raft snapshot decoder: a snapshot's data as a follower receives it
//! from a leader, then everything a node does with an installed state
//! (its digest, every environment's versions and SDK snapshot, compiled).
//! Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulseplane_raft_store::state_machine::Applied;

fuzz_target!(|data: &[u8]| {
    let Ok(applied) = Applied::decode(data) else {
        return;
    };
    let state = applied.state();
    let _ = state.digest();
    for env in state.environments.values() {
        let _ = env.environment();
        for v in 1..=env.version().min(50) {
            if let Some(content) = env.version_content(v) {
                let _ = env.flags_of(&content);
                let _ = env.segments_of(&content);
            }
        }
        let snapshot = env.snapshot();
        let _ = snapshot.to_json();
        let _ = snapshot.compile();
    }
});

//! The Raft RPC body decoder: MessagePack bodies of the peer endpoints
//! (append entries, vote, snapshot chunk, forwarded write), decoded as the
//! node decodes them. The commands a decoded append or forwarded write
//! carries are then applied to a state, as a follower would once they
//! commit. A first byte of 4 or more makes the rest a sequence of commands
//! as JSON lines (easier for the fuzzer to build up), each sent through
//! the MessagePack encoding and applied in order. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openraft::EntryPayload;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use pulseplane_core::{CommandEnvelope, State};
use pulseplane_raft_store::{NodeId, TypeConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let mut state = State::new();
    match which {
        0 => {
            if let Ok(req) = rmp_serde::from_slice::<AppendEntriesRequest<TypeConfig>>(body) {
                for entry in &req.entries {
                    if let EntryPayload::Normal(p) = &entry.payload {
                        for cmd in p.commands.iter() {
                            let _ = state.apply(cmd);
                        }
                    }
                }
                let _ = state.digest();
            }
        }
        1 => {
            let _ = rmp_serde::from_slice::<VoteRequest<NodeId>>(body);
        }
        2 => {
            let _ = rmp_serde::from_slice::<InstallSnapshotRequest<TypeConfig>>(body);
        }
        3 => {
            if let Ok(cmd) = rmp_serde::from_slice::<CommandEnvelope>(body) {
                let _ = state.apply(&cmd);
                let _ = state.apply(&cmd);
                let _ = state.digest();
            }
        }
        _ => {
            for line in body.split(|b| *b == b'\n') {
                let Ok(cmd) = serde_json::from_slice::<CommandEnvelope>(line) else {
                    continue;
                };
                let Ok(bytes) = rmp_serde::to_vec_named(&cmd) else {
                    continue;
                };
                if let Ok(cmd) = rmp_serde::from_slice::<CommandEnvelope>(&bytes) {
                    let _ = state.apply(&cmd);
                }
            }
            let _ = state.digest();
            for env in state.environments.values() {
                let _ = env.snapshot().compile();
            }
        }
    }
});

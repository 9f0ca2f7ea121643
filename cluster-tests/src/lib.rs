//! pulseplane-cluster-tests: the harness that starts real node processes
//! for the scenarios under `tests/`.
//!
//! Layout:
//! - (the process harness arrives with the replicated node)

#!/usr/bin/env bash
# Node memory with a large state: a 3-node cluster holding 10,000 flags in
# each of 3 environments and 1,000 published versions per environment;
# every node's RSS after loading, after a snapshot, and after a restart
# (bench-node-memory). Takes several minutes.
#
#   cluster-tests/bench/memory.sh [bench-node-memory flags]
#       e.g. --flags 2000 --versions 200
#
# Output: text and one `BENCH_JSON {...}` line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node -p pulseplane-cluster-tests \
  --bin pulseplane-node --bin bench-node-memory)
PULSEPLANE_NODE_BIN="$TARGET/pulseplane-node" exec "$TARGET/bench-node-memory" "$@"

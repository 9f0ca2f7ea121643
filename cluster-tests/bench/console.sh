#!/usr/bin/env bash
# Console page times with many flags: a 3-node cluster, FLAGS flags in one
# environment, every console page rendered RENDERS times (bench-console).
#
#   cluster-tests/bench/console.sh [--flags 1000] [--renders 50]
#
# Output: a table and one `BENCH_JSON {...}` line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node -p pulseplane-cluster-tests \
  --bin pulseplane-node --bin bench-console)
PULSEPLANE_NODE_BIN="$TARGET/pulseplane-node" exec "$TARGET/bench-console" "$@"

#!/usr/bin/env bash
# Disk use under a long write load: a 3-node cluster takes 1,000,000 flag
# writes (upserts cycling over 1,000 flags) and every node's data dir is
# measured every 100,000 writes (bench-disk). About 10 minutes.
#
#   cluster-tests/bench/disk.sh [bench-disk flags] [-- pulseplane-node flags]
#       e.g. --writes 200000 -- --snapshot-commands 20000 --keep-logs 500
#
# Output: text and one `BENCH_JSON {...}` line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node -p pulseplane-cluster-tests \
  --bin pulseplane-node --bin bench-disk)
PULSEPLANE_NODE_BIN="$TARGET/pulseplane-node" exec "$TARGET/bench-disk" "$@"

#!/usr/bin/env bash
# Kill-switch propagation: a 3-node cluster and a redis-server on loopback,
# 50 SDK clients spread across the nodes, 100 kill-switch flips in each of
# three modes (polling every 5 s, long-poll, polling plus Redis notices),
# each timed from the write's 2xx to every client seeing it
# (bench-propagation). About 12 minutes, most of it the polling mode.
#
#   cluster-tests/bench/propagation.sh [bench-propagation flags]
#       e.g. --flips 20 --modes long-poll,redis
#
# Output: text and one `BENCH_JSON {...}` line per mode.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

command -v redis-server >/dev/null || { echo "missing redis-server (apt-get install redis-server)" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node -p pulseplane-cluster-tests \
  --bin pulseplane-node --bin bench-propagation)
PULSEPLANE_NODE_BIN="$TARGET/pulseplane-node" exec "$TARGET/bench-propagation" "$@"

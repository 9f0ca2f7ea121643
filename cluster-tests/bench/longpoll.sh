#!/usr/bin/env bash
# Long-poll fan-out on one node: CONNS (10,000) connections wait for the
# next version of an environment, a kill switch is thrown, and every answer
# is timed from the moment the kill request was sent (bench-longpoll).
# Three runs on the same node: the first 20 flags of the peer benchmark's
# set, then the full 200-flag set with gzip accepted, then without.
#
#   cluster-tests/bench/longpoll.sh         # release build, ~1 minute
#
# Settings (environment): CONNS (10000), PORT (27600).
# Output: text and one `BENCH_JSON {...}` line per run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONNS=${CONNS:-10000}
PORT=${PORT:-27600}
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

command -v curl >/dev/null || { echo "missing curl" >&2; exit 2; }
ulimit -n $((CONNS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt "$CONNS" ] || { echo "ulimit -n $(ulimit -n) is below $CONNS connections" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node -p pulseplane-cluster-tests \
  --bin pulseplane-node --bin bench-flagset --bin bench-longpoll)

# shellcheck source=one-node.sh
. "$(dirname "$0")/one-node.sh"
"$TARGET/bench-flagset" --endpoint "$BASE" --token "$TOKEN" --env small --count 20
"$TARGET/bench-flagset" --endpoint "$BASE" --token "$TOKEN" --env bench
sleep 1
echo "== node: $(grep VmRSS "/proc/$NODE_PID/status")"
for run in "small" "bench --gzip" "bench"; do
  # shellcheck disable=SC2086
  set -- $run
  echo "== $CONNS long-polls on env $1 ${2:-}"
  "$TARGET/bench-longpoll" --addr "127.0.0.1:$PORT" --token "$TOKEN" --env "$@" --conns "$CONNS" --pid "$NODE_PID"
done

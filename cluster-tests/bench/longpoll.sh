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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pulseplane-longpoll.XXXXXX")
NODE_PID=""
cleanup() {
  local rc=$?
  [ -n "$NODE_PID" ] && { kill -TERM "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

TOKEN=bench-token
BASE="http://127.0.0.1:$PORT"
PULSEPLANE_ADMIN_TOKEN=$TOKEN PULSEPLANE_LOG=warn "$TARGET/pulseplane-node" --node-id 1 --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/n1" --initial-cluster "1=127.0.0.1:$PORT" --cluster-secret bench-secret >"$WORK/n1.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 300); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.1; done
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

# Sourced by the single-node benchmarks: starts one release pulseplane-node
# (a one-member cluster) on 127.0.0.1:$PORT with a fresh data dir under
# $WORK (made here), waits until it is ready, and stops it and removes $WORK
# on exit. Needs $TARGET (the release dir) and $PORT; sets WORK, TOKEN,
# BASE and NODE_PID.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pulseplane-bench.XXXXXX")
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
curl -fs "$BASE/readyz" >/dev/null || { echo "the node did not become ready; its log:" >&2; cat "$WORK/n1.log" >&2; exit 1; }

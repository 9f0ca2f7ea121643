#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from the
# node's own /openapi.json (good and bad input alike) and fails on any 5xx
# and on any response that does not match the document.
#
#   deploy/schemathesis.sh            # debug build, ~2 minutes
#
# It starts one dev node on a free loopback port with a fresh data dir,
# seeds an environment with a published flag, runs schemathesis against
# every operation except adding/removing cluster members and forced
# snapshots (which would change the cluster itself), then stops the node.
# Settings (environment): EXAMPLES (100 per operation), PORT (27700).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXAMPLES=${EXAMPLES:-100}
PORT=${PORT:-27700}
command -v schemathesis >/dev/null || python3 -m pip install -q schemathesis
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
(cd "$ROOT" && cargo build --locked -q -p pulseplane-node --bin pulseplane-node)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/pulseplane-node"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pulseplane-schemathesis.XXXXXX")
NODE_PID=""
cleanup() {
  local rc=$?
  [ -n "$NODE_PID" ] && { kill -TERM "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; }
  if grep -q "panicked" "$WORK/node.log" 2>/dev/null; then echo "the node panicked:" >&2; grep -A5 panicked "$WORK/node.log" >&2; rc=1; fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

TOKEN=schemathesis-token
BASE="http://127.0.0.1:$PORT"
PULSEPLANE_ADMIN_TOKEN=$TOKEN "$BIN" --dev --data-dir "$WORK/node" --listen "127.0.0.1:$PORT" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 300); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.1; done
auth=(-H "Authorization: Bearer $TOKEN")
curl -fs "${auth[@]}" -X POST "$BASE/v1/environments" -d '{"key": "prod"}' >/dev/null
curl -fs "${auth[@]}" -X PUT "$BASE/v1/environments/prod/flags/a" -d '{"kind": "boolean"}' >/dev/null
curl -fs "${auth[@]}" -X POST "$BASE/v1/environments/prod/publish" -d '{}' >/dev/null

# Run from the temporary dir: schemathesis keeps a cache where it runs.
cd "$WORK"
schemathesis run "$BASE/openapi.json" -H "Authorization: Bearer $TOKEN" \
  -c not_a_server_error,response_schema_conformance \
  --exclude-path-regex '^/admin/v1/(cluster/nodes|snapshot)' \
  -n "$EXAMPLES" --request-timeout 20

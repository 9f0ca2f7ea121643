#!/usr/bin/env bash
# SDK snapshot polls on one node: the peer benchmark's 200-flag set
# (../shared/anchors/gen_features.py, translated by bench-flagset) published
# in an environment of a single-node cluster, polled by wrk with CONNS
# connections on three paths:
#   full   GET /v1/sdk/environments/bench/snapshot           (200, full body)
#   304    the same with If-None-Match: <current ETag>        (304, no body)
#   gzip   the same with Accept-Encoding: gzip                (200, pre-compressed)
# Then, in the same run, Unleash Edge's anchor (../shared/anchors/
# unleash_edge_poll.sh) for the ratios. Server CPU per request is read from
# /proc/<pid>/stat (wrk shares the two cores).
#
#   cluster-tests/bench/polls.sh            # release build, ~2 minutes
#
# Settings (environment): DURATION (10s), CONNS (64), THREADS (2),
# PORT (27500), SKIP_EDGE (0).
# Output: text, then one line `BENCH_JSON {...}`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/../shared/anchors}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-27500}
SKIP_EDGE=${SKIP_EDGE:-0}
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

for b in wrk jq curl python3; do command -v "$b" >/dev/null || { echo "missing $b (apt-get install wrk jq curl python3)" >&2; exit 2; }; done
(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node -p pulseplane-cluster-tests --bin pulseplane-node --bin bench-flagset)

# shellcheck source=one-node.sh
. "$(dirname "$0")/one-node.sh"
python3 "$ANCHORS/gen_features.py" "$WORK/features.json"
"$TARGET/bench-flagset" --endpoint "$BASE" --token "$TOKEN" --env bench --features "$WORK/features.json"

URL="$BASE/v1/sdk/environments/bench/snapshot"
H="$WORK/h.txt"
for _ in $(seq 1 100); do
  curl -fs -D "$H" -o "$WORK/body.json" -H "Authorization: Bearer $TOKEN" "$URL?min_version=1&wait=5s"
  [ "$(jq .version "$WORK/body.json")" = 1 ] && break
done
ETAG=$(awk 'tolower($1)=="etag:" {sub(/^[^:]*:[ \t]*/,""); sub(/\r$/,""); print}' "$H")
BODY_B=$(wc -c <"$WORK/body.json")
GZ_B=$(curl -fs -H "Authorization: Bearer $TOKEN" -H 'Accept-Encoding: gzip' "$URL" | wc -c)
NFLAGS=$(jq '.flags|length' "$WORK/body.json")
INM=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H "If-None-Match: $ETAG" "$URL")
echo "== pulseplane: 1 node on 127.0.0.1:$PORT; $NFLAGS flags, $BODY_B B body, $GZ_B B gzip, ETag $ETAG (If-None-Match -> $INM)"

LUA="$WORK/poll.lua"
cat >"$LUA" <<'LUAEOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n200 = 0; n304 = 0; nother = 0 end
function response(status, headers, body)
  if status == 200 then n200 = n200 + 1 elseif status == 304 then n304 = n304 + 1 else nother = nother + 1 end
end
function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("n200"); b = b + t:get("n304"); c = c + t:get("nother") end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"n200":%d,"n304":%d,"nother":%d,"err_socket":%d}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3, a, b, c,
    e.connect + e.read + e.write + e.timeout))
end
LUAEOF

CLK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
RESULTS="[]"
run() { # label wrk-header-args...
  local label=$1; shift
  local c0 c1 out line cpu
  c0=$(cpu_ticks "$NODE_PID")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s --latency -s "$LUA" -H "Authorization: Bearer $TOKEN" "$@" "$URL" 2>&1)
  c1=$(cpu_ticks "$NODE_PID")
  line=$(echo "$out" | sed -n 's/^WRKJSON //p')
  [ -n "$line" ] || { echo "$out" >&2; echo "wrk produced no summary" >&2; exit 1; }
  cpu=$(awk -v a="$c0" -v b="$c1" -v k="$CLK" 'BEGIN{printf "%.2f", (b-a)/k}')
  line=$(jq -c --arg l "$label" --argjson cpu "$cpu" \
    '{label:$l} + . + {node_cpu_s:$cpu, node_cpu_us_per_req:(if .requests>0 then ($cpu*1e6/.requests|round) else null end), bytes_per_resp:((.bytes/(if .requests>0 then .requests else 1 end))|floor)}' <<<"$line")
  RESULTS=$(jq -c --argjson x "$line" '. + [$x]' <<<"$RESULTS")
  jq -r '"   \(.label): \(.rps|floor) req/s  p50 \(.p50_ms) ms  p99 \(.p99_ms) ms  \(.bytes_per_resp) B/resp  node \(.node_cpu_us_per_req) us CPU/req  [200: \(.n200), 304: \(.n304), other: \(.nother), socket errors: \(.err_socket)]"' <<<"$line"
}

echo "== wrk: $CONNS connections, $THREADS threads, $DURATION per path"
run full
run not_modified -H "If-None-Match: $ETAG"
run gzip -H "Accept-Encoding: gzip"
kill -TERM "$NODE_PID" 2>/dev/null || true
wait "$NODE_PID" 2>/dev/null || true
NODE_PID=""

EDGE="null"
if [ "$SKIP_EDGE" != 1 ]; then
  echo "== Unleash Edge anchor (same machine, same run)"
  EDGE_OUT=$(DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS EXTRAS=1 "$ANCHORS/unleash_edge_poll.sh" 2>&1) || { echo "$EDGE_OUT" >&2; exit 1; }
  echo "$EDGE_OUT" | grep '=>' || true
  EDGE=$(echo "$EDGE_OUT" | sed -n 's/^ANCHOR_JSON //p')
fi

SUMMARY=$(jq -c -n --argjson ours "$RESULTS" --argjson edge "$EDGE" --argjson body "$BODY_B" --argjson gz "$GZ_B" --argjson flags "$NFLAGS" '
  def pick($l): ($ours[] | select(.label == $l));
  def edge($l): (if $edge == null then null else ($edge.runs[] | select(.label == $l)) end);
  {bench: "polls", flags: $flags, body_bytes: $body, gzip_bytes: $gz, runs: $ours,
   edge: (if $edge == null then null else {body_bytes: $edge.body_bytes, runs: $edge.runs} end),
   ratios: (if $edge == null then null else {
     full_rps: ((pick("full").rps / edge("client_features_200").rps * 100 | round) / 100),
     not_modified_rps: ((pick("not_modified").rps / edge("client_features_if_none_match").rps * 100 | round) / 100),
     gzip_rps: ((pick("gzip").rps / edge("client_features_gzip").rps * 100 | round) / 100)
   } end)}')
if [ "$EDGE" != "null" ]; then
  echo "== ratios (pulseplane / edge, req/s): $(jq -c .ratios <<<"$SUMMARY")"
fi
echo "BENCH_JSON $SUMMARY"

#!/usr/bin/env bash
# Sustained flag writes on a 3-node loopback cluster (fsync on), driven by
# wrk at 1, 16 and 64 connections, each request one ~200-byte flag upsert
# (PUT /v1/environments/bench/flags/flag-<n>, cycling over KEYSPACE keys)
# sent to the leader. Then, in the same run, etcd's anchor
# (../shared/anchors/etcd_writes.sh) for the ratios.
#
#   cluster-tests/bench/writes.sh            # release build, ~3 minutes
#
# Settings (environment): DURATION (10s), CONNS ("1 16 64"), KEYSPACE (2000),
# BASE_PORT (27400), SKIP_ETCD (0), THREADS (2), VARY (0),
# PAUSE_FOLLOWERS_MS (0: off; else both followers are stopped with SIGSTOP
# for that long at a third and at two thirds of each wrk run, to see how
# writes ride out followers that answer late; DURATION must then be given
# in seconds, such as 9s). Each request body
# is fixed per key, so from the second pass over the keys an upsert sends
# the content the draft already has: still a replicated, synced, audited
# command, but one that writes no new revision. VARY=1 puts a counter in
# every body instead, so that every write changes its flag.
# Each step also prints, from the nodes' /metrics: the leader's mean time
# in the flag PUT handler, the mean WAL sync of the leader and of the
# followers, how many syncs took over 100 ms on the three nodes together
# (the VM's disk, when the p99 jumps with them), and the leader's eager
# sends skipped and replication requests covered.
# Output: text, then one line `BENCH_JSON {...}`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/../shared/anchors}
DURATION=${DURATION:-10s}
read -r -a CONN_LIST <<<"${CONNS:-1 16 64}"
KEYSPACE=${KEYSPACE:-2000}
BASE=${BASE_PORT:-27400}
THREADS=${THREADS:-2}
SKIP_ETCD=${SKIP_ETCD:-0}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pulseplane-node"

if [ "${PAUSE_FOLLOWERS_MS:-0}" -gt 0 ] && ! [[ "$DURATION" =~ ^[0-9]+s$ ]]; then
  echo "PAUSE_FOLLOWERS_MS needs DURATION in seconds (such as 9s), not $DURATION" >&2; exit 2
fi
for b in wrk jq curl; do command -v "$b" >/dev/null || { echo "missing $b (apt-get install wrk jq curl)" >&2; exit 2; }; done
(cd "$ROOT" && cargo build --release --locked -q -p pulseplane-node --bin pulseplane-node)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pulseplane-bench.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

TOKEN=bench-token
INITIAL=""
for n in 1 2 3; do INITIAL+="${INITIAL:+,}$n=127.0.0.1:$((BASE + n))"; done
for n in 1 2 3; do
  PULSEPLANE_ADMIN_TOKEN=$TOKEN PULSEPLANE_LOG=warn "$BIN" --node-id "$n" --listen "127.0.0.1:$((BASE + n))" \
    --data-dir "$WORK/n$n" --initial-cluster "$INITIAL" --cluster-secret bench-secret >"$WORK/n$n.log" 2>&1 &
  PIDS+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$((BASE + n))/readyz" >/dev/null && break; sleep 0.1; done
done
LEADER=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((BASE + 1))/admin/v1/cluster" | jq -r .leader)
LPORT=$((BASE + LEADER))
curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"key":"bench","name":"Bench"}' "http://127.0.0.1:$LPORT/v1/environments"
echo "== pulseplane: 3 nodes on 127.0.0.1, leader node $LEADER (:$LPORT), data under $WORK"

LUA="$WORK/put.lua"
cat >"$LUA" <<'LUAEOF'
local keyspace = tonumber(os.getenv("KEYSPACE") or "2000")
local token = os.getenv("TOKEN")
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local tcount = 0
function setup(thread) thread:set("tid", tcount); tcount = tcount + 1 end
local vary = os.getenv("VARY") == "1"
local shape = '{"kind":"boolean","description":"benchmark flag %s","rules":[{"clauses":[{"attribute":"country","operator":"in","values":["NL","DE"]}],"serve":{"variant":"on"}}]}'
function init(args)
  reqs, paths = {}, {}
  hdr = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
  local pool = math.min(2000, keyspace)
  for i = 0, pool - 1 do
    local n = (i * nthreads + (tid or 0)) % keyspace
    paths[#paths + 1] = "/v1/environments/bench/flags/flag-" .. n
    reqs[#reqs + 1] = wrk.format("PUT", paths[#paths], hdr, string.format(shape, tostring(n)))
  end
  idx, changes = 0, 0
end
function request()
  idx = idx % #reqs + 1
  if not vary then return reqs[idx] end
  -- Every write changes the flag: its description carries a counter.
  changes = changes + 1
  return wrk.format("PUT", paths[idx], hdr, string.format(shape, (tid or 0) .. "-" .. changes))
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"err_status":%d,"err_socket":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUAEOF
BODY_BYTES=$(awk 'BEGIN{print length("{\"kind\":\"boolean\",\"description\":\"benchmark flag 1234\",\"rules\":[{\"clauses\":[{\"attribute\":\"country\",\"operator\":\"in\",\"values\":[\"NL\",\"DE\"]}],\"serve\":{\"variant\":\"on\"}}]}")}')
if [ "${VARY:-0}" = 1 ]; then
  echo "   request body: about $BODY_BYTES bytes, keyspace $KEYSPACE flags, every write changes its flag (VARY=1)"
else
  echo "   request body: $BODY_BYTES bytes, keyspace $KEYSPACE flags (the same body per key on every pass)"
fi

CLK=$(getconf CLK_TCK)
cpu_ticks() { local t=0 p; for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# Counters read from the nodes' /metrics, as one JSON object: the WAL
# syncs (count, seconds, and those over 100 ms) of the leader and of the
# followers, the leader's flag PUTs (count, seconds in the handler), and
# its eager-replication sends skipped and replication requests covered.
# Each step reports the difference over its run.
counters() {
  local n role m
  for n in 1 2 3; do
    role=followers; [ "$n" = "$LEADER" ] && role=leader
    m=$(curl -fs -m 5 "http://127.0.0.1:$((BASE + n))/metrics" || true)
    awk -v role="$role" '
      /^pulseplane_raft_fsync_duration_seconds_bucket\{le="0.1"\}/ { fast = $2 }
      /^pulseplane_raft_fsync_duration_seconds_count/ { syncs = $2 }
      /^pulseplane_raft_fsync_duration_seconds_sum/ { sync_s = $2 }
      /^pulseplane_http_request_duration_seconds_count\{route="\/v1\/environments\/\{env\}\/flags\/\{key\}",method="PUT"\}/ { puts = $2 }
      /^pulseplane_http_request_duration_seconds_sum\{route="\/v1\/environments\/\{env\}\/flags\/\{key\}",method="PUT"\}/ { put_s = $2 }
      /^pulseplane_raft_eager_appends_total\{outcome="skipped"\}/ { skipped = $2 }
      /^pulseplane_raft_eager_covered_total/ { covered = $2 }
      END {
        printf "{\"slow\":%d,\"syncs_%s\":%d,\"sync_s_%s\":%f,\"puts\":%d,\"put_s\":%f,\"skipped\":%d,\"covered\":%d}\n",
          syncs - fast, role, syncs, role, sync_s, puts, put_s, skipped, covered
      }' <<<"$m"
  done | jq -s 'reduce .[] as $o ({}; reduce ($o | to_entries[]) as $e (.; .[$e.key] += $e.value))'
}
RESULTS="[]"
for c in "${CONN_LIST[@]}"; do
  t=$THREADS; [ "$c" -lt "$t" ] && t=$c
  c0=$(cpu_ticks)
  m0=$(counters)
  PAUSER=""
  if [ "${PAUSE_FOLLOWERS_MS:-0}" -gt 0 ]; then
    followers=(); for n in 1 2 3; do [ "$n" = "$LEADER" ] || followers+=("${PIDS[$((n - 1))]}"); done
    third=$(awk -v d="${DURATION%s}" 'BEGIN{print d / 3}'); pause=$(awk -v m="$PAUSE_FOLLOWERS_MS" 'BEGIN{print m / 1000}')
    (for _ in 1 2; do sleep "$third"; kill -STOP "${followers[@]}"; sleep "$pause"; kill -CONT "${followers[@]}"; done) &
    PAUSER=$!
  fi
  out=$(KEYSPACE=$KEYSPACE TOKEN=$TOKEN WRK_THREADS=$t VARY=${VARY:-0} wrk -t"$t" -c"$c" -d"$DURATION" --timeout 5s --latency -s "$LUA" "http://127.0.0.1:$LPORT" 2>&1)
  c1=$(cpu_ticks)
  [ -z "$PAUSER" ] || wait "$PAUSER"
  m1=$(counters)
  line=$(echo "$out" | sed -n 's/^WRKJSON //p')
  [ -n "$line" ] || { echo "$out" >&2; exit 1; }
  cpu=$(awk -v a="$c0" -v b="$c1" -v k="$CLK" 'BEGIN{printf "%.2f", (b-a)/k}')
  line=$(jq -c --argjson c "$c" --argjson cpu "$cpu" --argjson a "$m0" --argjson b "$m1" '
    def d(k): ($b[k] // 0) - ($a[k] // 0);
    def mean_ms(s; n): if d(n) > 0 then (d(s) * 1e6 / d(n) | round / 1000) else null end;
    {conns:$c} + . + {cpu_s:$cpu, cpu_us_per_write:(if .requests>0 then ($cpu*1e6/.requests|round) else null end),
      slow_syncs:d("slow"), leader_put_mean_ms:mean_ms("put_s"; "puts"),
      leader_sync_mean_ms:mean_ms("sync_s_leader"; "syncs_leader"),
      follower_sync_mean_ms:mean_ms("sync_s_followers"; "syncs_followers"),
      eager_skipped:d("skipped"), eager_covered:d("covered")}' <<<"$line")
  RESULTS=$(jq -c --argjson x "$line" '. + [$x]' <<<"$RESULTS")
  jq -r '"   => pulseplane c\(.conns): \(.rps|floor) writes/s  p50 \(.p50_ms) ms  p99 \(.p99_ms) ms  max \(.max_ms) ms  \(.cpu_us_per_write) us CPU/write (3 nodes)  non-2xx \(.err_status) socket errors \(.err_socket)"' <<<"$line"
  jq -r '"      leader PUT handler mean \(.leader_put_mean_ms) ms  WAL sync mean \(.leader_sync_mean_ms) ms (leader) / \(.follower_sync_mean_ms) ms (followers)  WAL syncs over 100 ms \(.slow_syncs)  eager sends skipped \(.eager_skipped)  replication requests covered \(.eager_covered)"' <<<"$line"
done
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()

ETCD="null"
if [ "$SKIP_ETCD" != 1 ]; then
  echo "== etcd anchor (same run): $ANCHORS/etcd_writes.sh"
  eout=$(DURATION=$DURATION CONNS="${CONN_LIST[*]}" PREFIX_FLAGS=0 "$ANCHORS/etcd_writes.sh" 2>&1)
  echo "$eout" | grep '=>' || true
  ETCD=$(echo "$eout" | sed -n 's/^ANCHOR_JSON //p')
  [ -n "$ETCD" ] || ETCD=null
fi

SUMMARY=$(jq -c -n --argjson p "$RESULTS" --argjson e "$ETCD" '
  def run($runs; $c): ($runs // []) | map(select(.conns == $c and (.mode // "put") == "put")) | .[0];
  {pulseplane: $p, etcd: ($e.runs // null),
   ratios: [ $p[] | . as $r | (run($e.runs; $r.conns)) as $x
     | select($x != null)
     | {conns: $r.conns, rps_ratio: (($r.rps / $x.rps * 100 | round) / 100),
        p50_ms: $r.p50_ms, etcd_p50_ms: $x.p50_ms, p99_ms: $r.p99_ms, etcd_p99_ms: $x.p99_ms} ]}')
echo "== ratios (pulseplane / etcd, same run)"
jq -r '.ratios[] | "   c\(.conns): \(.rps_ratio)x writes/s   p50 \(.p50_ms) vs \(.etcd_p50_ms) ms   p99 \(.p99_ms) vs \(.etcd_p99_ms) ms"' <<<"$SUMMARY"
echo "BENCH_JSON $SUMMARY"

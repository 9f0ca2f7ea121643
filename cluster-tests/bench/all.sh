#!/usr/bin/env bash
# Every headline benchmark and its peer, in one run, then one table.
#
#   cluster-tests/bench/all.sh          # ~15 minutes on 2 cores after the builds
#
# Runs, one after another on this machine:
#   - writes:      cluster-tests/bench/writes.sh (3 nodes, wrk) and etcd
#                  through ../shared/anchors/etcd_writes.sh
#   - polls:       cluster-tests/bench/polls.sh and Unleash Edge through
#                  ../shared/anchors/unleash_edge_poll.sh
#   - evaluation:  sdk/core/benches/compare-yggdrasil.sh and yggdrasil
#                  through ../shared/anchors/yggdrasil_eval
#   - propagation: cluster-tests/bench/propagation.sh (long-poll and Redis
#                  modes; no peer runs this shape here)
# Each part's full output goes to $OUT (default /tmp/pulseplane-bench-all);
# the table is printed last, as Markdown, then `BENCH_ALL_JSON {...}`.
# Settings: FLIPS (100, per propagation mode), OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/pulseplane-bench-all}
FLIPS=${FLIPS:-100}
mkdir -p "$OUT"
for b in wrk jq curl python3 etcd redis-server; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install wrk jq curl python3 etcd-server redis-server)" >&2; exit 2; }
done

part() { # name command...
  local name=$1; shift
  echo "== $name: $* (log: $OUT/$name.log)"
  local started=$SECONDS
  if ! "$@" >"$OUT/$name.log" 2>&1; then
    echo "   $name failed; the last lines:" >&2
    tail -20 "$OUT/$name.log" >&2
    exit 1
  fi
  grep '^BENCH_JSON ' "$OUT/$name.log" | sed 's/^BENCH_JSON //' >"$OUT/$name.json"
  echo "   done in $((SECONDS - started)) s"
}

part writes "$ROOT/cluster-tests/bench/writes.sh"
part polls "$ROOT/cluster-tests/bench/polls.sh"
part eval "$ROOT/sdk/core/benches/compare-yggdrasil.sh"
part propagation "$ROOT/cluster-tests/bench/propagation.sh" --modes long-poll,redis --flips "$FLIPS"

python3 - "$OUT" <<'PY'
import json, sys, os, platform, subprocess

out = sys.argv[1]
def lines(name):
    with open(os.path.join(out, name + ".json")) as f:
        return [json.loads(l) for l in f if l.strip()]

rows = []
def row(metric, ours, peer, ratio, target, met):
    rows.append({"metric": metric, "pulseplane": ours, "peer": peer, "ratio": ratio,
                 "target": target, "met": met})

w = lines("writes")[-1]
def etcd(c):
    for r in w.get("etcd") or []:
        if r.get("conns") == c and r.get("mode", "put") == "put":
            return r
def ours_w(c):
    for r in w["pulseplane"]:
        if r["conns"] == c:
            return r
for c, what in [(64, "rps"), (64, "p99_ms"), (1, "p50_ms")]:
    o, e = ours_w(c), etcd(c)
    if not o:
        continue
    if what == "rps":
        ratio = o["rps"] / e["rps"] if e else None
        row(f"writes/s, {c} connections (etcd put)", round(o["rps"]), e and round(e["rps"]),
            ratio, ">= 1.5x etcd", ratio is not None and ratio >= 1.5)
    else:
        label = "p99" if what == "p99_ms" else "p50"
        ratio = o[what] / e[what] if e else None
        row(f"write {label} ms, {c} connection{'s' if c > 1 else ''}", o[what], e and e[what],
            ratio, "<= etcd", ratio is not None and ratio <= 1.0)

p = lines("polls")[-1]
def ours_p(label):
    return next(r for r in p["runs"] if r["label"] == label)
def edge_p(label):
    if not p.get("edge"):
        return None
    return next((r for r in p["edge"]["runs"] if r["label"] == label), None)
full, nm = ours_p("full"), ours_p("not_modified")
ef, en = edge_p("client_features_200"), edge_p("client_features_if_none_match")
r = full["rps"] / ef["rps"] if ef else None
row("poll req/s, full 200-flag body (Edge)", round(full["rps"]), ef and round(ef["rps"]), r, ">= 2x Edge", r is not None and r >= 2)
r = nm["rps"] / en["rps"] if en else None
row("poll req/s, 304 Not Modified (Edge)", round(nm["rps"]), en and round(en["rps"]), r, ">= 5x Edge", r is not None and r >= 5)
row("poll p99 ms, 304", nm["p99_ms"], en and en["p99_ms"], None, "<= 5 ms", nm["p99_ms"] <= 5)

for e in lines("eval")[-1]["rows"]:
    if "speedup" not in e:
        continue
    goal = f"<= {e['target_ns']} ns"
    met = e["pulseplane_ns"] <= e["target_ns"]
    if e.get("target_speedup"):
        goal += f", >= {e['target_speedup']:g}x"
        met = met and e["speedup"] >= e["target_speedup"]
    # For evaluation the ratio is the peer's time over ours (a speed-up).
    row(f"eval ns: {e['shape']} (yggdrasil)", e["pulseplane_ns"], e["yggdrasil_ns"], e["speedup"], goal, met)

for m in lines("propagation"):
    label = {"long-poll": "long-poll", "redis": "polling + Redis"}.get(m["mode"], m["mode"])
    row(f"kill-switch propagation p99 ms, {label}", round(m["p99_ms"], 1), None, None,
        f"<= {m['p99_target_ms']:.0f} ms", m["p99_ms"] <= m["p99_target_ms"])

def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    return f"{v:,}"
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print()
print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}")
print()
print("| metric | Pulseplane | peer | ratio | target |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}x"
    print(f"| {r['metric']} | {fmt(r['pulseplane'])} | {fmt(r['peer'])} | {ratio} | {r['target']}: {'met' if r['met'] else 'missed'} |")
print()
print("Ratios: Pulseplane over the peer for throughput and latency; for")
print("evaluation, the peer's time over ours (how many times faster we are).")
print("BENCH_ALL_JSON " + json.dumps({"rows": rows}))
PY

#!/usr/bin/env bash
# Evaluation cost of pulseplane-core against Unleash's yggdrasil engine, on the
# same generated 200-flag set, in one run on this machine.
#
#   sdk/core/benches/compare-yggdrasil.sh
#
# Needs ../shared/anchors next to the repository (the peer benchmark), python3
# and cargo. Prints a table and a last line `BENCH_JSON {...}`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/../shared/anchors}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pulseplane-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

python3 "$ANCHORS/gen_features.py" "$TMP/features.json"
echo "== yggdrasil (peer), same feature file"
FEATURES_FILE="$TMP/features.json" "$ANCHORS/yggdrasil_eval/run.sh" | tee "$TMP/ygg.log" | grep -v '^ANCHOR_JSON'
sed -n 's/^ANCHOR_JSON //p' "$TMP/ygg.log" > "$TMP/ygg.json"

echo "== pulseplane-core (cargo bench -p pulseplane-core --bench eval)"
cd "$ROOT"
PULSEPLANE_ANCHOR_FEATURES="$TMP/features.json" cargo bench -q -p pulseplane-core --bench eval 2>&1 \
  | grep -E '^(flag set|sanity|eval/)|time:' || true

python3 - "$TMP/ygg.json" "$TARGET/criterion/eval" <<'PY'
import json, sys, os
ygg = {r["label"]: r for r in json.load(open(sys.argv[1]))["results"]}
crit = sys.argv[2]
def ours(name):
    with open(os.path.join(crit, name, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]
rows = [
    # label, ours, peer, absolute target ns, ratio target (peer/ours)
    ("plain boolean", "a_bool_on", "a_bool_on", 25, 1.0),
    ("50% rollout by user", "b_rollout50_user", "b_rollout50_userid", 55, 3.0),
    ("3-way multivariate rollout", "c_variant_3way", "c_variant_strategy", 90, 4.0),
    ("2 clauses + segment + 25% rollout", "d_constrained_segment_25", "d_constrained_segment", 80, 2.0),
    ("unknown flag -> caller's default", "e_unknown_flag", "e_unknown_flag", 20, None),
]
out = []
print()
print(f"{'shape':36} {'pulseplane ns':>13} {'yggdrasil ns':>12} {'speed-up':>8}  target")
for label, mine, peer, target_ns, ratio_target in rows:
    m = ours(mine); p = ygg[peer]["ns_per_eval_median"]; r = p / m
    goal = f"<= {target_ns} ns" + (f", >= {ratio_target:g}x" if ratio_target else "")
    print(f"{label:36} {m:13.1f} {p:12.1f} {r:7.2f}x  {goal}")
    out.append({"shape": label, "pulseplane_ns": round(m, 1), "yggdrasil_ns": p, "speedup": round(r, 2),
                "target_ns": target_ns, "target_speedup": ratio_target})
bare, counted = ours("a_bool_on"), ours("f_bool_on_plus_usage")
print(f"{'boolean + usage counting':36} {counted:13.1f} {ygg['f_bool_on_plus_count']['ns_per_eval_median']:12.1f}"
      f" {ygg['f_bool_on_plus_count']['ns_per_eval_median']/counted:7.2f}x  <= 2x bare evaluation (is {counted/bare:.2f}x)")
out.append({"shape": "boolean + usage counting", "pulseplane_ns": round(counted, 1),
            "yggdrasil_ns": ygg["f_bool_on_plus_count"]["ns_per_eval_median"], "over_bare": round(counted / bare, 2)})
allf = ours("g_all_flags")
print(f"{'all 200 flags for one context':36} {allf/1000:12.1f}µ {ygg['g_resolve_all']['ns_per_call_median']/1000:11.1f}µ"
      f" {ygg['g_resolve_all']['ns_per_call_median']/allf:7.2f}x")
print("BENCH_JSON " + json.dumps({"bench": "eval_vs_yggdrasil", "rows": out}))
PY

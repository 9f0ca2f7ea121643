#!/usr/bin/env bash
# Builds the fuzz targets and runs each one for a while.
#
#   cluster-tests/fuzz/run.sh [seconds per target (600)] [target ...]
#
# Needs cargo-fuzz (installed when missing). The growing corpus and any
# crash go under $FUZZ_WORK (default /tmp/pulseplane-fuzz), never into the
# repository; the committed seeds in seeds/<target> are read, not written.
# Prints one line per target, `FUZZ_RESULT {...}`, and exits 1 when any
# target crashed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(flag_eval snapshot_decode raft_rpc jwt)
work="${FUZZ_WORK:-/tmp/pulseplane-fuzz}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# libFuzzer's instrumentation flags are unstable options of rustc; the one
# toolchain here is stable, so they are unlocked for this build only.
export RUSTC_BOOTSTRAP=1
cd "$root"
opts=(--fuzz-dir "$here" --sanitizer none --release --debug-assertions)
cargo fuzz build "${opts[@]}"

failed=0
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  log="$work/$t.log"
  echo "== $t for ${secs}s (log: $log)"
  status=0
  cargo fuzz run "${opts[@]}" "$t" "$corpus" "$here/seeds/$t" -- \
    -max_total_time="$secs" -dict="$here/dict.txt" -max_len=65536 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  crashes=$(find "$artifacts" -type f | wc -l)
  [ "$status" -eq 0 ] && [ "$crashes" -eq 0 ] || failed=1
  printf 'FUZZ_RESULT {"target":"%s","seconds":%s,"runs":%s,"coverage":%s,"corpus":%s,"crashes":%s,"exit":%s}\n' \
    "$t" "$secs" "${runs:-0}" "${cov:-0}" "$(find "$corpus" -type f | wc -l)" "$crashes" "$status"
done
exit "$failed"

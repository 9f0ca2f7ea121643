#!/usr/bin/env bash
# Starts a 3-node Pulseplane cluster on loopback and keeps it running until
# Ctrl-C, which stops every node cleanly (SIGTERM).
#
#   ./deploy/local-cluster.sh
#
# Settings (environment):
#   PULSEPLANE_LOCAL_DIR   data, logs, secret and token (default: ./local-cluster)
#   PULSEPLANE_BASE_PORT   node n listens on BASE_PORT+n (default: 7400)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${PULSEPLANE_LOCAL_DIR:-$ROOT/local-cluster}
BASE=${PULSEPLANE_BASE_PORT:-7400}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/pulseplane-node"

log() { printf '== %s\n' "$*" >&2; }

cd "$ROOT"
log "building pulseplane-node"
cargo build --locked -q -p pulseplane-node --bin pulseplane-node

mkdir -p "$DIR"
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
umask 077
[ -s "$DIR/cluster-secret" ] || random_hex > "$DIR/cluster-secret"
new_token=0
if [ ! -s "$DIR/admin-token" ]; then random_hex > "$DIR/admin-token"; new_token=1; fi
umask 022

initial=""
for n in 1 2 3; do initial+="${initial:+,}$n=127.0.0.1:$((BASE + n))"; done

pids=()
stop() {
  log "stopping the nodes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  log "stopped"
  exit 0
}
trap stop INT TERM

for n in 1 2 3; do
  "$BIN" --node-id "$n" --listen "127.0.0.1:$((BASE + n))" --data-dir "$DIR/node$n" \
    --initial-cluster "$initial" \
    --cluster-secret-file "$DIR/cluster-secret" \
    --admin-token-file "$DIR/admin-token" >>"$DIR/node$n.log" 2>&1 &
  pids+=($!)
done

for n in 1 2 3; do
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$((BASE + n))/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
      log "node $n exited; its log:"; tail -20 "$DIR/node$n.log" >&2; stop
    fi
    sleep 0.1
  done
done

token=$(cat "$DIR/admin-token")
echo
echo "Pulseplane local cluster is up:"
for n in 1 2 3; do echo "  node $n  http://127.0.0.1:$((BASE + n))   log: $DIR/node$n.log"; done
if [ "$new_token" = 1 ]; then
  echo "  admin token: $token"
fi
echo "  admin token file: $DIR/admin-token"
echo
echo "Try:"
echo "  T=\$(cat $DIR/admin-token)"
echo "  curl -H \"Authorization: Bearer \$T\" http://127.0.0.1:$((BASE + 1))/admin/v1/cluster"
echo "  curl -H \"Authorization: Bearer \$T\" -d '{\"key\":\"prod\",\"name\":\"Production\"}' http://127.0.0.1:$((BASE + 2))/v1/environments"
echo
echo "Ctrl-C stops the cluster."
wait

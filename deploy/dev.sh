#!/usr/bin/env bash
# Pulseplane developer entry point (Debian, run as root or with the packages present).
#
#   ./deploy/dev.sh run    build and start a 3-node cluster on loopback (Ctrl-C stops it)
#   ./deploy/dev.sh test   run the whole test suite
#
# Each installs the system packages it needs when they are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

log() { printf '== %s\n' "$*" >&2; }

# Installs Debian packages that are not installed yet.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "missing packages: ${missing[*]} (install them, or run as root on Debian)"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    ensure_packages curl ca-certificates
    log "installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# Build dependencies: a C/C++ toolchain, and libclang for the RocksDB bindings.
ensure_build_deps() {
  ensure_packages build-essential pkg-config libclang-dev
  ensure_rust
}

cmd_run() {
  ensure_build_deps
  ensure_packages curl
  exec "$ROOT/deploy/local-cluster.sh"
}

# Node.js 20 or newer with npm, for the console's browser test.
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_packages nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    log "the console's browser test needs Node.js 20 or newer (found $(node --version))"
    exit 1
  fi
}

cmd_test() {
  ensure_build_deps
  # The change-notice tests start their own redis-server; the console's
  # browser test drives Debian's Chromium with playwright-core from npm.
  ensure_packages redis-server chromium
  ensure_node
  log "installing the console test's npm packages"
  npm ci --prefix cluster-tests/console-e2e --no-audit --no-fund --loglevel=error >/dev/null
  log "running the test suite"
  local out status=0
  out=$(mktemp)
  # --all-features: the SDK's Redis listener and OpenFeature provider too.
  if cargo test --workspace --all-features --locked 2>&1 | tee "$out"; then status=0; else status=$?; fi
  # One closing line for the whole workspace (cargo prints one per test binary).
  awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
  rm -f "$out"
  return "$status"
}

case "${1:-}" in
  run) cmd_run ;;
  test) cmd_test ;;
  *)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac

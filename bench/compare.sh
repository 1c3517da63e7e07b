#!/usr/bin/env bash
# ferrolb beside nginx, HAProxy and Caddy (when installed) on the same backends and load:
# builds target/release/ferrolb, then runs the harness in bench/harness/ (Python 3,
# standard library). Needs nginx, haproxy and wrk (Debian: apt-get install nginx haproxy
# wrk). bench/README.md says what it measures; `bench/compare.sh --help` lists the options.
#   bench/compare.sh --quick              # smoke run, about a minute
#   bench/compare.sh --write-md           # full run (~10 min), then BENCHMARKS.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

help=0
for arg in "$@"; do
  case "$arg" in -h|--help) help=1 ;; esac
done
if [ "$help" = 0 ]; then
  missing=()
  for tool in nginx haproxy wrk python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/compare.sh: missing ${missing[*]} (Debian: apt-get install nginx haproxy wrk python3)" >&2
    exit 2
  fi
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
bin="${CARGO_TARGET_DIR:-$root/target}/release/ferrolb"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac

FERROLB_BENCH_COMMAND="bench/compare.sh${*:+ $*}" PYTHONPATH="$root/bench" \
  exec python3 -m harness --ferrolb-bin "$bin" "$@"

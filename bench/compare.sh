#!/usr/bin/env bash
# Side-by-side benchmark: ferrolb against nginx, HAProxy and Caddy on the same backends
# and load, through the shared harness (../shared/bench/compare.sh; its README says what
# it measures). Extra arguments go to the harness, e.g. --quick or --rounds 5.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
harness="${FERROLB_BENCH_HARNESS:-$root/../shared/bench/compare.sh}"
if [ ! -x "$harness" ]; then
  echo "bench/compare.sh: harness not found at $harness (set FERROLB_BENCH_HARNESS)" >&2
  exit 2
fi
cargo build --release --manifest-path "$root/Cargo.toml"
# The harness runs the candidate from a scratch directory: give it an absolute path.
exec "$harness" --candidate "$root/target/release/ferrolb -c {conf}" "$@"

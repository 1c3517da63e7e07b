#!/usr/bin/env bash
# Dynamic gzip beside nginx: the CPU time a server spends per MiB of text it
# compresses (gzip_comp_level 1 and 6), for a static file and for the same file
# proxied from a plain backend (an nginx without gzip). One process each
# (nginx: master_process off), an 8 MiB text file (this repository's sources)
# fetched N times with curl, server CPU from /proc/PID/stat; the same fetches without
# Accept-Encoding give the baseline that is subtracted. Bounded: N fetches of 8 MiB
# per mode. Usage: bench/gzip.sh [N]   (default 12)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:-12}"
port="${FERROLB_BENCH_GZIP_PORT:-18460}"
bport=$((port + 1))
ferrolb="${CARGO_TARGET_DIR:-$root/target}/release/ferrolb"
[ -x "$ferrolb" ] || cargo build --release --manifest-path "$root/Cargo.toml" >&2
for tool in curl bc /usr/sbin/nginx; do
  command -v "$tool" >/dev/null || { echo "bench/gzip.sh: $tool is needed" >&2; exit 2; }
done
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/www" "$dir/logs" "$dir/b/logs"
while [ "$(stat -c %s "$dir/www/big.txt" 2>/dev/null || echo 0)" -lt $((8 << 20)) ]; do
  cat "$root"/README.md "$root"/src/*.rs "$root"/src/*/*.rs >> "$dir/www/big.txt"
done
head -c $((8 << 20)) "$dir/www/big.txt" > "$dir/www/t.txt"
mib=8

cat > "$dir/b/nginx.conf" <<CONF
events {}
error_log logs/error.log;
pid logs/b.pid;
http {
  access_log off;
  server { listen 127.0.0.1:$bport; root $dir/www; }
}
CONF
/usr/sbin/nginx -p "$dir/b" -c "$dir/b/nginx.conf" -g "daemon off; master_process off;" &
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$bport/t.txt" && break; sleep 0.1; done

conf() { # LEVEL
  cat > "$dir/nginx.conf" <<CONF
events {}
error_log logs/error.log;
pid logs/bench.pid;
http {
  access_log off;
  types { text/plain txt; }
  gzip on;
  gzip_types text/plain;
  gzip_comp_level $1;
  server {
    listen 127.0.0.1:$port;
    root $dir/www;
    location /up/ { proxy_pass http://127.0.0.1:$bport/; }
  }
}
CONF
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

fetch() { # PATH [HEADER] -> bytes received in all
  local total=0 i size
  for i in $(seq "$n"); do
    size=$(curl -s -o /dev/null -w '%{size_download}' ${2:+-H "$2"} "http://127.0.0.1:$port$1")
    total=$((total + size))
  done
  echo "$total"
}

measure() { # NAME PATH -> "ms/MiB ratio"
  local pid=$1 path=$2 c0 c1 c2 plain gz
  c0=$(cpu_ticks "$pid")
  plain=$(fetch "$path")
  c1=$(cpu_ticks "$pid")
  gz=$(fetch "$path" "Accept-Encoding: gzip")
  c2=$(cpu_ticks "$pid")
  # ticks are 10 ms; per MiB of original text, baseline (plain) subtracted.
  echo "$(echo "scale=2; (($c2 - $c1) - ($c1 - $c0)) * 10 / ($n * $mib)" | bc) ms/MiB" \
    "(ratio $(echo "scale=2; $plain / $gz" | bc))"
}

run() { # NAME LEVEL CMD...
  local name=$1 level=$2; shift 2
  conf "$level"
  rm -f "$dir/logs/bench.pid"
  "$@" >"$dir/$name.out" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/t.txt" && break; sleep 0.1; done
  echo "$name level $level: static $(measure "$pid" /t.txt), proxied $(measure "$pid" /up/t.txt)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for level in 1 6; do
  run nginx "$level" /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off; master_process off;"
  run ferrolb "$level" "$ferrolb" -q -p "$dir" -c "$dir/nginx.conf"
done

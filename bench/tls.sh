#!/usr/bin/env bash
# TLS beside nginx, one worker each, same ECDSA P-256 certificate, `return 200`:
# keep-alive HTTPS requests (wrk, 20 connections, 5 s) with the server's CPU time from
# /proc, full and resumed handshakes (openssl s_time, 4 s each), and the memory an idle
# TLS keep-alive connection holds (RSS growth over 400 of them, python3). Bounded:
# about 20 s per server and round. Usage: bench/tls.sh [ROUNDS]   (default 2)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-2}"
port="${FERROLB_BENCH_TLS_PORT:-18450}"
ferrolb="${CARGO_TARGET_DIR:-$root/target}/release/ferrolb"
cargo build --release --manifest-path "$root/Cargo.toml" >&2
for tool in wrk openssl bc /usr/sbin/nginx; do
  command -v "$tool" >/dev/null || { echo "bench/tls.sh: $tool is needed" >&2; exit 2; }
done
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=localhost 2>/dev/null
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
events {}
error_log logs/error.log;
pid logs/bench.pid;
http {
  access_log off;
  server {
    listen 127.0.0.1:$port ssl;
    keepalive_timeout 300s;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / { return 200 "ok\n"; }
  }
}
CONF

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

run() { # NAME CMD...
  local name=$1 main pids c0 c1 c2 rps full reused; shift
  start_server "$dir" "$name" "$@"
  c0=$(cpu_ticks $pids)
  rps=$(wrk -t1 -c20 -d5s "https://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  c1=$(cpu_ticks $pids)
  full=$(openssl s_time -connect "127.0.0.1:$port" -new -time 4 2>/dev/null | awk '/real seconds/ {print $1; exit}')
  c2=$(cpu_ticks $pids)
  reused=$(openssl s_time -connect "127.0.0.1:$port" -reuse -time 4 2>/dev/null | awk '/real seconds/ {n=$1} END {print n}')
  local idle
  idle=$(python3 - "$port" 400 "$(pgrep -P "$main" | head -1 || true)" "$main" <<'PY'
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
pid = sys.argv[3] or sys.argv[4]  # nginx's worker, or ferrolb itself
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
def one():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.recv(4096)
    return s
warm = [one() for _ in range(20)]
time.sleep(0.5)
before = rss()
conns = [one() for _ in range(n)]
time.sleep(0.5)
print(round((rss() - before) * 1024 / n))
PY
)
  kill "$main"; wait 2>/dev/null || true
  local hz=100
  echo "$name: keep-alive $rps req/s, $(echo "$rps * 5 * $hz / ($c1 - $c0)" | bc) req per CPU-second;" \
    "full handshakes $((full / 4))/s, $(echo "$full * $hz / ($c2 - $c1)" | bc) per CPU-second; resumed $((reused / 4))/s;" \
    "idle TLS connection $idle bytes"
}

for _ in $(seq "$rounds"); do
  run nginx /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off;"
  run ferrolb "$ferrolb" -q -p "$dir" -c "$dir/nginx.conf"
done

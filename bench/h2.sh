#!/usr/bin/env bash
# HTTP/2 beside nginx, one worker each, the same config (`listen ... ssl http2`, the
# same ECDSA P-256 certificate) proxying to one small fast backend (nginx's own
# `return 200` on a plain port, keep-alive upstream): h2load -n 20000 -c 10 -m 10 over
# TLS, requests/s and the proxy's CPU seconds from /proc; then the memory an idle h2
# connection holds (RSS growth over 300 of them, after one request each, python3's
# h2). Bounded: about 10 s per server and round. Usage: bench/h2.sh [ROUNDS] (default 2)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-2}"
port="${FERROLB_BENCH_H2_PORT:-18460}"
backend=$((port + 1))
ferrolb="${CARGO_TARGET_DIR:-$root/target}/release/ferrolb"
python="${FERROLB_TEST_PYTHON:-$root/.venv/bin/python}"
cargo build --release --manifest-path "$root/Cargo.toml" >&2
for tool in h2load openssl bc /usr/sbin/nginx "$python"; do
  command -v "$tool" >/dev/null || { echo "bench/h2.sh: $tool is needed" >&2; exit 2; }
done
dir="$(mktemp -d)"
trap 'kill $(cat "$dir/backend/logs/b.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/logs" "$dir/backend/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=localhost 2>/dev/null
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
start_return_backend "$dir" "$backend"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
events {}
error_log logs/error.log;
pid logs/bench.pid;
http {
  access_log off;
  upstream backend { server 127.0.0.1:$backend; keepalive 32; }
  server {
    listen 127.0.0.1:$port ssl http2;
    keepalive_timeout 300s;
    # Streams per connection: nginx's default (1000) would end h2load's connections.
    keepalive_requests 100000;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF


run() { # NAME CMD...
  local name=$1 main pids c0 c1 out rps failed; shift
  start_server "$dir" "$name" "$@"
  c0=$(cpu_ticks $pids)
  out=$(h2load -n 20000 -c 10 -m 10 "https://127.0.0.1:$port/")
  c1=$(cpu_ticks $pids)
  rps=$(echo "$out" | awk '/^finished in/ {print $4}')
  failed=$(echo "$out" | awk '/^requests:/ {print $12}')
  local idle
  idle=$("$python" - "$port" 300 "$(pgrep -P "$main" | head -1 || true)" "$main" <<'PY'
import socket, ssl, sys, time
import h2.connection, h2.config, h2.events
port, n = int(sys.argv[1]), int(sys.argv[2])
pid = sys.argv[3] or sys.argv[4]  # nginx's worker, or ferrolb itself
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
def one():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "localhost")], end_stream=True)
    s.sendall(c.data_to_send())
    done = False
    while not done:
        for e in c.receive_data(s.recv(65536)):
            done |= isinstance(e, h2.events.StreamEnded)
        s.sendall(c.data_to_send())
    return s, c
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
  echo "$name: h2load -n 20000 -c 10 -m 10: $rps req/s, $failed failed, proxy CPU $(echo "scale=2; ($c1 - $c0) / $hz" | bc) s" \
    "($(echo "20000 * $hz / ($c1 - $c0)" | bc) req per CPU-second); idle h2 connection $idle bytes"
}

for _ in $(seq "$rounds"); do
  run nginx /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off;"
  run ferrolb "$ferrolb" -q -p "$dir" -c "$dir/nginx.conf"
done

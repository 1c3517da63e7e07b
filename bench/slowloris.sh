#!/usr/bin/env bash
# Normal requests beside a slowloris attack, ferrolb and nginx on the same config (one
# worker each, proxying to one small fast backend: nginx's own `return 200` on a plain
# port, keep-alive upstream). For each server: wrk -t1 -c50 -d5s alone, then the same
# while 1,000 other connections each send one byte of a request head per second; the
# figures are requests/s, p99 and wrk's errors of the normal requests, and how many
# slow connections the server had closed by the end (`client_header_timeout 3s` is
# shorter than a run, so they are closed and reopened as they time out: the attack
# keeps 1,000 slots busy all along, as a real one does). Bounded: about 25 s per server
# and round. Usage: bench/slowloris.sh [ROUNDS] (default 2)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-2}"
port="${FERROLB_BENCH_SLOW_PORT:-18470}"
backend=$((port + 1))
slow=1000
ferrolb="${CARGO_TARGET_DIR:-$root/target}/release/ferrolb"
cargo build --release --manifest-path "$root/Cargo.toml" >&2
for tool in wrk python3 /usr/sbin/nginx; do
  command -v "$tool" >/dev/null || { echo "bench/slowloris.sh: $tool is needed" >&2; exit 2; }
done
dir="$(mktemp -d)"
trap 'kill $(cat "$dir/backend/logs/b.pid" 2>/dev/null) 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/logs" "$dir/backend/logs"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
start_return_backend "$dir" "$backend"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
events { worker_connections 4096; }
error_log logs/error.log;
pid logs/bench.pid;
http {
  access_log off;
  client_header_timeout 3s;
  upstream backend { server 127.0.0.1:$backend; keepalive 32; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

# The attack: keeps $slow connections each sending one head byte per second, and
# reopens those the server closes; prints "ready" once all are open, and at the end
# (SIGTERM) how many the server closed.
cat > "$dir/slowloris.py" <<'PY'
import signal, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 4096
closed = 0
def open_one():
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    return [s, 0]
conns = [open_one() for _ in range(n)]
print("ready", flush=True)
def stop(*_):
    print(f"closed {closed}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
deadline = time.monotonic() + 120  # bounded even if nobody stops it
while time.monotonic() < deadline:
    tick = time.monotonic()
    for c in conns:
        try:
            c[0].send(head[c[1] % len(head):][:1])
            c[1] += 1
        except OSError:
            closed += 1
            c[0].close()
            try:
                c[0], c[1] = open_one()[0], 0
            except OSError:
                pass
    time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
stop()
PY


load() { # -> "req/s p99 errors"
  wrk -t1 -c50 -d5s --latency "http://127.0.0.1:$port/" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {p99=$2}
    /Non-2xx|Socket errors/ {err=err" "$0}
    END {printf "%s req/s, p99 %s, errors:%s", rps, p99, (err == "" ? " none" : err)}'
}

run() { # NAME CMD...
  local name=$1 main pids alone under attacker closed; shift
  start_server "$dir" "$name" "$@"
  alone=$(load)
  python3 "$dir/slowloris.py" "$port" "$slow" > "$dir/slow.out" &
  attacker=$!
  for _ in $(seq 300); do grep -q ready "$dir/slow.out" 2>/dev/null && break; sleep 0.1; done
  under=$(load)
  kill -TERM "$attacker"; wait "$attacker" 2>/dev/null || true
  closed=$(awk '/^closed/ {print $2}' "$dir/slow.out")
  kill "$main"; wait "$main" 2>/dev/null || true
  echo "$name: alone $alone | beside $slow slow connections $under | slow connections closed by the server: ${closed:-?}"
}

for _ in $(seq "$rounds"); do
  run nginx /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off;"
  run ferrolb "$ferrolb" -q -p "$dir" -c "$dir/nginx.conf"
done

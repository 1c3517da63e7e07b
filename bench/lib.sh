# Helpers the bench scripts share (sourced).

cpu_ticks() { # utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

start_server() { # DIR NAME CMD...: starts a server whose pid file is DIR/logs/bench.pid,
  # waits for it; sets `main` (its pid) and `pids` (it and its children).
  local dir=$1 name=$2; shift 2
  rm -f "$dir/logs/bench.pid"
  "$@" >"$dir/$name.out" 2>&1 &
  for _ in $(seq 100); do [ -s "$dir/logs/bench.pid" ] && break; sleep 0.1; done
  sleep 0.5
  main=$(cat "$dir/logs/bench.pid")
  pids="$main $( (pgrep -P "$main" || true) | tr "\n" " ")"
}

start_return_backend() { # DIR PORT: nginx answering `return 200 "ok\n"` on 127.0.0.1:PORT,
  # one worker, keep-alive without a request limit; its pid file is DIR/backend/logs/b.pid.
  local dir=$1 port=$2
  mkdir -p "$dir/backend/logs"
  cat > "$dir/backend/nginx.conf" <<CONF
worker_processes 1;
events {}
error_log logs/error.log;
pid logs/b.pid;
http {
  access_log off;
  server { listen 127.0.0.1:$port; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
CONF
  /usr/sbin/nginx -p "$dir/backend" -c "$dir/backend/nginx.conf"
}

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

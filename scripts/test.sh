#!/usr/bin/env bash
# The project's test command (README, .ci/run). On a fresh Debian 12 machine
# (root, package registries only) it installs what the tests need, then runs
# the test suite, clippy and rustfmt. Idempotent; fast when all is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step_start=0
step() {
  step_start=$SECONDS
  printf '\n==> %s\n' "$*"
}
done_step() {
  printf '<== %s: %ds\n' "$1" $((SECONDS - step_start))
}
trap 'rc=$?; printf "\n!!! scripts/test.sh FAILED (exit %d) at line %d: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

# --- 1. system packages: only what is missing ------------------------------
step "system packages"
python_ok() {
  # A python3 that can make a venv with pip (pyenv's can; Debian's needs python3-venv).
  command -v python3 >/dev/null 2>&1 || return 1
  local tmp rc=0
  tmp=$(mktemp -d)
  python3 -m venv "$tmp/v" >/dev/null 2>&1 && [ -x "$tmp/v/bin/pip" ] || rc=1
  rm -rf "$tmp"
  return $rc
}
need=()
if [ ! -x .venv/bin/python ] && ! python_ok; then
  need+=(python3 python3-venv)
fi
command -v curl >/dev/null 2>&1 || need+=(curl)
# openssl: tests/tls.rs makes its certificates and checks sessions with it.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# nginx: lets the end-to-end harness be checked against the real thing
# (FERROLB_TEST_BIN=/usr/sbin/nginx cargo test --test django).
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
# htpasswd (apache2-utils): tests/admission.rs makes DES, bcrypt and {SHA} password
# lines with it, as users do.
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
# ss (iproute2): tests/listen_params.rs reads listen backlogs and keepalive timers;
# zcat (gzip): tests/access_log_options.rs reads gzip access logs with it.
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v zcat >/dev/null 2>&1 || need+=(gzip)
# pebble (with pebble-challtestsrv): tests/acme.rs gets certificates from this
# RFC 8555 test CA, as nginx's ACME module's own tests do.
[ -x /usr/bin/pebble ] && [ -x /usr/bin/pebble-challtestsrv ] || need+=(pebble)
# chromium: the dashboard test (tests/dashboard.rs) drives it headless over DevTools.
[ -x /usr/bin/chromium ] || need+=(chromium)
# h2load (nghttp2-client): tests/http2.rs runs many concurrent HTTP/2 streams with it.
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages (${need[*]}) and not root: install them and re-run" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Keep apt from starting the nginx service it installs (port 80; on a machine
  # without an init system a failed start would fail the install).
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
else
  echo "all present"
fi
done_step "system packages"

# --- 2. Python venv with Django (the article's backends) -------------------
step "python venv (.venv) with examples/django/requirements.txt"
REQ=examples/django/requirements.txt
STAMP=.venv/.requirements.stamp
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  rm -rf .venv # missing, or made by a Python that is gone
  python3 -m venv .venv
fi
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP" || ! .venv/bin/python -c 'import django' 2>/dev/null; then
  .venv/bin/python -m pip install --disable-pip-version-check -q -r "$REQ"
  cp "$REQ" "$STAMP"
else
  echo "up to date"
fi
.venv/bin/python -c 'import django, sys; print("Python", sys.version.split()[0], "Django", django.get_version())'
export FERROLB_TEST_PYTHON=$ROOT/.venv/bin/python
export FERROLB_DJANGO_DIR=$ROOT/examples/django
done_step "python venv"

# --- 3. the benchmark harness's own checks (no processes, well under a second) ---
step "bench harness self-test (python3 -m unittest harness.tests)"
PYTHONPATH=bench python3 -m unittest -q harness.tests
done_step "bench harness self-test"

# --- 4. Rust checks --------------------------------------------------------
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install a Rust toolchain (rustup)" >&2; exit 1; }

step "cargo fmt --check"
cargo fmt --all -- --check
done_step "cargo fmt --check"

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
done_step "cargo clippy"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ "${FERROLB_SKIP_NGINX_CHECK:-0}" != 1 ] && [ -x "$NGINX" ]; then
  # The end-to-end harness and expectations, checked against real nginx first:
  # a failure here is in the harness or the machine, not in ferrolb.
  step "end-to-end harness against $NGINX (FERROLB_TEST_BIN)"
  FERROLB_TEST_BIN=$NGINX cargo test --test django
  done_step "harness against nginx"
fi

# The tests run with terse output (a dot per test; failures in full).
step "cargo test --lib --bins --tests"
cargo test --quiet --lib --bins --tests
done_step "cargo test"

# The criterion benches in criterion's test mode: each benchmark runs once, in the
# test profile already built above (no timing, nothing asserted about speed; the
# benches' own checks, e.g. that a lookup ends on the right location, do run).
# Their ~100 lines of "Testing ... Success" go to a log, shown in full on failure.
step "cargo test --benches (each benchmark once)"
bench_log=$(mktemp)
if ! cargo test --quiet --benches >"$bench_log" 2>&1; then
  cat "$bench_log"
  rm -f "$bench_log"
  false
fi
echo "$(grep -c '^Success' "$bench_log") benchmarks ran once"
rm -f "$bench_log"
done_step "cargo test --benches"

printf '\nscripts/test.sh: all steps passed in %ds\n' "$SECONDS"

"""Options, the run, and the outputs (stdout table, results.json, table.txt,
BENCHMARKS.md and chart.svg in --out; with --write-md also BENCHMARKS.md at the
repository root and bench/benchmarks.svg)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

from . import chart, report, scenarios, stats
from .machine import machine, versions
from .net import BenchError
from .net import DEFAULT_PORT_BASE, Ports
from .runner import Bench, Plan, log
from .targets import ALL, CONF_DIR, Configs, Variant, column_of, columns

REPO = os.path.dirname(os.path.dirname(CONF_DIR))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/compare.sh",
        description="ferrolb beside nginx, HAProxy and Caddy (when installed) on the same "
        "backends and load, on loopback, in interleaved rounds. See bench/README.md.")
    ap.add_argument("--targets", default="",
                    help=f"comma list from {','.join(ALL)} (default: all; caddy only when "
                    "its binary is installed)")
    ap.add_argument("--scenarios", default=scenarios.DEFAULT,
                    help=f"comma list of <kind>-c<connections>, kind in "
                    f"{','.join(scenarios.KINDS)} (default {scenarios.DEFAULT})")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per cell (default 5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="seconds of unmeasured load before each cell (default 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="wrk threads (default 1: leaves the other cores to proxy and backend)")
    ap.add_argument("--idle-conns", type=int, default=5000,
                    help="idle keep-alive connections for the memory figure (default 5000; "
                    "0 skips it)")
    ap.add_argument("--workers", type=int, default=1, metavar="N",
                    help="also measure each proxy at N worker threads (nginx worker_processes "
                    "N, HAProxy nbthread N, Caddy GOMAXPROCS=N, ferrolb worker_processes N), "
                    "reported beside 1 thread")
    ap.add_argument("--access-log", action="store_true",
                    help="also measure nginx and ferrolb with `access_log <scratch>/access.log "
                    "combined;`")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 2 s cells, small-c50 and post16k-c50, 1000 idle "
                    "connections (about a minute)")
    ap.add_argument("--nginx-conf", default=os.path.join(CONF_DIR, "nginx-proxy.conf"))
    ap.add_argument("--haproxy-conf", default=os.path.join(CONF_DIR, "haproxy.cfg"))
    ap.add_argument("--caddy-conf", default=os.path.join(CONF_DIR, "Caddyfile"))
    ap.add_argument("--candidate-conf", default="",
                    help="config for ferrolb (default: the nginx one, --nginx-conf)")
    ap.add_argument("--candidate", default="", metavar="CMD",
                    help="command for the ferrolb target, {conf} replaced by its config and "
                    "{run} by the cell's scratch dir; must stay in the foreground (default: "
                    "the freshly built target/release/ferrolb -c {conf})")
    ap.add_argument("--ferrolb-bin", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="",
                    help="directory for the outputs (default "
                    "/tmp/ferrolb-bench-results/<UTC time>)")
    ap.add_argument("--write-md", action="store_true",
                    help="also write BENCHMARKS.md at the repository root and "
                    "bench/benchmarks.svg")
    ap.add_argument("--render", default="", metavar="RESULTS_JSON",
                    help="measure nothing: write the outputs again from a results.json "
                    "(with --out and --write-md)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch dir (configs, logs of every process)")
    ap.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                    help="backends on BASE..BASE+3, their status page on BASE+9, the proxy on "
                    "BASE+80; every 180NN in the configs becomes BASE+NN (default 18000)")
    ap.add_argument("--start-timeout", type=float, default=10.0,
                    help="seconds a proxy has to start listening (default 10)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="hard stop for the measuring, seconds (default: twice the estimate "
                    "plus 2 minutes)")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.warmup = 1, 2, 1
        a.scenarios, a.idle_conns = scenarios.QUICK, min(a.idle_conns, 1000)
    have_caddy = shutil.which("caddy") is not None
    if not a.targets:
        a.targets = ",".join(t for t in ALL if t != "caddy" or have_caddy)
        if not have_caddy and not a.render:
            log("note: caddy is not installed: no caddy column (apt-get install caddy)")
    a.targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    for t in a.targets:
        if t not in ALL:
            ap.error(f"unknown target {t!r} (known: {', '.join(ALL)})")
    if "caddy" in a.targets and not have_caddy:
        ap.error("target caddy needs the caddy binary (Debian: apt-get install caddy)")
    if "ferrolb" in a.targets and not (a.candidate or a.ferrolb_bin):
        ap.error("target ferrolb needs --candidate 'CMD {conf}' (bench/compare.sh passes the "
                 "binary it builds)")
    a.candidate_conf = a.candidate_conf or a.nginx_conf
    for name in ("nginx_conf", "haproxy_conf", "caddy_conf", "candidate_conf"):
        path = os.path.abspath(getattr(a, name))
        if not os.path.isfile(path):
            ap.error(f"--{name.replace('_', '-')}: no such file: {path}")
        setattr(a, name, path)
    try:
        a.scenario_list = scenarios.parse(a.scenarios)
    except ValueError as e:
        ap.error(str(e))
    if not (1 <= a.rounds <= 20 and 1 <= a.duration <= 120 and 0 <= a.warmup <= 30
            and 1 <= a.threads <= 64 and 1 <= a.workers <= 64):
        ap.error("rounds 1..20, duration 1..120 s, warmup 0..30 s, threads and workers 1..64")
    if not 1024 <= a.port_base <= 65000:
        ap.error("--port-base 1024..65000")
    if not 0 <= a.idle_conns <= 20000:
        ap.error("--idle-conns 0..20000")
    return a


def raise_open_files(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if need > want:
        raise BenchError(f"--idle-conns needs {need} open files, the limit is {want}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.render:
        with open(a.render) as f:
            doc = json.load(f)
        return _write_outputs(a, doc, [column_of(c) for c in doc["meta"]["params"]["columns"]])
    variants = [Variant()]
    if a.workers != 1:
        variants.append(Variant(workers=a.workers))
    if a.access_log:
        variants.append(Variant(access_log=True))
    cols = columns(a.targets, variants)
    plan = Plan(columns=cols, scenarios=a.scenario_list, rounds=a.rounds, duration=a.duration,
                warmup=a.warmup, wrk_threads=a.threads, idle_conns=a.idle_conns,
                start_timeout=a.start_timeout, time_limit=0)
    plan.time_limit = a.time_limit or 2 * plan.estimate_s() + 120
    ferrolb_cmd = a.candidate or f"{a.ferrolb_bin} -c {{conf}}"
    configs = Configs(backend=os.path.join(CONF_DIR, "backend-nginx.conf"), nginx=a.nginx_conf,
                      haproxy=a.haproxy_conf, caddy=a.caddy_conf, ferrolb=a.candidate_conf,
                      ferrolb_cmd=ferrolb_cmd, ports=Ports())
    try:
        raise_open_files(a.idle_conns + 200)
    except BenchError as e:
        log(f"error: {e}")
        return 2

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    # Ctrl-C stops the run even when started from a shell that ignores SIGINT for
    # background jobs (Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    run_dir = tempfile.mkdtemp(prefix="ferrolb-bench.")
    os.chmod(run_dir, 0o755)  # nginx workers run as nobody and read the backend's pages
    configs = configs.for_ports(Ports(a.port_base), run_dir)
    started = dt.datetime.now(dt.timezone.utc)
    # Before the run: the versions (and the commit) of what is measured, not of what the
    # checkout holds by the end.
    ferrolb_bin = a.ferrolb_bin if "ferrolb" in a.targets and not a.candidate else None
    measured = versions(run_dir, ferrolb_bin, REPO)
    bench = Bench(plan, configs, run_dir)
    rc = 0
    try:
        bench.run()
    except (KeyboardInterrupt, SystemExit) as e:
        bench.interrupted = True
        rc = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        log("interrupted: stopping every process started")
    except BenchError as e:
        log(f"error: {e}")
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        bench.stop_all()
    try:
        if not bench.runs and not bench.idle_runs:
            return rc or 1
        doc = _document(a, bench, plan, started, measured)
        rc = _write_outputs(a, doc, cols) or rc
        if bench.failures and rc == 0:
            rc = 3
        return rc
    finally:
        if a.keep:
            log(f"scratch dir kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def _document(a, bench: Bench, plan: Plan, started: dt.datetime, measured: dict) -> dict:
    names = [s.name for s in plan.scenarios]
    meta = dict(
        started_at=started.isoformat(timespec="seconds"),
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(time.monotonic() - bench.t0, 1),
        command=os.environ.get("FERROLB_BENCH_COMMAND") or "bench/compare.sh "
        + " ".join(sys.argv[1:]),
        machine=machine(), versions=measured,
        params=dict(columns=[c.label for c in plan.columns],
                    scenarios=[dataclasses.asdict(s) for s in plan.scenarios],
                    rounds=plan.rounds, duration_s=plan.duration, warmup_s=plan.warmup,
                    wrk_threads=plan.wrk_threads, idle_conns=plan.idle_conns,
                    workers=a.workers, access_log=a.access_log, port_base=a.port_base,
                    quick=a.quick,
                    ferrolb_cmd=bench.configs.ferrolb_cmd, nginx_conf=a.nginx_conf,
                    haproxy_conf=a.haproxy_conf, caddy_conf=a.caddy_conf,
                    candidate_conf=a.candidate_conf),
        interrupted=bench.interrupted, time_limit_hit=bench.timed_out)
    return dict(meta=meta,
                summary=dict(cells=stats.cells(bench.runs, names, plan.columns),
                             idle=stats.idle(bench.idle_runs, plan.columns)),
                ratios=stats.ratios(bench.runs, names, plan.columns, plan.rounds),
                checks=bench.checks, failures=bench.failures, runs=bench.runs,
                idle_runs=bench.idle_runs)


def _write_outputs(a, doc: dict, cols) -> int:
    out_dir = a.out or os.path.join("/tmp/ferrolb-bench-results",
                                    time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    table = report.text(doc, cols)
    picture = chart.svg(doc, cols)
    files = {"results.json": json.dumps(doc, indent=1), "table.txt": table,
             "chart.svg": picture, "BENCHMARKS.md": report.markdown(doc, cols, "chart.svg")}
    if a.write_md:
        files[os.path.join(REPO, "BENCHMARKS.md")] = report.markdown(
            doc, cols, "bench/benchmarks.svg")
        files[os.path.join(REPO, "bench", "benchmarks.svg")] = picture
    rc = 0
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(out_dir, name), "w") as f:
                f.write(text)
        log(f"wrote {', '.join(files)} in {out_dir}" if not a.write_md else
            f"wrote {out_dir}/ and {REPO}/BENCHMARKS.md, bench/benchmarks.svg")
    except OSError as e:
        log(f"could not write the outputs: {e}")
        rc = 1
    sys.stdout.write(table)
    sys.stdout.flush()
    return rc

"""Load generation with wrk: one run, its figures (from wrk_report.lua's summary line)
and wrk's own CPU time."""
from __future__ import annotations

import json
import os
import resource

from .net import HOST, BenchError
from .procs import Supervisor
from .scenarios import Scenario

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk_report.lua")
SUMMARY = "BENCHJSON "


def run_wrk(sup: Supervisor, port: int, sc: Scenario, seconds: int, threads: int,
            log_path: str, cwd: str) -> tuple[dict, float]:
    """Keep-alive load on `port` for `seconds`; returns (summary, wrk CPU seconds)."""
    env = dict(os.environ, BENCH_METHOD=sc.method, BENCH_BODY_BYTES=str(sc.body_bytes))
    argv = ["wrk", f"-t{min(threads, sc.conns)}", f"-c{sc.conns}", f"-d{seconds}s",
            "--timeout", "5s", "-s", LUA, f"http://{HOST}:{port}{sc.path}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = sup.start("wrk", argv, log_path, cwd=cwd, env=env)
    if not sup.wait(p, seconds + 30):
        raise BenchError(f"wrk did not finish within {seconds + 30} s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    with open(log_path, errors="replace") as f:
        text = f.read()
    for line in reversed(text.splitlines()):
        if line.startswith(SUMMARY):
            return json.loads(line[len(SUMMARY):]), cpu
    raise BenchError(f"wrk exited {p.returncode} without a summary: {text[-600:]}")

"""The measuring loop: backends up, then interleaved rounds of cells (one column, one
scenario, a fresh proxy process each), then the idle-connection memory per proxy."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from . import net
from .idle import idle_memory
from .load import run_wrk
from .net import BenchError
from .procs import (Supervisor, machine_busy_pct, machine_ticks, tree_cpu_seconds,
                    tree_memory_kb)
from .scenarios import Scenario
from .targets import Column, Configs, Variant, launch


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Plan:
    columns: list[Column]
    scenarios: list[Scenario]
    rounds: int
    duration: int
    warmup: int
    wrk_threads: int
    idle_conns: int
    start_timeout: float
    time_limit: float

    def idle_columns(self) -> list[Column]:
        """Idle memory is measured in the base variant only (one worker, no log)."""
        return [c for c in self.columns if c.target != "direct" and c.variant == Variant()]

    def estimate_s(self) -> float:
        cells = self.rounds * len(self.scenarios) * len(self.columns)
        idle = self.rounds * len(self.idle_columns()) if self.idle_conns else 0
        return cells * (self.warmup + self.duration + 1) + idle * (4 + self.idle_conns / 2000)


class Bench:
    def __init__(self, plan: Plan, configs: Configs, run_dir: str):
        self.plan = plan
        self.configs = configs
        self.run_dir = run_dir
        self.ports = configs.ports
        self.sup = Supervisor()
        self.backend = None
        self.runs: list[dict] = []
        self.idle_runs: list[dict] = []
        self.failures: list[dict] = []
        self.checks: dict[str, dict] = {}
        self.failed_in_a_row: dict[str, int] = {}
        self.dropped: set[str] = set()
        self.t0 = time.monotonic()
        self.timed_out = False
        self.interrupted = False

    # ----- the loop
    def run(self) -> None:
        busy = [p for p in self.ports.all() if net.port_open(p)]
        if busy:
            raise BenchError(f"ports in use on 127.0.0.1: {busy}: another benchmark or server "
                             "runs (stop it first; this harness stops only what it started)")
        p = self.plan
        log(f"columns {', '.join(c.label for c in p.columns)}; scenarios "
            f"{', '.join(s.name for s in p.scenarios)}; {p.rounds} rounds x {p.duration} s "
            f"(+{p.warmup} s warm-up); estimated {p.estimate_s() / 60:.1f} min")
        self._start_backend()
        n = len(p.columns)
        for rnd in range(1, p.rounds + 1):
            for si, sc in enumerate(p.scenarios):
                k = ((rnd - 1) * len(p.scenarios) + si) % n
                for col in p.columns[k:] + p.columns[:k]:  # rotated: no column always first
                    if self._over_time():
                        return
                    if col.label not in self.dropped:
                        self._cell(col, sc, rnd)
        if p.idle_conns:
            idle_cols = p.idle_columns()
            for rnd in range(1, p.rounds + 1):
                k = (rnd - 1) % max(1, len(idle_cols))
                for col in idle_cols[k:] + idle_cols[:k]:
                    if self._over_time():
                        return
                    if col.label not in self.dropped:
                        self._idle(col, rnd)

    def stop_all(self) -> None:
        self.sup.stop_all()

    def _over_time(self) -> bool:
        if not self.timed_out and time.monotonic() - self.t0 > self.plan.time_limit:
            log(f"time limit of {self.plan.time_limit:.0f} s reached: skipping the rest")
            self.timed_out = True
        return self.timed_out

    # ----- processes
    def _start_backend(self) -> None:
        d = os.path.join(self.run_dir, "backend")
        os.makedirs(os.path.join(d, "html"), exist_ok=True)
        for name, size in (("4k", 4096), ("64k", 65536)):
            head = b"<!doctype html><html><head><title>ferrolb bench</title></head><body>\n"
            tail = b"\n</body></html>\n"
            row = b"<p>The quick brown fox jumps over the lazy dog. 0123456789</p>\n"
            fill = (row * (size // len(row) + 1))[: size - len(head) - len(tail)]
            with open(os.path.join(d, "html", name), "wb") as f:
                f.write(head + fill + tail)
        for root, _, _ in os.walk(self.run_dir):  # nginx workers run as nobody
            os.chmod(root, 0o755)
        argv = ["nginx", "-p", d + "/", "-c", self.configs.backend,
                "-e", os.path.join(d, "error.log"), "-g", f"daemon off; pid {d}/nginx.pid;"]
        self.backend = self.sup.start("backend", argv, os.path.join(d, "stdout.log"), cwd=d)
        for port in (*self.ports.backends, self.ports.status):
            net.wait_listening(port, self.backend, 10)
        check = net.check_answers(self.ports.backends[0])
        if not check["ok"]:
            raise BenchError(f"the backend answers wrong: {check['problems']}")

    def _start_proxy(self, col: Column, tag: str):
        if net.port_open(self.ports.proxy):
            raise BenchError(f"127.0.0.1:{self.ports.proxy} is busy before starting {col.label}")
        d = os.path.join(self.run_dir, tag)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        how = launch(col, d, self.configs)
        out = os.path.join(d, "stdout.log")
        proc = self.sup.start(col.label, how.argv, out, cwd=d, env=how.env)
        try:
            net.wait_listening(self.ports.proxy, proc, self.plan.start_timeout)
            if col.label not in self.checks:
                check = self.checks[col.label] = net.check_answers(self.ports.proxy)
                if len(check["backend_ports_seen"]) != 4:
                    log(f"warning: {col.label} sent 8 GETs to backend ports "
                        f"{check['backend_ports_seen']}, not to all four")
                if not check["ok"]:
                    raise BenchError(f"answers wrong: {check['problems']}")
            elif net.request(self.ports.proxy, "GET", "/")[0] != 200:
                raise BenchError("GET / is not answered 200")
        except (BenchError, OSError) as e:
            self.sup.stop(proc)
            try:
                with open(out, errors="replace") as f:
                    tail = "".join(f.readlines()[-15:])
            except OSError:
                tail = ""
            raise BenchError(f"{col.label} did not start right: {e}\n{tail}") from None
        return proc, how

    def _stop_proxy(self, proc) -> None:
        self.sup.stop(proc)
        net.wait_closed(self.ports.proxy, 5)  # a port still busy ends the whole run

    # ----- one cell
    def _cell(self, col: Column, sc: Scenario, rnd: int) -> None:
        p = self.plan
        tag = f"r{rnd}-{sc.name}-{col.label.replace(':', '-')}"
        proc = how = None
        wrk_log = os.path.join(self.run_dir, f"wrk-{tag}.log")
        try:
            if col.target == "direct":
                port = self.ports.backends[0]
            else:
                proc, how = self._start_proxy(col, tag)
                port = self.ports.proxy
            if p.warmup:
                run_wrk(self.sup, port, sc, p.warmup, p.wrk_threads,
                        os.path.join(self.run_dir, f"wrk-{tag}-warmup.log"), self.run_dir)
            acc0 = net.backend_accepted(self.ports.status)
            m0, b0 = machine_ticks(), tree_cpu_seconds(self.backend.pid)
            p0 = tree_cpu_seconds(proc.pid) if proc else 0.0
            w, wrk_cpu = run_wrk(self.sup, port, sc, p.duration, p.wrk_threads, wrk_log,
                                 self.run_dir)
            p1 = tree_cpu_seconds(proc.pid) if proc else 0.0
            b1, m1 = tree_cpu_seconds(self.backend.pid), machine_ticks()
            acc1 = net.backend_accepted(self.ports.status)
            mem = tree_memory_kb(proc.pid) if proc else None
            if proc and proc.poll() is not None:
                raise BenchError(f"{col.label} exited (code {proc.returncode}) during the run")
        except (BenchError, OSError) as e:
            self._failed(col, sc.name, rnd, str(e))
            return
        finally:
            if proc is not None:
                self._stop_proxy(proc)
        secs = w["duration_us"] / 1e6
        reqs = w["requests"]
        proxy_cpu = (p1 - p0) if proc else None
        new_conns = acc1 - acc0 - 1  # minus the second probe's own connection
        r = dict(
            round=rnd, scenario=sc.name, column=col.label, target=col.target,
            workers=col.variant.workers, access_log=col.variant.access_log,
            requests=reqs, seconds=round(secs, 3), rps=round(reqs / secs, 1),
            p50_ms=w["p50_us"] / 1000, p90_ms=w["p90_us"] / 1000, p99_ms=w["p99_us"] / 1000,
            p999_ms=w["p999_us"] / 1000, max_ms=w["max_us"] / 1000,
            errors=w["errors"], error_total=sum(w["errors"].values()),
            proxy_cpu_s=round(proxy_cpu, 2) if proxy_cpu is not None else None,
            rps_per_proxy_cpu_s=round(reqs / proxy_cpu) if proxy_cpu else None,
            proxy_cpu_pct=round(100 * proxy_cpu / secs, 1) if proxy_cpu is not None else None,
            backend_cpu_pct=round(100 * (b1 - b0) / secs, 1),
            wrk_cpu_pct=round(100 * wrk_cpu / secs, 1),
            machine_busy_pct=round(machine_busy_pct(m0, m1), 1),
            peak_rss_kb=mem["hwm"] if mem else None,
            upstream_new_conns_per_1k=round(1000 * new_conns / reqs, 3) if reqs else None,
        )
        if how and how.access_log:
            r["access_log_lines"] = _count_lines(how.access_log)
            if r["access_log_lines"] < reqs:
                log(f"warning: {col.label} logged {r['access_log_lines']:,} lines for "
                    f"{reqs:,} requests")
        self.runs.append(r)
        self.failed_in_a_row[col.label] = 0
        cpu = f", proxy {proxy_cpu:.2f} CPU-s" if proxy_cpu is not None else ""
        log(f"round {rnd} {sc.name:<12} {col.label:<14} {r['rps']:>9,.0f} rps  "
            f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  errors {r['error_total']}{cpu}")

    def _idle(self, col: Column, rnd: int) -> None:
        try:
            proc, _ = self._start_proxy(col, f"r{rnd}-idle-{col.label.replace(':', '-')}")
        except BenchError as e:
            self._failed(col, "idle", rnd, str(e))
            return
        try:
            res = idle_memory(self.ports.proxy, self.plan.idle_conns, proc.pid, time_limit=90)
        except (BenchError, OSError) as e:
            self._failed(col, "idle", rnd, str(e))
            return
        finally:
            self._stop_proxy(proc)
        res.update(round=rnd, column=col.label, target=col.target)
        self.idle_runs.append(res)
        log(f"round {rnd} idle {col.label:<14} {res['opened']} conns: "
            f"{res['bytes_per_conn_accepted']:.0f} B/conn accepted, "
            f"{res['bytes_per_conn_after_request']:.0f} B/conn after a request "
            f"({res['responses_ok']} answered, {res['still_open']} still open)")

    def _failed(self, col: Column, scenario: str, rnd: int, msg: str) -> None:
        log(f"FAILED round {rnd} {scenario} {col.label}: {msg}")
        self.failures.append(dict(column=col.label, scenario=scenario, round=rnd, error=msg))
        self.failed_in_a_row[col.label] = self.failed_in_a_row.get(col.label, 0) + 1
        if self.failed_in_a_row[col.label] >= 2:
            log(f"dropping {col.label} after two failures in a row")
            self.dropped.add(col.label)


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0

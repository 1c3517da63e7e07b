"""The processes the harness starts, and what /proc says about them.

Every process runs in its own session (a Ctrl-C on the terminal reaches only the
harness, which then stops them in order) and gets SIGTERM from the kernel if the
harness itself dies (PR_SET_PDEATHSIG), so nothing outlives a run.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux glibc: the harness's own cleanup still stops everything


class Supervisor:
    """Starts processes, and stops them (whole process groups) on request or at exit."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[str, subprocess.Popen]] = {}

    def start(self, name: str, argv: list[str], log_path: str, cwd: str,
              env: dict | None = None) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                 start_new_session=True, preexec_fn=_die_with_parent)
        self.live[p.pid] = (name, p)
        return p

    def wait(self, p: subprocess.Popen, timeout: float) -> bool:
        """Waits for a process that ends by itself (wrk); False (and stopped) on timeout."""
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(p)
            return False
        self.live.pop(p.pid, None)
        return True

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        """SIGTERM to the group, SIGKILL after `grace` s; then the group's stragglers
        (e.g. nginx workers left behind by a killed master)."""
        if p.poll() is None:
            _signal_group(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        deadline = time.monotonic() + 3
        while _signal_group(p.pid, 0) and time.monotonic() < deadline:
            late = time.monotonic() + 1 > deadline
            _signal_group(p.pid, signal.SIGKILL if late else signal.SIGTERM)
            time.sleep(0.1)
        self.live.pop(p.pid, None)

    def stop_all(self) -> None:
        for _, p in reversed(list(self.live.values())):
            self.stop(p, grace=3.0)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, CPU ticks of the process: all its threads, plus reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()  # rest[0] is field 3, the state
    return int(rest[1]), sum(int(x) for x in rest[11:15])  # utime stime cutime cstime


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (nginx's master and workers, caddy's helpers)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(_stat(int(d))[0], []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    out, i = [root], 0
    while i < len(out):
        out.extend(children.get(out[i], []))
        i += 1
    return out


def tree_cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in process_tree(root):
        try:
            ticks += _stat(pid)[1]
        except (OSError, ValueError, IndexError):
            pass
    return ticks / CLK_TCK


def tree_memory_kb(root: int) -> dict[str, int]:
    """Summed over the tree: resident set now (`rss`) and its peak (`hwm`), KiB."""
    total = dict(rss=0, hwm=0)
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key == "VmRSS":
                        total["rss"] += int(value.split()[0])
                    elif key == "VmHWM":
                        total["hwm"] += int(value.split()[0])
        except OSError:
            pass
    return total


def machine_ticks() -> list[int]:
    """The machine's CPU counters (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def machine_busy_pct(before: list[int], after: list[int]) -> float:
    d = [b - a for a, b in zip(before, after)]
    total = sum(d[:8]) or 1  # user nice system idle iowait irq softirq steal
    return 100 * (total - d[3] - d[4]) / total

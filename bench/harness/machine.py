"""The machine and software a run measured, for the report."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess

from .targets import caddy_env


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    os_name = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return dict(cpu_model=model, cpus=os.cpu_count(), kernel=platform.release(), os=os_name,
                mem_gib=round(mem_kb / 2**20, 1),
                loadavg_at_start=[round(x, 2) for x in os.getloadavg()])


def _first_line(argv: list[str], env: dict | None = None) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def versions(scratch: str, ferrolb_bin: str | None, repo: str) -> dict:
    out = dict(
        nginx=_first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        haproxy=_first_line(["haproxy", "-v"]).split(" - ")[0].replace(" version", ""),
        wrk=_first_line(["wrk", "-v"]).split(" Copyright")[0],
        caddy="caddy not installed",
        python=platform.python_version(),
    )
    if shutil.which("caddy"):
        words = _first_line(["caddy", "version"], caddy_env(os.path.join(scratch, "caddy-v")))
        out["caddy"] = "caddy " + words.split()[0].lstrip("v")
    if ferrolb_bin:
        out["ferrolb"] = _first_line([ferrolb_bin, "-v"]).replace("ferrolb version: ", "")
    out["ferrolb_commit"] = _commit(repo)
    return out


def _commit(repo: str) -> str:
    """The repository's commit, marked when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "-C", repo, "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    if head.returncode != 0:
        return "? (not a git checkout)"
    return head.stdout.strip() + (" + uncommitted changes" if status.stdout.strip() else "")

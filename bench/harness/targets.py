"""What is measured: targets (direct, nginx, haproxy, caddy, ferrolb), the variants they
run in (worker threads, access log on), and how each is started.

A variant's config is the target's config file with one line changed (`worker_processes`
/ `nbthread`, `access_log off;`), written into the cell's scratch dir, so the default
and the user's `--*-conf` files stay the one source of every setting.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass

from .net import BenchError, Ports

ALL = ("direct", "nginx", "haproxy", "caddy", "ferrolb")
PROXIES = ALL[1:]
# Which targets can run a variant. HAProxy and Caddy have no file access log of the
# nginx kind (HAProxy logs through syslog), so the access-log variant is nginx and ferrolb.
WORKERS_CAPABLE = {"nginx", "haproxy", "caddy", "ferrolb"}
ACCESS_LOG_CAPABLE = {"nginx", "ferrolb"}


@dataclass(frozen=True)
class Variant:
    workers: int = 1
    access_log: bool = False

    @property
    def suffix(self) -> str:
        parts = ([f"w{self.workers}"] if self.workers != 1 else []) + (
            ["log"] if self.access_log else [])
        return ":".join(parts)


@dataclass(frozen=True)
class Column:
    """One target in one variant: a column of the results, e.g. `nginx:w2`."""
    target: str
    variant: Variant

    @property
    def label(self) -> str:
        return self.target + (":" + self.variant.suffix if self.variant.suffix else "")


def column_of(label: str) -> Column:
    """The column a label names (`nginx`, `ferrolb:w2`, `nginx:log`)."""
    target, *parts = label.split(":")
    workers = next((int(p[1:]) for p in parts if p.startswith("w")), 1)
    return Column(target, Variant(workers=workers, access_log="log" in parts))


def columns(targets: list[str], variants: list[Variant]) -> list[Column]:
    out = []
    for v in variants:
        for t in targets:
            if v.workers != 1 and t not in WORKERS_CAPABLE:
                continue
            if v.access_log and t not in ACCESS_LOG_CAPABLE:
                continue
            out.append(Column(t, v))
    return out


@dataclass
class Launch:
    argv: list[str]
    env: dict | None
    access_log: str | None  # the file the access-log variant writes, to check it did


CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


@dataclass
class Configs:
    """The config file of each program, and the ports they are written for."""
    backend: str
    nginx: str
    haproxy: str
    caddy: str
    ferrolb: str
    ferrolb_cmd: str  # template: {conf} the config path, {run} the cell's scratch dir
    ports: Ports

    def for_ports(self, ports: Ports, scratch: str) -> "Configs":
        """Copies in `scratch` with the ports of `ports` (none when they are the default)."""
        if ports == self.ports:
            return self
        d = os.path.join(scratch, "conf")
        os.makedirs(d, exist_ok=True)
        moved = {}
        for name in ("backend", "nginx", "haproxy", "caddy", "ferrolb"):
            src = getattr(self, name)
            moved[name] = _write(d, f"{name}-{os.path.basename(src)}",
                                 ports.rewrite(_read(src)))
        return dataclasses.replace(self, ports=ports, **moved)


def launch(col: Column, cell_dir: str, cf: Configs) -> Launch:
    v = col.variant
    access_log = os.path.join(cell_dir, "access.log") if v.access_log else None
    if col.target == "nginx":
        conf = _nginx_variant(cf.nginx, v, cell_dir, access_log)
        err = os.path.join(cell_dir, "error.log")
        return Launch(["nginx", "-p", cell_dir + "/", "-c", conf, "-e", err,
                       "-g", f"daemon off; pid {cell_dir}/nginx.pid; error_log {err} warn;"],
                      None, access_log)
    if col.target == "ferrolb":
        conf = _nginx_variant(cf.ferrolb, v, cell_dir, access_log)
        cmd = cf.ferrolb_cmd.replace("{conf}", shlex.quote(conf)).replace(
            "{run}", shlex.quote(cell_dir))
        return Launch(["bash", "-c", "exec " + cmd], None, access_log)
    if col.target == "haproxy":
        conf = cf.haproxy
        if v.workers != 1:
            conf = _write(cell_dir, "haproxy.cfg", _haproxy_threads(_read(conf), v.workers, conf))
        return Launch(["haproxy", "-db", "-f", conf], None, None)
    if col.target == "caddy":
        return Launch(["caddy", "run", "--config", cf.caddy, "--adapter", "caddyfile"],
                      caddy_env(cell_dir, GOMAXPROCS=str(v.workers)), None)
    raise BenchError(f"{col.label} is not a proxy")


def caddy_env(home: str, **extra: str) -> dict:
    """Any caddy command, even `caddy version`, writes $HOME/.step, and `caddy run`
    writes autosave.json: keep them in the scratch dir, not in the user's home."""
    os.makedirs(home, exist_ok=True)
    return dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, "config"),
                XDG_DATA_HOME=os.path.join(home, "data"), **extra)


def _nginx_variant(path: str, v: Variant, cell_dir: str, access_log: str | None) -> str:
    if v == Variant():
        return path
    text = _read(path)
    if v.workers != 1:
        text = _replace_one(text, r"^([ \t]*)worker_processes\s+[^;]*;",
                            f"worker_processes {v.workers};", path, "worker_processes N;")
    if access_log:
        text = _replace_one(text, r"^([ \t]*)access_log\s+off\s*;",
                            f"access_log {access_log} combined;", path, "access_log off;")
    return _write(cell_dir, "proxy.conf", text)


def _haproxy_threads(text: str, n: int, path: str) -> str:
    return _replace_one(text, r"^([ \t]*)nbthread\s+\d+", f"nbthread {n}", path, "nbthread N")


def _replace_one(text: str, pattern: str, line: str, path: str, want: str) -> str:
    """`line`, indented as the line it replaces, in place of the first match of
    `pattern` (whose group 1 is the indentation)."""
    new, count = re.subn(pattern, lambda m: m.group(1) + line, text, count=1, flags=re.M)
    if count != 1:
        raise BenchError(f"{path}: no `{want}` line to change for this variant")
    return new


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(cell_dir: str, name: str, text: str) -> str:
    path = os.path.join(cell_dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path

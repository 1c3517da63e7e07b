"""Loopback HTTP probes: is a port up, does a target answer every scenario right, and
how many connections has the backend accepted so far."""
from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
DEFAULT_PORT_BASE = 18000


@dataclass(frozen=True)
class Ports:
    """The loopback ports of a run: backends base..base+3, the backend's status page
    base+9, the proxy under test base+80. The configs in bench/conf are written for
    base 18000; another base rewrites every 180NN in them (`--port-base`)."""
    base: int = DEFAULT_PORT_BASE

    @property
    def backends(self) -> tuple[int, ...]:
        return tuple(self.base + i for i in range(4))

    @property
    def status(self) -> int:
        return self.base + 9

    @property
    def proxy(self) -> int:
        return self.base + 80

    def all(self) -> tuple[int, ...]:
        return (*self.backends, self.status, self.proxy)

    def rewrite(self, config_text: str) -> str:
        if self.base == DEFAULT_PORT_BASE:
            return config_text
        return re.sub(r"\b180(\d\d)\b",
                      lambda m: str(self.base + int(m.group(1))), config_text)

# Sent by the probes and the idle-connection test; wrk sends the same (wrk_report.lua).
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
)


class BenchError(Exception):
    """A cell or the whole run cannot go on; the message says why."""


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_listening(port: int, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"exited with code {proc.returncode} before listening on {port}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on {HOST}:{port} after {timeout:.0f} s")


def wait_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(port):
            return
        time.sleep(0.05)
    raise BenchError(f"{HOST}:{port} still accepts connections after the proxy was stopped "
                     "(a proxy under test must stay in the foreground)")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response framed by Content-Length (all the backends send one)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed before the end of the response head")
        buf += chunk
        if len(buf) > 65536:
            raise BenchError("response head over 64 KiB")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise BenchError("response without Content-Length")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed inside the response body")
        body += chunk
    return status, body[:length]


def keepalive_request() -> bytes:
    return f"GET / HTTP/1.1\r\nHost: localhost\r\n{BROWSER_HEADERS}\r\n".encode()


def request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    raw = (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{BROWSER_HEADERS}{length}"
           "Connection: close\r\n\r\n").encode() + body
    with socket.create_connection((HOST, port), timeout=3) as s:
        s.sendall(raw)
        return read_response(s)


def check_answers(port: int) -> dict:
    """Does the target answer every scenario's request right, and spread 8 GETs over
    the four backends? Returns the problems found and the backend ports seen."""
    problems, ports = [], set()
    for _ in range(8):
        status, body = request(port, "GET", "/")
        if status != 200 or b"Using port " not in body:
            problems.append(f"GET / -> {status} {body[:60]!r}")
        else:
            ports.add(body.split(b"port ")[1][:5].decode())
    for path, size in (("/4k", 4096), ("/64k", 65536)):
        status, body = request(port, "GET", path)
        if status != 200 or len(body) != size:
            problems.append(f"GET {path} -> {status}, {len(body)} bytes (want 200, {size})")
    status, _ = request(port, "POST", "/post", b"a" * 16384)
    if status != 200:
        problems.append(f"POST /post (16 KiB) -> {status}")
    return dict(ok=not problems, problems=problems, backend_ports_seen=sorted(ports))


def backend_accepted(status_port: int) -> int:
    """Connections the backend has accepted so far (nginx stub_status), this probe's
    own connection included."""
    _, body = request(status_port, "GET", "/status")
    # "Active connections: N \nserver accepts handled requests\n A H R \n..."
    return int(body.decode().splitlines()[2].split()[0])

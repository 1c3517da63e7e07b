"""Memory per idle keep-alive client connection: open n connections, then send one
request on each and leave them idle; the proxy's RSS growth per connection at both
stages (accepted with no request yet, idle after one request) and its peak RSS."""
from __future__ import annotations

import socket
import time

from .net import HOST, BenchError, keepalive_request, read_response
from .procs import tree_memory_kb

BATCH = 200  # connections opened (and requests sent) between pauses for the proxy


def idle_memory(port: int, n: int, root_pid: int, time_limit: float) -> dict:
    deadline = time.monotonic() + time_limit
    time.sleep(0.3)
    base = tree_memory_kb(root_pid)["rss"]
    socks: list[socket.socket] = []
    connect_errors = 0
    try:
        for i in range(n):
            if time.monotonic() > deadline or connect_errors > 50:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect((HOST, port))
                socks.append(s)
            except OSError:
                connect_errors += 1
                s.close()
            if i % BATCH == BATCH - 1:
                time.sleep(0.01)  # lets the proxy accept: the listen backlog stays short
        if not socks:
            raise BenchError("idle test: no connection could be opened")
        time.sleep(1.0)
        accepted = tree_memory_kb(root_pid)["rss"]
        ok = _one_request_each(socks, deadline)
        time.sleep(1.0)
        after_request = tree_memory_kb(root_pid)
        still_open = sum(_is_open(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    m = len(socks)
    return dict(requested=n, opened=m, connect_errors=connect_errors, responses_ok=ok,
                still_open=still_open, base_rss_kb=base, peak_rss_kb=after_request["hwm"],
                bytes_per_conn_accepted=round((accepted - base) * 1024 / m, 1),
                bytes_per_conn_after_request=round((after_request["rss"] - base) * 1024 / m, 1))


def _one_request_each(socks: list[socket.socket], deadline: float) -> int:
    req = keepalive_request()
    ok = 0
    for start in range(0, len(socks), BATCH):
        if time.monotonic() > deadline:
            break
        batch = socks[start:start + BATCH]
        for s in batch:
            try:
                s.sendall(req)
            except OSError:
                pass
        for s in batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break  # e.g. HAProxy past its maxconn leaves the rest in the backlog
            try:
                s.settimeout(min(5.0, left))
                ok += read_response(s)[0] == 200
            except (OSError, BenchError, ValueError, IndexError):
                pass
    return ok


def _is_open(s: socket.socket) -> bool:
    try:
        s.setblocking(False)
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False

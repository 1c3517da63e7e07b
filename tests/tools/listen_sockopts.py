#!/usr/bin/env python3
"""Prints, as JSON, the socket options of every listening TCP socket of process PID
on PORT: each socket is copied out of the process with pidfd_getfd(2) (the caller
is the process's parent, or root), and read with getsockopt(2). Used by
tests/listen_params.rs to check what ferrolb (and nginx) really set.

usage: listen_sockopts.py PID PORT
"""
import ctypes
import json
import os
import socket
import sys

SYS_PIDFD_GETFD = 438  # x86_64 and aarch64
TCP_DEFER_ACCEPT = 9
TCP_FASTOPEN = 23


def listening_inodes(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except FileNotFoundError:
            pass
    return inodes


def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    wanted = listening_inodes(port)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if not (target.startswith("socket:[") and target[8:-1] in wanted):
            continue
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
        if copy < 0:
            sys.exit(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
        s = socket.socket(fileno=copy)
        opt = s.getsockopt
        entry = {
            "family": "inet6" if s.family == socket.AF_INET6 else "inet",
            "rcvbuf": opt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "sndbuf": opt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            "keepalive": opt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepidle": opt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "keepintvl": opt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "keepcnt": opt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "defer_accept": opt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT),
            "fastopen": opt(socket.IPPROTO_TCP, TCP_FASTOPEN),
            "reuseport": opt(socket.SOL_SOCKET, socket.SO_REUSEPORT),
        }
        if s.family == socket.AF_INET6:
            entry["v6only"] = opt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        s.close()
        out.append(entry)
    os.close(pidfd)
    json.dump(out, sys.stdout)


main()

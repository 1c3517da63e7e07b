"""Load shapes: a scenario is `<kind>-c<connections>`, e.g. small-c50 or post16k-c50."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = {
    "small": ("/", "GET", 0, "GET / (the seed view, 24 B)"),
    "4k": ("/4k", "GET", 0, "GET 4 KiB page"),
    "64k": ("/64k", "GET", 0, "GET 64 KiB page"),
    "post16k": ("/post", "POST", 16384, "POST 16 KiB form body"),
}
DEFAULT = "small-c50,small-c256,4k-c50,64k-c50,post16k-c50"
QUICK = "small-c50,post16k-c50"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    method: str
    body_bytes: int
    conns: int
    desc: str


def parse(spec: str) -> list[Scenario]:
    """A comma list of scenario names; ValueError says what a name should look like."""
    out = []
    for name in (s.strip() for s in spec.split(",")):
        if not name:
            continue
        kind, sep, conns = name.rpartition("-c")
        if not sep or kind not in KINDS or not conns.isdigit() or not 1 <= int(conns) <= 10000:
            raise ValueError(f"bad scenario {name!r}: want <kind>-c<connections> with kind one "
                             f"of {', '.join(KINDS)} and 1..10000 connections, e.g. small-c50")
        path, method, body, desc = KINDS[kind]
        out.append(Scenario(name, path, method, body, int(conns), desc))
    if not out:
        raise ValueError("no scenario given")
    return out

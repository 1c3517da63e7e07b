"""From runs to figures: medians over rounds per cell, paired ratios per round
(same round, same scenario), and per round the geometric mean over scenarios."""
from __future__ import annotations

import math
import statistics

from .targets import Column, Variant

# (numerator, denominator) targets compared within each variant.
PAIRS = (("ferrolb", "nginx"), ("ferrolb", "haproxy"), ("ferrolb", "caddy"),
         ("haproxy", "nginx"), ("caddy", "nginx"), ("nginx", "direct"))
RATIO_METRICS = (("rps", "rps"), ("rps_per_cpu", "rps_per_proxy_cpu_s"), ("p99", "p99_ms"))
CELL_MEDIANS = ("p50_ms", "p99_ms", "p999_ms", "proxy_cpu_s", "rps_per_proxy_cpu_s",
                "proxy_cpu_pct", "wrk_cpu_pct", "backend_cpu_pct", "machine_busy_pct",
                "peak_rss_kb", "upstream_new_conns_per_1k")
IDLE_MEDIANS = ("opened", "base_rss_kb", "peak_rss_kb", "bytes_per_conn_accepted",
                "bytes_per_conn_after_request", "responses_ok", "still_open")


def median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def cells(runs: list[dict], scenarios: list[str], columns: list[Column]) -> dict:
    """{scenario: {column label: medians over rounds}}."""
    out: dict = {}
    for sc in scenarios:
        out[sc] = {}
        for col in columns:
            rs = [r for r in runs if r["scenario"] == sc and r["column"] == col.label]
            if not rs:
                continue
            rps = [r["rps"] for r in rs]
            m = median(rps)
            row = dict(rounds=len(rs), rps=round(m, 1), rps_min=min(rps), rps_max=max(rps),
                       rps_spread_pct=round(100 * (max(rps) - min(rps)) / m, 1) if m else None,
                       errors=sum(r["error_total"] for r in rs))
            row.update({k: median([r[k] for r in rs]) for k in CELL_MEDIANS})
            logged = [r["access_log_lines"] for r in rs if "access_log_lines" in r]
            if logged:
                row["access_log_lines"] = median(logged)
            out[sc][col.label] = row
    return out


def idle(idle_runs: list[dict], columns: list[Column]) -> dict:
    out = {}
    for col in columns:
        rs = [r for r in idle_runs if r["column"] == col.label]
        if rs:
            row = {k: median([r[k] for r in rs]) for k in IDLE_MEDIANS}
            after = [r["bytes_per_conn_after_request"] for r in rs]
            row.update(rounds=len(rs), after_request_min=min(after), after_request_max=max(after))
            out[col.label] = row
    return out


def comparisons(columns: list[Column]) -> list[tuple[str, str, str]]:
    """(key, numerator label, denominator label) for every comparison the columns allow:
    the PAIRS within each variant, then each proxy's variant against its base column."""
    labels = {c.label for c in columns}
    variants = list(dict.fromkeys(c.variant for c in columns))
    out = []
    for v in variants:
        for a, b in PAIRS:
            la, lb = Column(a, v).label, Column(b, v).label
            if la in labels and lb in labels:
                out.append((f"{la}/{lb}", la, lb))
    for c in columns:
        base = Column(c.target, Variant()).label
        if c.variant != Variant() and base in labels:
            out.append((f"{c.label}/{base}", c.label, base))
    return out


def ratios(runs: list[dict], scenarios: list[str], columns: list[Column], rounds: int) -> dict:
    """{key: {scenarios: {sc: medians of per-round ratios}, <metric>_all: median over
    rounds of the geometric mean over scenarios (rounds missing a scenario are left out)}}."""
    idx = {(r["round"], r["scenario"], r["column"]): r for r in runs}
    out = {}
    for key, la, lb in comparisons(columns):
        per_sc: dict = {}
        per_round: dict = {m: {} for m, _ in RATIO_METRICS}
        for sc in scenarios:
            vals: dict = {m: [] for m, _ in RATIO_METRICS}
            for rnd in range(1, rounds + 1):
                a, b = idx.get((rnd, sc, la)), idx.get((rnd, sc, lb))
                if not a or not b:
                    continue
                for m, field in RATIO_METRICS:
                    if a[field] and b[field]:
                        vals[m].append(a[field] / b[field])
                        per_round[m].setdefault(rnd, []).append(a[field] / b[field])
            if vals["rps"]:
                per_sc[sc] = {m: _round(median(v)) for m, v in vals.items()}
                per_sc[sc].update(rps_min=_round(min(vals["rps"])),
                                  rps_max=_round(max(vals["rps"])))
        if not per_sc:
            continue
        entry: dict = dict(scenarios=per_sc)
        for m, _ in RATIO_METRICS:
            full = [geomean(v) for v in per_round[m].values() if len(v) == len(scenarios)]
            entry[f"{m}_all"] = _round(median(full))
        out[key] = entry
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)

"""The results as tables: one model (`Table`), rendered as aligned text for the
terminal and table.txt, or as Markdown for BENCHMARKS.md."""
from __future__ import annotations

from dataclasses import dataclass, field

from .targets import Column, Variant


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def n(x, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def tables(doc: dict, columns: list[Column]) -> list[Table]:
    """Every table of a run, in reading order."""
    summ, rat, params = doc["summary"], doc["ratios"], doc["meta"]["params"]
    out = []
    for sc in params["scenarios"]:
        rows = []
        for col in columns:
            r = summ["cells"][sc["name"]].get(col.label)
            if not r:
                rows.append([col.label] + ["(no successful run)"] + [""] * 9)
                continue
            cpu = f"{n(r['wrk_cpu_pct'])}/{n(r['proxy_cpu_pct'])}/{n(r['backend_cpu_pct'])}"
            rss = r["peak_rss_kb"] / 1024 if r["peak_rss_kb"] else None
            rows.append([col.label, n(r["rps"]), n(r["rps_spread_pct"], ".1f") + "%",
                         n(r["p50_ms"], ".2f"), n(r["p99_ms"], ".2f"), str(r["errors"]),
                         n(r["rps_per_proxy_cpu_s"]), cpu, n(r["machine_busy_pct"]),
                         n(rss, ".1f"), n(r["upstream_new_conns_per_1k"], ".2f")])
        notes = []
        for key, v in rat.items():
            x = v["scenarios"].get(sc["name"])
            if x:
                notes.append(f"{key}: requests/s {x['rps']:.2f} [{x['rps_min']:.2f}-"
                             f"{x['rps_max']:.2f}], per CPU-s {n(x['rps_per_cpu'], '.2f')}, "
                             f"p99 {n(x['p99'], '.2f')}")
        out.append(Table(
            f"{sc['name']}: {sc['desc']}, {sc['conns']} connections",
            ["column", "req/s", "spread", "p50 ms", "p99 ms", "errors", "req/CPU-s",
             "CPU% wrk/proxy/backend", "busy%", "peak RSS MiB", "up-conn/1k"], rows, notes))
    workers = sorted({c.variant.workers for c in columns} - {1})
    for w in workers:
        out.append(_scaling(doc, columns, w))
    if summ["idle"]:
        rows = []
        for label, r in summ["idle"].items():
            rows.append([label, n(r["opened"]), n(r["base_rss_kb"] / 1024, ".1f"),
                         n(r["peak_rss_kb"] / 1024, ".1f"), n(r["bytes_per_conn_accepted"]),
                         n(r["bytes_per_conn_after_request"]),
                         f"{n(r['after_request_min'])}-{n(r['after_request_max'])}",
                         f"{n(r['responses_ok'])}/{n(r['still_open'])}"])
        out.append(Table(
            "idle keep-alive connections: the proxy's RSS growth per connection, bytes",
            ["column", "connections", "base RSS MiB", "peak RSS MiB", "accepted, no request",
             "after one request", "range", "answered/still open"], rows))
    rows = [[key, n(v["rps_all"], ".3f"), n(v["rps_per_cpu_all"], ".3f"), n(v["p99_all"], ".3f")]
            for key, v in rat.items()]
    out.append(Table("ratios over all scenarios (per round the geometric mean over scenarios, "
                     "then the median over rounds)",
                     ["comparison", "req/s", "req per CPU-s", "p99"], rows))
    return out


def _scaling(doc: dict, columns: list[Column], w: int) -> Table:
    summ, rat = doc["summary"]["cells"], doc["ratios"]
    rows = []
    for col in columns:
        if col.variant != Variant(workers=w):
            continue
        base = Column(col.target, Variant()).label
        for sc, cells in summ.items():
            one, many = cells.get(base), cells.get(col.label)
            if not one or not many:
                continue
            x = rat.get(f"{col.label}/{base}", {}).get("scenarios", {}).get(sc, {})
            rows.append([col.target, sc, n(one["rps"]), n(one["proxy_cpu_pct"]),
                         n(many["rps"]), n(many["proxy_cpu_pct"]), n(x.get("rps"), ".2f"),
                         n(one["upstream_new_conns_per_1k"], ".2f"),
                         n(many["upstream_new_conns_per_1k"], ".2f")])
    return Table(f"scaling: 1 and {w} worker threads (nginx worker_processes, HAProxy "
                 "nbthread, Caddy GOMAXPROCS)",
                 ["target", "scenario", "req/s 1", "CPU% 1", f"req/s {w}", f"CPU% {w}",
                  f"{w}/1 req/s", "up-conn/1k 1", f"up-conn/1k {w}"], rows)


def text(doc: dict, columns: list[Column]) -> str:
    meta, p = doc["meta"], doc["meta"]["params"]
    m, v = meta["machine"], meta["versions"]
    lines = [f"Reverse proxies side by side, {meta['started_at']}: {m['cpus']} CPUs "
             f"({m['cpu_model']}), kernel {m['kernel']}",
             f"  {v['nginx']}; {v['haproxy']}; {v['caddy']}; {v['wrk']}; ferrolb "
             f"{v.get('ferrolb_commit', '?')}",
             f"  command: {meta['command']}",
             f"  {p['rounds']} interleaved round{'s' if p['rounds'] > 1 else ''} x {p['duration_s']} s per cell "
             f"(+{p['warmup_s']} s warm-up, a fresh proxy process per cell), wrk "
             f"-t{p['wrk_threads']}; medians over rounds; spread = (max-min)/median of req/s"]
    if m["loadavg_at_start"][0] > 0.5 * m["cpus"]:
        lines.append(f"  note: load average {m['loadavg_at_start'][0]:.1f} on {m['cpus']} cores "
                     "at the start: other work shares the CPU, figures are noisy")
    for t in tables(doc, columns):
        lines += ["", f"== {t.title}"] + _aligned(t.headers, t.rows)
        lines += [f"  {note}" for note in t.notes]
    if doc["failures"]:
        lines += ["", "== failures"] + [f"  round {f['round']} {f['scenario']} {f['column']}: "
                                        f"{f['error'].splitlines()[0]}" for f in doc["failures"]]
    if meta["interrupted"] or meta["time_limit_hit"]:
        lines += ["", "== PARTIAL RESULTS: " + ("interrupted" if meta["interrupted"]
                                                else "time limit reached")]
    head = doc["ratios"].get("ferrolb/nginx")
    if head and head["rps_all"] is not None:
        lines.append(f"ferrolb/nginx requests/s ratio: {head['rps_all']:.2f} "
                     "(median over rounds)")
    return "\n".join(lines) + "\n"


def _aligned(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda cells: "  " + "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(headers)] + [fmt(r) for r in rows]


def markdown(doc: dict, columns: list[Column], chart_path: str) -> str:
    meta, p = doc["meta"], doc["meta"]["params"]
    m, v = meta["machine"], meta["versions"]
    out = ["# Benchmarks", "",
           "Written by `bench/compare.sh` (the harness in `bench/harness/`, configs in "
           "`bench/conf/`); rerun it to replace this file. Ratios from one run compare; "
           "absolute figures from different runs or machines do not.", "",
           "## Machine and command", "",
           f"- CPU: {m['cpu_model']}, {m['cpus']} cores; {m['mem_gib']} GiB; {m['os']}, "
           f"kernel {m['kernel']}; load average at start {m['loadavg_at_start']}",
           f"- Software: {v['nginx']}, {v['haproxy']}, {v['caddy']}, {v['wrk']}, "
           f"Python {v['python']}; "
           + (f"{v['ferrolb'].replace('ferrolb version: ', '')}, " if "ferrolb" in v else "")
           + f"ferrolb's repository at commit {v.get('ferrolb_commit', '?')}",
           f"- Run: {meta['started_at']} to {meta['finished_at']} ({meta['wall_s']:.0f} s)",
           f"- Command: `{meta['command']}`",
           f"- {p['rounds']} interleaved rounds x {p['duration_s']} s per cell "
           f"(+{p['warmup_s']} s warm-up, a fresh proxy process per cell), wrk "
           f"-t{p['wrk_threads']}, keep-alive; figures are medians over rounds; proxy CPU is "
           "every thread of every process of the proxy, from /proc; `up-conn/1k` is new "
           "upstream connections per 1,000 requests (the backend's accept counter).",
           ""]
    load = m["loadavg_at_start"][0]
    if load > 0.5 * m["cpus"]:
        out += [f"**The machine was busy when the run started (load average {load:.1f} on "
                f"{m['cpus']} cores): other work shared the CPU, the figures are noisy.**", ""]
    if p["quick"] or p["rounds"] < 3:
        out += [f"**A smoke run ({p['rounds']} round{'s' if p['rounds'] > 1 else ''} of "
                f"{p['duration_s']} s cells): it shows "
                "the harness works, its figures are noise. A comparison needs the default "
                "3 rounds (5 to claim a few percent) on a quiet machine.**", ""]
    if meta["interrupted"] or meta["time_limit_hit"]:
        out += ["**Partial results: the run was "
                + ("interrupted" if meta["interrupted"] else "stopped by its time limit")
                + ".**", ""]
    out += [f"![requests/s and p99 per proxy and scenario]({chart_path})", ""]
    for t in tables(doc, columns):
        out += [f"## {t.title}", "", "| " + " | ".join(t.headers) + " |",
                "|" + "|".join("---" for _ in t.headers) + "|"]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in t.rows]
        if t.notes:
            out += [""] + [f"- {note}" for note in t.notes]
        out.append("")
    if doc["failures"]:
        out += ["## Failures", ""] + [f"- round {f['round']} {f['scenario']} {f['column']}: "
                                      f"{f['error'].splitlines()[0]}" for f in doc["failures"]]
        out.append("")
    return "\n".join(out)

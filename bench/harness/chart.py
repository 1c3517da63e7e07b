"""The SVG chart of BENCHMARKS.md, written by hand (no plotting library): grouped bars
of requests/s and of p99 per scenario and proxy, and requests/s at 1 and N threads."""
from __future__ import annotations

import math
from xml.sax.saxutils import escape

from .targets import ALL, Column, Variant

WIDTH = 960
PANEL_H = 300
TOP, BOTTOM, LEFT, RIGHT = 46, 64, 74, 16
COLORS = {"direct": "#9e9e9e", "nginx": "#2e7d32", "haproxy": "#1565c0",
          "caddy": "#00838f", "ferrolb": "#e65100"}


def svg(doc: dict, columns: list[Column]) -> str:
    cells = doc["summary"]["cells"]
    scenarios = [s["name"] for s in doc["meta"]["params"]["scenarios"]]
    one_thread = [c for c in columns if c.variant.workers == 1]
    panels = [
        ("Requests per second (higher is better)", "req/s", scenarios, one_thread, "rps"),
        ("p99 latency, ms (lower is better)", "ms", scenarios, one_thread, "p99_ms"),
    ]
    scaled = [c for c in columns if c.variant.workers != 1]
    if scaled:
        bases = {Column(c.target, Variant()) for c in scaled}
        pair = [c for c in columns if c in bases or c in scaled]
        pair.sort(key=lambda c: (ALL.index(c.target), c.variant.workers))
        panels.append(("Requests per second at 1 and "
                       f"{max(c.variant.workers for c in scaled)} worker threads", "req/s",
                       scenarios, pair, "rps"))
    parts, y = [], 0
    for title, unit, groups, series, metric in panels:
        values = {(g, c.label): (cells.get(g, {}).get(c.label) or {}).get(metric)
                  for g in groups for c in series}
        parts.append(_panel(title, unit, groups, series, values, y))
        y += PANEL_H
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
            f'viewBox="0 0 {WIDTH} {y}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="{WIDTH}" height="{y}" fill="#ffffff"/>\n' + "".join(parts) + "</svg>\n")


def _panel(title: str, unit: str, groups: list[str], series: list[Column],
           values: dict, y0: int) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    top = max([v for v in values.values() if v] or [1.0])
    step = _nice_step(top / 5)
    ymax = step * math.ceil(top / step)
    out = [f'<g transform="translate(0,{y0})">',
           f'<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{escape(title)}</text>']
    for i in range(int(round(ymax / step)) + 1):  # gridlines and y labels
        v = i * step
        yy = TOP + plot_h - plot_h * v / ymax
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="#e0e0e0"/>')
        out.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">'
                   f'{_tick(v)}</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2}" transform="rotate(-90 14 '
               f'{TOP + plot_h / 2})" text-anchor="middle">{escape(unit)}</text>')
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        gx = LEFT + gi * group_w + group_w * 0.1
        for si, col in enumerate(series):
            v = values.get((g, col.label))
            if not v:
                continue
            h = plot_h * v / ymax
            x, yy = gx + si * bar_w, TOP + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{yy:.1f}" width="{bar_w - 1:.1f}" '
                       f'height="{h:.1f}" fill="{COLORS.get(col.target, "#555")}"'
                       f'{_shade(col)}><title>{escape(col.label)} {escape(g)}: '
                       f'{_tick(v)} {escape(unit)}</title></rect>')
        out.append(f'<text x="{LEFT + (gi + 0.5) * group_w:.1f}" y="{TOP + plot_h + 16}" '
                   f'text-anchor="middle">{escape(g)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" '
               f'y2="{TOP + plot_h}" stroke="#333"/>')
    lx = LEFT
    for col in series:  # legend
        out.append(f'<rect x="{lx}" y="{PANEL_H - 30}" width="12" height="12" '
                   f'fill="{COLORS.get(col.target, "#555")}"{_shade(col)}/>')
        out.append(f'<text x="{lx + 16}" y="{PANEL_H - 20}">{escape(col.label)}</text>')
        lx += 24 + 7 * len(col.label)
    out.append("</g>\n")
    return "\n".join(out)


def _shade(col: Column) -> str:
    """Variants in the target's colour, lighter (more threads) or hatched-looking (log)."""
    if col.variant.access_log:
        return ' fill-opacity="0.45" stroke="#333" stroke-dasharray="3 2"'
    if col.variant.workers != 1:
        return ' fill-opacity="0.55"'
    return ""


def _nice_step(raw: float) -> float:
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _tick(v: float) -> str:
    if v == 0:
        return "0"
    if v >= 1000:
        return f"{v / 1000:,.0f}k" if v % 1000 == 0 else f"{v / 1000:,.1f}k"
    return f"{v:g}" if v >= 1 else f"{v:.2f}"

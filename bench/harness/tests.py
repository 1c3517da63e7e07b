"""The harness's own checks, without processes or load: the arithmetic of medians and
ratios, variant configs, and that the reports and the chart are well formed.
Run: PYTHONPATH=bench python3 -m unittest harness.tests   (scripts/test.sh does)."""
from __future__ import annotations

import os
import shutil
import tempfile
import unittest
import xml.etree.ElementTree as ET

from . import chart, report, scenarios, stats
from .net import Ports
from .targets import CONF_DIR, Column, Configs, Variant, column_of, columns, launch


def fake_run(rnd: int, sc: str, col: Column, rps: float, p99: float) -> dict:
    return dict(round=rnd, scenario=sc, column=col.label, target=col.target, rps=rps,
                p50_ms=p99 / 3, p99_ms=p99, p999_ms=p99 * 2, error_total=0,
                proxy_cpu_s=1.0 if col.target != "direct" else None,
                rps_per_proxy_cpu_s=rps * 5 if col.target != "direct" else None,
                proxy_cpu_pct=20.0, wrk_cpu_pct=40.0, backend_cpu_pct=30.0,
                machine_busy_pct=90.0, peak_rss_kb=4096, upstream_new_conns_per_1k=0.5)


def fake_doc(cols: list[Column], scs: list[str], runs: list[dict]) -> dict:
    params = dict(scenarios=[dict(name=s, desc="d", conns=50) for s in scs], rounds=2,
                  duration_s=5, warmup_s=1, wrk_threads=1, quick=False)
    machine = dict(cpus=2, cpu_model="cpu", kernel="k", os="os", mem_gib=1.0,
                   loadavg_at_start=[0, 0, 0])
    vers = dict(nginx="nginx/1", haproxy="HAProxy 2", caddy="caddy not installed", wrk="wrk",
                python="3", ferrolb_commit="abc")
    meta = dict(started_at="t0", finished_at="t1", wall_s=1.0, command="bench/compare.sh",
                machine=machine, versions=vers, params=params, interrupted=False,
                time_limit_hit=False)
    return dict(meta=meta, failures=[],
                summary=dict(cells=stats.cells(runs, scs, cols), idle={}),
                ratios=stats.ratios(runs, scs, cols, 2))


class Arithmetic(unittest.TestCase):
    def test_ratio_is_the_median_over_rounds_of_the_geometric_mean(self):
        cols = columns(["nginx", "ferrolb"], [Variant()])
        nginx, ferrolb = cols
        runs = []
        # round 1: ratios 2 and 0.5 (geomean 1); round 2: 4 and 1 (geomean 2)
        for rnd, (a, b) in ((1, (2, 0.5)), (2, (4, 1))):
            runs += [fake_run(rnd, "s1", nginx, 100, 1), fake_run(rnd, "s1", ferrolb, 100 * a, 1),
                     fake_run(rnd, "s2", nginx, 100, 1), fake_run(rnd, "s2", ferrolb, 100 * b, 1)]
        r = stats.ratios(runs, ["s1", "s2"], cols, 2)["ferrolb/nginx"]
        self.assertAlmostEqual(r["rps_all"], 1.5)
        self.assertAlmostEqual(r["scenarios"]["s1"]["rps"], 3.0)
        self.assertEqual(r["scenarios"]["s1"]["rps_min"], 2.0)

    def test_variants_compare_within_and_against_their_base(self):
        cols = columns(["direct", "nginx", "haproxy", "ferrolb"],
                       [Variant(), Variant(workers=2), Variant(access_log=True)])
        labels = [c.label for c in cols]
        self.assertEqual([column_of(x) for x in labels], cols)
        self.assertNotIn("direct:w2", labels)
        self.assertNotIn("haproxy:log", labels)
        keys = [k for k, _, _ in stats.comparisons(cols)]
        for key in ("ferrolb:w2/nginx:w2", "ferrolb:log/nginx:log", "nginx:w2/nginx",
                    "ferrolb:log/ferrolb", "nginx/direct"):
            self.assertIn(key, keys)
        self.assertNotIn("ferrolb:log/haproxy:log", keys)

    def test_scenarios_parse_and_refuse(self):
        (s,) = scenarios.parse("post16k-c50")
        self.assertEqual((s.method, s.body_bytes, s.conns), ("POST", 16384, 50))
        for bad in ("huge-c50", "small", "small-c0", ""):
            with self.assertRaises(ValueError):
                scenarios.parse(bad)


class Configs_(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        conf = lambda name: os.path.join(CONF_DIR, name)  # noqa: E731
        self.configs = Configs(backend=conf("backend-nginx.conf"),
                               nginx=conf("nginx-proxy.conf"), haproxy=conf("haproxy.cfg"),
                               caddy=conf("Caddyfile"), ferrolb=conf("nginx-proxy.conf"),
                               ferrolb_cmd="ferrolb -c {conf}", ports=Ports())

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def read(self, path):
        with open(path) as f:
            return f.read()

    def test_variant_configs_change_one_line(self):
        how = launch(Column("ferrolb", Variant(workers=2, access_log=True)), self.dir,
                     self.configs)
        text = self.read(os.path.join(self.dir, "proxy.conf"))
        self.assertIn("worker_processes 2;", text)
        self.assertIn(f"access_log {self.dir}/access.log combined;", text)
        self.assertNotIn("    access_log off;", text)
        self.assertIn("\n    access_log /", text)
        self.assertEqual(how.access_log, os.path.join(self.dir, "access.log"))
        launch(Column("haproxy", Variant(workers=2)), self.dir, self.configs)
        self.assertIn("    nbthread 2\n", self.read(os.path.join(self.dir, "haproxy.cfg")))
        self.assertEqual(launch(Column("nginx", Variant()), self.dir, self.configs).argv[4],
                         self.configs.nginx)

    def test_port_base_moves_every_port(self):
        moved = self.configs.for_ports(Ports(28000), self.dir)
        self.assertEqual(Ports(28000).all(), (28000, 28001, 28002, 28003, 28009, 28080))
        for path in (moved.backend, moved.nginx, moved.haproxy, moved.caddy):
            text = self.read(path)
            self.assertNotIn(":180", text, path)
        self.assertIn("127.0.0.1:28080", self.read(moved.nginx))
        self.assertIn("http://:28080", self.read(moved.caddy))


class Outputs(unittest.TestCase):
    def test_reports_and_chart_are_well_formed(self):
        cols = columns(["direct", "nginx", "haproxy", "ferrolb"],
                       [Variant(), Variant(workers=2)])
        runs = [fake_run(r, s, c, 1000 + 10 * i, 2.0) for r in (1, 2)
                for s in ("small-c50", "4k-c50") for i, c in enumerate(cols)]
        doc = fake_doc(cols, ["small-c50", "4k-c50"], runs)
        text = report.text(doc, cols)
        self.assertIn("scaling: 1 and 2 worker threads", text)
        self.assertTrue(text.rstrip().endswith("(median over rounds)"))
        md = report.markdown(doc, cols, "chart.svg")
        self.assertIn("![requests/s and p99 per proxy and scenario](chart.svg)", md)
        self.assertIn("| ferrolb:w2 |", md)
        root = ET.fromstring(chart.svg(doc, cols))
        bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect")
                if e.find("{http://www.w3.org/2000/svg}title") is not None]
        # requests/s and p99: 4 one-thread columns x 2 scenarios each; 1 and 2 threads:
        # nginx, haproxy and ferrolb at both counts x 2 scenarios
        self.assertEqual(len(bars), 8 + 8 + 12)


if __name__ == "__main__":
    unittest.main()

"""ferrolb's side-by-side benchmark harness (run through bench/compare.sh).

Python 3.9+, standard library only. Modules, bottom to top:
procs (processes and /proc) · net (loopback HTTP probes) · scenarios · targets
(proxies, their configs and variants) · load (wrk) · idle (idle-connection memory) ·
runner (rounds and cells) · stats · machine · report (text, Markdown) · chart (SVG) · cli.
"""

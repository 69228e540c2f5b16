#!/usr/bin/env python3
"""Data check at scale vs the Arrow JSON parser: seconds side by side, and peak memory for N vs 2N rows (issue 20).

Writes an alpaca JSON-lines file of ``--rows`` rows (default 1,000,000; 0.1 % invalid, some duplicates, as
bench/data_check.py writes it) and one of twice as many, then measures each in a fresh process:

* **pyarrow.json.read_json** — the whole file parsed into one Arrow table (the floor: parsing only);
* **check** — ``engine.data.check.check`` (``finetui data check``): Arrow blocks validated on columns, the rows
  that fail read again one by one for their file:line and reason;
* **check ×2** — the same on the file of 2N rows: bounded memory means nearly the same peak (the only state that
  grows is 8 bytes per row of duplicate hashes).

Peak RSS is ``getrusage``'s, minus the process's RSS after its imports (pyarrow, the engine).

    python bench/data_scale.py                 # 1,000,000 and 2,000,000 rows
    python bench/data_scale.py --smoke         # tiny sizes: the script runs; its figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_check import run_child, write_file  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import pyarrow.json, pyarrow.compute
from engine.data.check import check
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
base = rss_kib()
t = time.perf_counter()
if {mode!r} == "arrow":
    rows = pyarrow.json.read_json({path!r}).num_rows; extra = {{}}
else:
    rep = check({path!r}, "alpaca", stage="sft", allow_invalid=1.0)
    rows = rep["rows"]["total"]
    extra = {{"valid": rep["rows"]["valid"], "invalid": rep["rows"]["invalid"], "duplicates": rep["duplicates"]}}
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rows": rows, "seconds": dt, "peak_kib": peak, "base_kib": base, **extra}}))
"""


def run(mode: str, path: Path) -> dict:
    return run_child(CHILD.format(root=str(ROOT), mode=mode, path=str(path)), mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (tests/test_bench_smoke.py); figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.rows = 2000
    with tempfile.TemporaryDirectory(prefix="finetui-bench-scale-") as td:
        one, two = Path(td) / "n.jsonl", Path(td) / "2n.jsonl"
        t = time.perf_counter()
        write_file(one, args.rows)
        write_file(two, 2 * args.rows, seed=1)
        gen = time.perf_counter() - t
        size_mb = one.stat().st_size / 2**20
        results = {"pyarrow.json.read_json": run("arrow", one), "check": run("check", one),
                   "check ×2": run("check", two)}
    if args.json:
        print(json.dumps({"rows": args.rows, "file_mb": size_mb, "results": results}, indent=2))
        return
    print(f"# data check at scale — {args.rows:,} alpaca rows, {size_mb:.0f} MB jsonl (files written in {gen:.1f} s); "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print()
    print("| run | rows | seconds | rows/s | peak RSS (MiB) | peak above imports (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']:,} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{r['peak_kib'] / 1024:.0f} | {(r['peak_kib'] - r['base_kib']) / 1024:.0f} |")
    a, c, c2 = results["pyarrow.json.read_json"], results["check"], results["check ×2"]
    above = [(r["peak_kib"] - r["base_kib"]) / 1024 for r in (c, c2)]
    print()
    print(f"ratio check ÷ pyarrow.json.read_json: {c['seconds'] / a['seconds']:.2f}× (target ≤ 2×)")
    print(f"check: {c['valid']:,} valid, {c['invalid']:,} invalid, {c['duplicates']:,} duplicates; peak above imports "
          f"{above[0]:.0f} MiB for {args.rows:,} rows, {above[1]:.0f} MiB for {2 * args.rows:,} rows")


if __name__ == "__main__":
    main()

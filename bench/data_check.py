#!/usr/bin/env python3
"""Data check on a large JSON-lines file: rows/s and peak memory (issue 8, benchmark 5).

Writes an alpaca file of ``--rows`` rows (default 1,000,000; 0.1 % invalid, some duplicates)
and a tenth-size copy, then measures side by side, each in a fresh process (peak RSS from
``getrusage``, minus the process's RSS after imports):

* **check** — ``engine.data.check.check`` (what ``finetui data check`` runs): streams the file,
  keeps a bounded reservoir sample, 8 bytes per row for duplicates, the first invalid rows;
* **check ÷10** — the same on the tenth-size file: bounded memory means nearly the same peak;
* **load_rows** — the training loader, which keeps every canonical row (the contrast).

    python bench/data_check.py                      # 1,000,000 rows
    python bench/data_check.py --rows 200000 --tokenizer finetui:tiny-llama
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORDS = ("apple banana cherry forest river mountain engine piano tiger stone castle kitten harbor "
         "island candle violet jungle mirror anchor falcon shadow basket").split()

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from engine.data.check import check
from engine.data import load_rows
from engine.schema import JobConfig
tok = None
if {tokenizer!r}:
    from engine.data.tokenize import load_tokenizer
    tok = load_tokenizer({tokenizer!r}); tok.model_max_length = int(1e9)
def rss_kib():
    # current RSS (not peak) in KiB
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
base = rss_kib()
t = time.perf_counter()
if {mode!r} == "check":
    rep = check({path!r}, "alpaca", stage="sft", tokenizer=tok, max_length=64, allow_invalid=1.0)
    rows = rep["rows"]["total"]; extra = {{"valid": rep["rows"]["valid"], "invalid": rep["rows"]["invalid"],
        "duplicates": rep["duplicates"], "ok": rep["ok"], "tokens": rep["tokens"]}}
else:
    res = JobConfig().resolved(); res.update({{"data.train_path": {path!r}, "data.format": "alpaca",
        "data.allow_percentage_invalid_samples": 1.0}})
    d = load_rows(res); rows = len(d.train) + d.dropped; extra = {{"valid": len(d.train)}}
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rows": rows, "seconds": dt, "peak_kib": peak, "base_kib": base, **extra}}))
"""


def write_file(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            r = rng.random()
            if r < 0.001:
                f.write(json.dumps({"instruction": "no output here", "input": ""}) + "\n")
                continue
            w = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
            kind = rng.randint(0, 2)
            if kind == 0:
                row = {"instruction": "Reverse the words.", "input": w, "output": " ".join(w.split()[::-1])}
            elif kind == 1:
                row = {"instruction": "Uppercase the text.", "input": w, "output": w.upper()}
            else:
                a, b = rng.randint(0, 99), rng.randint(0, 99)
                row = {"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b)}
            f.write(json.dumps(row) + "\n")


def run_child(code: str, label: str) -> dict:
    """Run ``code`` in a fresh Python; → the JSON object its last line prints."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{label} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(mode: str, path: Path, tokenizer: str | None) -> dict:
    return run_child(CHILD.format(root=str(ROOT), mode=mode, path=str(path), tokenizer=tokenizer or ""), mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tokenizer", default=None, help="also measure token lengths (sampled) with this tokenizer")
    ap.add_argument("--no-load", action="store_true", help="skip the load_rows contrast")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.rows = 2000

    with tempfile.TemporaryDirectory(prefix="finetui-bench-data-") as td:
        big, small = Path(td) / "big.jsonl", Path(td) / "small.jsonl"
        t = time.perf_counter()
        write_file(big, args.rows)
        write_file(small, max(1, args.rows // 10))
        gen = time.perf_counter() - t
        size_mb = big.stat().st_size / 2**20
        results = {"check": run("check", big, args.tokenizer),
                   "check ÷10": run("check", small, args.tokenizer)}
        if not args.no_load:
            results["load_rows"] = run("load", big, None)

    if args.json:
        print(json.dumps({"rows": args.rows, "file_mb": size_mb, "results": results}, indent=2))
        return
    print(f"# data check benchmark — {args.rows:,} alpaca rows, {size_mb:.0f} MB jsonl "
          f"(written in {gen:.1f} s); {platform.python_version()}, {os.cpu_count()} CPUs"
          + (f"; tokenizer {args.tokenizer}" if args.tokenizer else ""))
    print()
    print("| run | rows | seconds | rows/s | peak RSS (MiB) | peak above imports (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{r['peak_kib'] / 1024:.0f} | {(r['peak_kib'] - r['base_kib']) / 1024:.0f} |")
    c, s = results["check"], results["check ÷10"]
    grow = (c["peak_kib"] - c["base_kib"]) / max(1, s["peak_kib"] - s["base_kib"])
    print()
    print(f"check: {c['valid']:,} valid, {c['invalid']:,} invalid, {c['duplicates']:,} duplicates; "
          f"memory above imports grows {grow:.1f}× for 10× the rows (8 bytes/row of hashes)")
    if "load_rows" in results:
        l_ = results["load_rows"]
        print(f"load_rows (keeps every row) peaks at {(l_['peak_kib'] - l_['base_kib']) / 1024:.0f} MiB above "
              f"imports: {(l_['peak_kib'] - l_['base_kib']) / max(1, c['peak_kib'] - c['base_kib']):.0f}× the check")


if __name__ == "__main__":
    main()

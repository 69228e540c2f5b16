#!/usr/bin/env python3
"""Data check at scale vs the Arrow JSON parser: seconds side by side, and peak memory for N vs 2N rows (issue 20).

Writes an alpaca JSON-lines file of ``--rows`` rows (default 1,000,000; 0.1 % invalid, some duplicates, as
bench/data_check.py writes it) and one of twice as many, then measures each in a fresh process:

* **pyarrow.json.read_json** — the whole file parsed into one Arrow table (the floor: parsing only);
* **check** — ``engine.data.check.check`` (``finetui data check``): Arrow blocks validated on columns, the rows
  that fail read again one by one for their file:line and reason; byte scans and row hashes by the C library where
  it is built (``FINETUI_FASTSCAN=0``: numpy's — the output says which);
* **check ×2** — the same on the file of 2N rows: bounded memory means nearly the same peak (the only state that
  grows is 8 bytes per row of duplicate hashes).

Peak RSS is ``getrusage``'s, minus the process's RSS after its imports (pyarrow, the engine). The ratio is also
given warm: both in one process, the calls after each one's first (a process's first call of either pays for
the memory it maps and the threads it starts). Both run with ``OPENBLAS_NUM_THREADS=1``, as ``finetui data check``
sets it for itself: numpy's OpenBLAS threads otherwise spin for ~0.1 s of CPU after the import, taken from whichever
measurement runs then (the parser's time varied 0.25–0.40 s with them, 0.25–0.29 without).

``--prepare`` measures the training worker's data path instead, on corpus (pre-training) JSON-lines files of
``--sizes`` rows (about 120 bytes a row), each in a fresh process:

* **prepare** — what a rank does before its first step: ``stream_rows`` (count and hash the rows, keeping none),
  then ``tokcache.tokenized`` (read them again, tokenize in ``FINETUI_TOKENIZE_WORKERS`` processes, default the
  cores up to 8, append each chunk to the Arrow cache, memory-map it); peak RSS of the process and of its
  tokenizing children;
* **prepare again** — the second launch: counted and hashed, the cache found and mapped;
* **datasets.map** — the plain way, for the tokenization's speed: ``load_dataset("json")`` then
  ``map(batched=True, num_proc=2)`` with the same tokenizer (text + EOS, cut to the same length).

``--train`` starts the real thing: ``finetui train`` of a pre-training job on the tiny model, 2 CPU ranks, 2 steps,
launched twice, per size; per rank the peak RSS (``VmHWM``: with the mapped cache's pages), the peak heap
(``RssAnon``, sampled) and the time to the first step.

    python bench/data_scale.py                 # 1,000,000 and 2,000,000 rows
    python bench/data_scale.py --prepare --sizes 100000,300000,1000000
    python bench/data_scale.py --train --sizes 100000,1000000
    python bench/data_scale.py --smoke         # tiny sizes: the script runs; its figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_check import run_child, write_file  # noqa: E402

#: the child's resident memory now (its imports' baseline)
RSS = '''def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
'''

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import pyarrow.json, pyarrow.compute
from engine.data.check import check
{rss}base = rss_kib()
t = time.perf_counter()
if {mode!r} == "arrow":
    rows = pyarrow.json.read_json({path!r}).num_rows; extra = {{}}
else:
    rep = check({path!r}, "alpaca", stage="sft", allow_invalid=1.0)
    rows = rep["rows"]["total"]
    from engine.data import arrowscan
    extra = {{"valid": rep["rows"]["valid"], "invalid": rep["rows"]["invalid"], "duplicates": rep["duplicates"],
             "c_scans": arrowscan._fast() is not None}}
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rows": rows, "seconds": dt, "peak_kib": peak, "base_kib": base, **extra}}))
"""


def run(mode: str, path: Path) -> dict:
    return run_child(CHILD.format(root=str(ROOT), mode=mode, path=str(path), rss=RSS), mode)


#: both in one process, each called once first (its first call pays for the memory it maps, the threads it
#: starts), then alternated: the ratios of the later calls
WARM = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import pyarrow.json, pyarrow.compute
from engine.data.check import check
arrow = lambda: pyarrow.json.read_json({path!r})
chk = lambda: check({path!r}, "alpaca", stage="sft", allow_invalid=1.0)
arrow(); chk()
ratios = []
for r in range({rounds}):
    t = {{}}
    for name, f in ((("arrow", arrow), ("check", chk)) if r % 2 == 0 else (("check", chk), ("arrow", arrow))):
        t0 = time.perf_counter(); f(); t[name] = time.perf_counter() - t0
    ratios.append(t["check"] / t["arrow"])
print(json.dumps({{"ratios": sorted(ratios)}}))
"""


def run_warm(path: Path, rounds: int) -> list[float]:
    return run_child(WARM.format(root=str(ROOT), path=str(path), rounds=rounds), "warm")["ratios"]


PREPARE = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import datasets, pyarrow, pyarrow.compute as pc
from engine.data import stream_rows, tokcache
from engine.data.tokenize import load_tokenizer
from engine.train.trainers import tokenize_lm, pc_sum
tok = load_tokenizer("finetui:tiny-llama")
{rss}base = rss_kib()
import threading
def rss_anon():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("RssAnon:"))
anon_base, anon, stop = rss_anon(), [0], []
def sample():  # peak anonymous memory (the heap: not the page cache of files read or mapped)
    while not stop:
        anon[0] = max(anon[0], rss_anon()); time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
if {mode!r} == "map":
    from datasets import load_dataset
    d = load_dataset("json", data_files={path!r}, split="train", cache_dir={work!r})
    t_read = time.perf_counter() - t
    eos = tok.eos_token_id
    def f(b):
        ids = tok(b["text"], add_special_tokens=True)["input_ids"]
        return {{"input_ids": [(x if x[-1:] == [eos] else x + [eos])[:{max_len}] for x in ids]}}
    d = d.map(f, batched=True, num_proc=2, remove_columns=["text"])
    extra = {{"read_s": t_read}}
else:
    os.environ["FINETUI_CACHE_DIR"] = {work!r}
    said = []
    rows_in = stream_rows({{"data.train_path": {path!r}, "data.format": "corpus", "trainer.stage": "pretrain"}}).train
    t_count = time.perf_counter() - t
    ds, _ = tokcache.tokenized(tok, rows_in, "pretrain", {max_len}, tokenize_lm,
                               lambda p, text, **kw: said.append(kw.get("cache")))
    extra = {{"read_s": t_count, "cache": [c for c in said if c][0], "workers": tokcache.workers()}}
dt = time.perf_counter() - t
# (before the tokens are counted: counting reads every page of the mapped file, which RSS would then include)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
stop.append(1)
rows, tokens = (len(d), sum(pc_sum(d, "input_ids"))) if {mode!r} == "map" else (len(ds), sum(pc_sum(ds, "input_ids")))
print(json.dumps({{"rows": rows, "tokens": tokens, "seconds": dt, "peak_kib": peak, "base_kib": base,
                  "anon_peak_kib": anon[0], "anon_base_kib": anon_base, "children_peak_kib": kids, **extra}}))
"""


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    """``n`` rows of corpus JSON lines, about 120 bytes each (4 to 20 words of text)."""
    import random

    from data_check import WORDS

    words = WORDS.split() if isinstance(WORDS, str) else list(WORDS)
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"{i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))})
                    + "\n")


def per_size(sizes: list[int], td: Path, measure: Any) -> list[dict]:
    """``measure(path, n, row)`` on a corpus file of each size (written, then removed)."""
    out = []
    for n in sizes:
        path = td / f"corpus-{n}.jsonl"
        write_corpus(path, n)
        row = {"rows_in": n, "file_mb": path.stat().st_size / 2**20}
        measure(path, n, row)
        out.append(row)
        path.unlink()
    return out


def prepare(sizes: list[int], td: Path, max_len: int = 256) -> list[dict]:
    def measure(path: Path, n: int, row: dict) -> None:
        for mode in ("prepare", "prepare again", "map"):
            code = PREPARE.format(root=str(ROOT), mode=mode, path=str(path), work=str(td / f"work-{n}"),
                                  max_len=max_len, rss=RSS)
            row[mode] = run_child(code, f"{mode} {n}")

    return per_size(sizes, td, measure)


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _watch(run_dir: Path, stop: list) -> dict[int, dict]:
    """Sample every process of the run (its ranks and their tokenizing children): peak RSS and parent."""
    seen: dict[int, dict] = {}
    needle = f"--run-dir {run_dir}".encode()
    while not stop:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
                if b"engine.train.worker" not in cmd or needle not in cmd or b"torch.distributed.run" in cmd \
                        or b"deepspeed.launcher" in cmd:  # (the launcher itself names the worker too)
                    continue
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            hwm, anon = _status_kib(int(d.name), "VmHWM"), _status_kib(int(d.name), "RssAnon")
            if hwm:
                rec = seen.setdefault(int(d.name), {"ppid": ppid, "hwm_kib": 0, "anon_kib": 0})
                rec["hwm_kib"] = max(rec["hwm_kib"], hwm)
                rec["anon_kib"] = max(rec["anon_kib"], anon or 0)
        time.sleep(0.3)
    return seen


def train_launch(path: Path, run_dir: Path, cache: Path, procs: int = 2) -> dict:
    import subprocess
    import threading

    preset = run_dir.parent / f"{run_dir.name}.toml"
    preset.write_text(f"""name = "data scale"
profile = "native"
[model]
name_or_path = "finetui:tiny-llama"
[data]
train_path = "{path}"
format = "corpus"
[trainer]
stage = "pretrain"
training_type = "full"
distributed_backend = "ddp"
[general]
batch_size = 4
max_steps = 2
learning_rate = 0.001
max_sequence_length = 128
[runtime]
mixed_precision = "none"
[eval]
logging_steps = 1
checkpoint_strategy = "no"
[launch]
device = "cpu"
procs_per_node = {procs}
""")
    stop: list = []
    box: dict = {}
    th = threading.Thread(target=lambda: box.update(_watch(run_dir, stop)), daemon=True)
    th.start()
    t0 = time.time()
    env = dict(os.environ, FINETUI_CACHE_DIR=str(cache))
    p = subprocess.run([sys.executable, "-m", "tui.cli", "train", str(preset), "--run-dir", str(run_dir)],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    stop.append(1)
    th.join()
    if p.returncode != 0:
        raise SystemExit(f"train {run_dir.name} failed:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    ev = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    first = min(e["t"] for e in ev if e["kind"] == "log" and e.get("loss") is not None)
    cache_said = [e.get("cache") for e in ev if e["kind"] == "status" and e.get("cache")]
    ranks = [r for pid, r in box.items() if r["ppid"] not in box]
    kids = [r for pid, r in box.items() if r["ppid"] in box]
    return {"first_step_s": first - t0, "cache": cache_said[0] if cache_said else "?",
            "rank_peak_mib": [round(r["hwm_kib"] / 1024) for r in ranks],
            "rank_heap_mib": [round(r["anon_kib"] / 1024) for r in ranks],
            "tokenizer_children_peak_mib": max((r["hwm_kib"] for r in kids), default=0) / 1024}


def train(sizes: list[int], td: Path) -> list[dict]:
    def measure(path: Path, n: int, row: dict) -> None:
        for i, name in enumerate(("first launch", "second launch")):
            row[name] = train_launch(path, td / f"run-{n}-{i}", td / f"cache-{n}")

    return per_size(sizes, td, measure)


def report_prepare(res: list[dict]) -> None:
    print("| rows | file (MB) | prepare: s (count + tokenize) | rows/s | peak RSS above imports (MiB) | peak heap "
          "above imports (MiB) | tokenizing children peak RSS (MiB) | prepare again: s | datasets.map: s (read + map) "
          "| map rows/s | prepare ÷ map |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res:
        a, b, m = r["prepare"], r["prepare again"], r["map"]
        print(f"| {r['rows_in']:,} | {r['file_mb']:.0f} | {a['seconds']:.1f} ({a['read_s']:.1f} + "
              f"{a['seconds'] - a['read_s']:.1f}) | {a['rows'] / a['seconds']:,.0f} | "
              f"{(a['peak_kib'] - a['base_kib']) / 1024:.0f} | {(a['anon_peak_kib'] - a['anon_base_kib']) / 1024:.0f} | "
              f"{a['children_peak_kib'] / 1024:.0f} | "
              f"{b['seconds']:.1f} ({b['cache']}) | {m['seconds']:.1f} ({m['read_s']:.1f} + "
              f"{m['seconds'] - m['read_s']:.1f}) | {m['rows'] / m['seconds']:,.0f} | "
              f"{a['seconds'] / m['seconds']:.2f}× |")
    print()
    print(f"tokenizing workers: {res[0]['prepare']['workers']}; tokens equal to datasets.map's: "
          f"{all(r['prepare']['tokens'] == r['map']['tokens'] for r in res)}")


def report_train(res: list[dict]) -> None:
    print("| rows | file (MB) | launch | cache | time to first step (s) | peak RSS per rank (MiB) | peak heap per rank "
          "(MiB) | tokenizing children peak (MiB) |")
    print("|---:|---:|---|---|---:|---|---|---:|")
    for r in res:
        for name in ("first launch", "second launch"):
            x = r[name]
            print(f"| {r['rows_in']:,} | {r['file_mb']:.0f} | {name} | {x['cache']} | {x['first_step_s']:.1f} | "
                  f"{', '.join(map(str, sorted(x['rank_peak_mib'])))} | "
                  f"{', '.join(map(str, sorted(x['rank_heap_mib'])))} | {x['tokenizer_children_peak_mib']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds of the check vs the parser")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (tests/test_bench_smoke.py); figures mean nothing")
    ap.add_argument("--prepare", action="store_true", help="the training worker's data path instead of the check")
    ap.add_argument("--train", action="store_true", help="real launches (2 CPU ranks) instead of the check")
    ap.add_argument("--sizes", default="100000,300000,1000000", help="corpus rows for --prepare / --train")
    args = ap.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # (the children's: see the docstring)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if args.smoke:
        args.rows, args.rounds = 2000, 1
        sizes = [2000]
    if args.prepare or args.train or args.smoke:
        with tempfile.TemporaryDirectory(prefix="finetui-bench-prepare-") as td:
            if args.prepare or args.smoke:
                res = prepare(sizes, Path(td))
                if args.json:
                    print(json.dumps(res, indent=2))
                else:
                    print(f"# training data path at scale — corpus rows, tiny-llama tokenizer; Python "
                          f"{platform.python_version()}, {os.cpu_count()} CPUs")
                    print()
                    report_prepare(res)
                    print()
            if args.train:
                res = train(sizes, Path(td))
                print(json.dumps(res, indent=2) if args.json else "")
                if not args.json:
                    report_train(res)
        if not args.smoke:
            return
    with tempfile.TemporaryDirectory(prefix="finetui-bench-scale-") as td:
        one, two = Path(td) / "n.jsonl", Path(td) / "2n.jsonl"
        t = time.perf_counter()
        write_file(one, args.rows)
        write_file(two, 2 * args.rows, seed=1)
        gen = time.perf_counter() - t
        size_mb = one.stat().st_size / 2**20
        # rounds alternate the two sides on the 1N file (A B, B A, …): the ratio is the median of each round's
        rounds = []
        for r in range(max(1, args.rounds)):
            pair = {}
            for mode in (("arrow", "check") if r % 2 == 0 else ("check", "arrow")):
                pair[mode] = run(mode, one)
            rounds.append(pair)
        med = lambda mode: sorted(rounds, key=lambda x: x[mode]["seconds"])[len(rounds) // 2][mode]  # noqa: E731
        results = {"pyarrow.json.read_json": med("arrow"), "check": med("check"), "check ×2": run("check", two)}
        ratios = sorted(x["check"]["seconds"] / x["arrow"]["seconds"] for x in rounds)
        warm = run_warm(one, max(1, args.rounds))
    if args.json:
        print(json.dumps({"rows": args.rows, "file_mb": size_mb, "results": results, "ratios": ratios,
                          "warm_ratios": warm}, indent=2))
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
    print(f"ratio check ÷ pyarrow.json.read_json: {statistics.median(ratios):.2f}× (median of {len(ratios)} rounds: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}; target ≤ 2×) — each in a fresh process, as `finetui data check` "
          f"runs")
    print(f"the same, warm in one process (the calls after each one's first): {statistics.median(warm):.2f}× "
          f"(median of {len(warm)}: {', '.join(f'{x:.2f}' for x in warm)})")
    print(f"check: {c['valid']:,} valid, {c['invalid']:,} invalid, {c['duplicates']:,} duplicates; peak above imports "
          f"{above[0]:.0f} MiB for {args.rows:,} rows, {above[1]:.0f} MiB for {2 * args.rows:,} rows; byte scans and "
          f"row hashes by {'the C library' if c.get('c_scans') else 'numpy (no C library)'}")


if __name__ == "__main__":
    main()

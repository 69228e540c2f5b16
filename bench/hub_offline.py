"""Loading a cached Hub model where the Hub cannot be reached: finetui (one probe, then offline mode) vs
plain transformers (which asks the Hub about every file, with retries, before it uses the cache).

A Hugging Face cache folder holds the tiny model under a Hub name; ``HF_ENDPOINT`` points at a closed
port on 127.0.0.1 (refused at once: the friendliest unreachable Hub there is — a firewall that drops
packets makes every try wait for its connect timeout on top).  Each side, in its own fresh process,
loads what a training run loads first — the config, the tokenizer and the model, with
``from_pretrained`` — and the script prints both times and their ratio, side by side in one run.

    python bench/hub_offline.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "acme/tiny-bench"

CHILD = """
import json, sys, time
t0 = time.perf_counter()
if sys.argv[1] == "finetui":
    from engine.hub import offline_if_unreachable
    offline_if_unreachable({name!r})
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
AutoConfig.from_pretrained({name!r})
AutoTokenizer.from_pretrained({name!r})
AutoModelForCausalLM.from_pretrained({name!r})
print(json.dumps({{"seconds": time.perf_counter() - t0}}))
"""


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    a = ap.parse_args()
    # smoke: one round of finetui's side only (the plain side spends minutes in the Hub's retries)
    sides = ("finetui",) if a.smoke else ("finetui", "plain")
    from engine.tiny import ensure_tiny_model

    tiny = ensure_tiny_model()
    with tempfile.TemporaryDirectory(prefix="finetui-hub-") as tmp:
        repo = Path(tmp) / "hub" / ("models--" + NAME.replace("/", "--"))
        snap = repo / "snapshots" / ("0" * 40)
        shutil.copytree(tiny, snap)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(snap.name)
        env = {k: v for k, v in os.environ.items()
               if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                            "all_proxy")}
        env.update(HF_HOME=tmp, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", PYTHONPATH=str(ROOT),
                   TOKENIZERS_PARALLELISM="false")
        times: dict[str, list[float]] = {"finetui": [], "plain": []}
        for _ in range(a.rounds):
            for side in sides:
                t = time.perf_counter()
                p = subprocess.run([sys.executable, "-c", CHILD.format(name=NAME), side], env=env, cwd=tmp,
                                   capture_output=True, text=True, timeout=1800)
                if p.returncode != 0:
                    print(f"{side}: failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
                    return 1
                times[side].append(time.perf_counter() - t)  # the whole process: imports included
                json.loads(p.stdout.strip().splitlines()[-1])
    f = statistics.median(times["finetui"])
    print("| load a cached Hub model, Hub unreachable (config + tokenizer + model, a fresh process) | seconds |")
    print("|---|---:|")
    print(f"| finetui (probe, then offline mode) | {f:.1f} |")
    if a.smoke:
        return 0
    pl = statistics.median(times["plain"])
    print(f"| plain transformers (asks the Hub first, with retries) | {pl:.1f} |")
    print(f"\nplain ÷ finetui: {pl / f:.1f}× ({a.rounds} round{'s' if a.rounds > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

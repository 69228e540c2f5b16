#!/usr/bin/env python3
"""Engine overhead: ``finetui train`` vs a minimal plain TRL script, tokens/s side by side.

Both train the same random-initialised Llama (built once here, saved with ``save_pretrained``,
the tiny model's tokenizer) on the same synthetic alpaca file (a realistic mix of row lengths)
with the same settings (full fine-tuning, batch, learning rate, max length, steps, fp32 on CPU,
no gradient checkpointing, sdpa, assistant-only loss, ``adamw_torch``, no TensorBoard unless
``--tensorboard``, one process each). The
two sides run alternately, A B A B …, so both see the same machine load.

Throughput is measured the same way on both sides, two ways (neither includes process
start-up, imports, model loading or tokenization):

* per logged step (logging every step): tokens ÷ seconds of each step, read from finetui's
  ``log`` events and from a measurement-only callback in the plain script computing the same;
  the median over all steps of all rounds (each run's first, warm-up, step dropped) — robust
  to bursts of load from other processes, the headline ratio;
* the trainer's own final metrics, ``num_input_tokens_seen ÷ train_runtime``, per round.

The end-to-end wall time of each command (process start to exit, including finetui's detached
launch, data check, tokenization and saving) is printed next to it. Target: finetui ÷ plain
≥ 0.97 for the training loop.

    python bench/engine_overhead.py                  # 4 rounds of 15 steps
    python bench/engine_overhead.py --rounds 5 --max-steps 60 --batch 8
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

MODEL = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4,
         "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 1024,
         "tie_word_embeddings": True}


def build_model(out: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from engine.tiny import ensure_tiny_model

    d = {k: v for k, v in MODEL.items() if k != "model_type"}
    cfg = AutoConfig.for_model(MODEL["model_type"], **d, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    m.save_pretrained(out)
    AutoTokenizer.from_pretrained(ensure_tiny_model()).save_pretrained(out)
    return sum(p.numel() for p in m.parameters())


def make_data(path: Path, rows: int, seed: int = 0) -> None:
    """Alpaca rows whose lengths follow a log-normal mix (median ≈ 12 words in, 20 out: about 120 tokens)."""
    words = re.findall(r"[A-Za-z]+", (ROOT / "engine/assets/samples/alpaca_demo.jsonl").read_text()) or ["word"]
    rng = random.Random(seed)

    def text(median: float) -> str:
        n = max(2, min(150, int(rng.lognormvariate(math.log(median), 0.7))))
        return " ".join(rng.choice(words) for _ in range(n))

    with path.open("w") as fh:
        for _ in range(rows):
            fh.write(json.dumps({"instruction": text(8), "input": text(5) if rng.random() < 0.5 else "",
                                 "output": text(20)}) + "\n")


PRESET = """\
name = "bench: engine overhead"
profile = "native"
[model]
name_or_path = "{model}"
[data]
train_path = "{data}"
format = "alpaca"
val_size = 0.0
packing = {packing}
[trainer]
stage = "sft"
training_type = "full"
distributed_backend = "ddp"
[general]
batch_size = {batch}
max_steps = {steps}
learning_rate = {lr}
max_sequence_length = {max_len}
[runtime]
mixed_precision = "none"
gradient_checkpointing = false
attention_implementation = "sdpa"
lr_warmup_steps = 0
lr_scheduler = "linear"
seed = 0
[eval]
evaluation_strategy = "no"
checkpoint_strategy = "no"
logging_steps = {log}
[launch]
device = "cpu"
procs_per_node = 1
[tracking]
tensorboard = {tensorboard}
"""


def _metrics_from_log(text: str) -> dict:
    """The trainer's final summary line ({'train_runtime': ..., 'num_input_tokens_seen': ...})."""
    for line in reversed(text.splitlines()):
        i = line.find("{'train_runtime'")
        if i >= 0:
            d = ast.literal_eval(line[i:line.rindex("}") + 1])
            return {k: float(v) for k, v in d.items()}
    raise RuntimeError("no train_runtime summary in worker.log")


def run_finetui(preset: Path, run_dir: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([PY, "-m", "tui.cli", "train", str(preset), "--run-dir", str(run_dir)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        log = (run_dir / "worker.log").read_text() if (run_dir / "worker.log").exists() else ""
        raise RuntimeError(f"finetui train failed ({p.returncode}): {p.stderr[-2000:]}\n{log[-3000:]}")
    m = _metrics_from_log((run_dir / "worker.log").read_text())
    ev = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    steps = max(e.get("step", 0) for e in ev)
    tps = [float(e["tokens_per_s"]) for e in ev if e.get("kind") == "log" and e.get("tokens_per_s")]
    return {"tokens": m["num_input_tokens_seen"], "runtime": m["train_runtime"], "wall": wall, "steps": steps,
            "interval_tps": tps}


def free_port() -> int:
    from engine.train.command import free_port as fp

    return fp()


def run_plain(model: Path, data: Path, out: Path, a, env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([PY, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--nnodes", "1",
                        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(ROOT / "bench/plain_trl.py"), "--model", str(model),
                        "--data", str(data), "--out", str(out), "--batch", str(a.batch), "--max-steps",
                        str(a.max_steps), "--max-len", str(a.max_len), "--lr", str(a.lr), "--logging-steps",
                        str(a.logging_steps)], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in p.stdout.splitlines() if x.startswith("PLAIN_METRICS ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"plain TRL script failed ({p.returncode}): {p.stderr[-3000:]}")
    m = json.loads(line.split(" ", 1)[1])
    return {"tokens": float(m["num_input_tokens_seen"]), "runtime": float(m["train_runtime"]), "wall": wall,
            "steps": int(m["global_step"]), "interval_tps": [float(x) for x in m["interval_tokens_per_s"]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--logging-steps", type=int, default=1)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--tensorboard", action="store_true",
                    help="keep finetui's TensorBoard logging on (the plain script reports to nothing)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    a = ap.parse_args()
    if a.smoke:
        a.rounds, a.max_steps, a.max_len, a.rows = 1, 2, 64, 32
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    res: dict[str, list[dict]] = {"finetui": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="finetui-bench-ovh-") as tmp:
        t = Path(tmp)
        env["FINETUI_STATE_DIR"] = str(t / "state")
        n_params = build_model(t / "model")
        make_data(t / "data.jsonl", a.rows)
        preset = t / "bench.toml"
        preset.write_text(PRESET.format(model=t / "model", data=t / "data.jsonl", batch=a.batch, steps=a.max_steps,
                                        lr=a.lr, max_len=a.max_len, log=a.logging_steps,
                                        tensorboard="true" if a.tensorboard else "false",
                                        packing="false"))  # the plain script pads, as TRL does by default
        for r in range(a.rounds):
            order = ("finetui", "plain") if r % 2 == 0 else ("plain", "finetui")  # alternate who goes first
            for side in order:
                if side == "finetui":
                    x = run_finetui(preset, t / f"run-{r}", env)
                else:
                    x = run_plain(t / "model", t / "data.jsonl", t / f"plain-{r}", a, env)
                x["tps"] = x["tokens"] / x["runtime"]
                res[side].append(x)
                print(f"  round {r + 1} {side:<8} {x['tps']:9.0f} tokens/s  (train_runtime {x['runtime']:.1f} s, "
                      f"{x['tokens']:.0f} tokens, {x['steps']} steps; end to end {x['wall']:.1f} s)", flush=True)
    ratios = [f["tps"] / p["tps"] for f, p in zip(res["finetui"], res["plain"])]
    med = {s: statistics.median(x["tps"] for x in v) for s, v in res.items()}
    # per logging interval, the first (warm-up) interval of each run dropped: robust to bursts of load
    steps = {s: [t for x in v for t in x["interval_tps"][1:]] for s, v in res.items()}
    step_med = {s: statistics.median(v) if v else float("nan") for s, v in steps.items()}
    wall = {s: statistics.median(x["wall"] for x in v) for s, v in res.items()}
    tok_eq = res["finetui"][0]["tokens"] / res["plain"][0]["tokens"]
    print(f"engine overhead: finetui train vs plain TRL ({n_params / 1e6:.1f}M-param Llama, full fine-tuning, "
          f"batch {a.batch}, max_len {a.max_len}, {a.max_steps} steps, 1 process, CPU fp32, {a.rounds} alternating "
          f"rounds)")
    for s, name in (("plain", "plain TRL    "), ("finetui", "finetui train")):
        print(f"  {name} {med[s]:8.0f} tokens/s (median of runs, tokens ÷ train_runtime)   "
              f"{step_med[s]:8.0f} tokens/s (median of {len(steps[s])} logged steps)   end to end {wall[s]:.1f} s")
    print(f"  ratio finetui ÷ plain, median logged step: {step_med['finetui'] / step_med['plain']:.3f}   "
          f"target ≥ 0.97")
    print(f"  ratio finetui ÷ plain, tokens ÷ train_runtime: median of rounds {statistics.median(ratios):.3f} "
          f"(per round {', '.join(f'{x:.3f}' for x in ratios)}; ratio of medians {med['finetui'] / med['plain']:.3f})")
    print(f"  end to end (process start to exit, incl. launch, data check, tokenization, saving): "
          f"finetui ÷ plain time {wall['finetui'] / wall['plain']:.2f}")
    print(f"  tokens seen finetui ÷ plain: {tok_eq:.3f} (same rows, same tokenizer)")
    if a.json:
        a.json.write_text(json.dumps({"runs": res, "ratios": ratios, "median_tps": med, "wall": wall,
                                      "median_step_tps": step_med,
                                      "params": n_params}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

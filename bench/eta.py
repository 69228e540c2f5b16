#!/usr/bin/env python3
"""Time to finish: how close finetui's two time estimates come to a real run's finish.

One real ``finetui train`` run (the 3.1M-parameter Llama and synthetic alpaca rows of
bench/engine_overhead.py, full fine-tuning, CPU, packing on as by default, logging every step).
Its ``events.jsonl`` is then replayed record by record:

* **monitor ETA** — what the dashboard shows (``tui.widgets.metrics.RunState.eta``: the pace
  of the recent log records × the steps left), read after 10 %, 25 %, 50 % and 75 % of the
  steps, against the time the last step was actually logged;
* **``finetui estimate --tokens-per-s``** — ``engine.estimate``'s time to finish from a
  throughput measured early in the run (the tokens of the first 25 % of the steps over their
  time, as a user would read it off the dashboard), against the measured training time.

Prints the predicted and actual seconds and the error of each (target: within 10 % once a
quarter of the run is measured).

``--stage dpo`` runs DPO instead, on preference rows made the same way (a pair's chosen and
rejected answers of similar lengths, packing off): its steps hold both sequences of every pair,
which the estimate's tokens per step must count as the measured tokens/s does.

    python bench/eta.py                     # 60 steps
    python bench/eta.py --max-steps 120
    python bench/eta.py --stage dpo
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_overhead import PRESET, build_model, make_data  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--stage", choices=("sft", "dpo"), default="sft")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    a = ap.parse_args()
    if a.smoke:
        a.max_steps, a.max_len, a.rows = 4, 64, 64
    dpo = a.stage == "dpo"
    from engine import presets
    from engine.estimate import estimate
    from tui.widgets.metrics import RunState

    with tempfile.TemporaryDirectory(prefix="finetui-bench-eta-") as tmp:
        t = Path(tmp)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT),
               "FINETUI_STATE_DIR": str(t / "state")}
        n_params = build_model(t / "model")
        make_data(t / "data.jsonl", a.rows)
        text = PRESET.format(model=t / "model", data=t / "data.jsonl", batch=a.batch, steps=a.max_steps, lr=1e-4,
                             max_len=a.max_len, log=1, tensorboard="false", packing="false" if dpo else "true")
        if dpo:  # the same rows as pairs: the answer chosen, another row's answer rejected
            rows = [json.loads(x) for x in (t / "data.jsonl").read_text().splitlines()]
            with (t / "data.jsonl").open("w") as fh:
                for i, r in enumerate(rows):
                    fh.write(json.dumps({"instruction": r["instruction"], "input": r["input"], "chosen": r["output"],
                                         "rejected": rows[(i + 1) % len(rows)]["output"]}) + "\n")
            text = text.replace('format = "alpaca"', 'format = "preference"').replace('stage = "sft"', 'stage = "dpo"')
        preset = t / "bench.toml"
        preset.write_text(text)
        run = t / "run"
        p = subprocess.run([sys.executable, "-m", "tui.cli", "train", str(preset), "--run-dir", str(run)], cwd=ROOT,
                           env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stdout[-2000:], p.stderr[-2000:], file=sys.stderr)
            return 1
        recs = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
        job = presets.load(preset)
        model_config = json.loads((t / "model" / "config.json").read_text())
        per_example = mean_trained_length(job.resolved(), t / "model") if dpo else None
    logs = [r for r in recs if r.get("kind") == "log" and r.get("loss") is not None]
    start = next(r for r in recs if r.get("kind") == "start")
    total = int(start["total_steps"])
    t_end = logs[-1]["t"]  # the last step logged
    print(f"time to finish: one finetui train run ({n_params / 1e6:.1f}M-param Llama, {'DPO, ' if dpo else ''}full "
          f"fine-tuning, batch {a.batch}, max_len {a.max_len}, {total} steps, packing {'off' if dpo else 'on'}, CPU fp32), "
          "its events replayed")
    print(f"  training: {t_end - start['t']:.1f} s from the start event to the last step")

    # 1. the dashboard's ETA
    m = RunState()
    marks = {int(total * f): f for f in (0.10, 0.25, 0.50, 0.75)}
    errors = {}
    for r in recs:
        m.update([r])
        if r is not None and r.get("kind") == "log" and int(r.get("step") or 0) in marks:
            eta = m.eta(r["t"])
            if eta is None:
                continue
            actual = t_end - r["t"]
            f = marks.pop(int(r["step"]))
            errors[f] = eta / actual - 1
            print(f"  monitor ETA after {f:4.0%} of the steps: {eta:6.1f} s predicted, {actual:6.1f} s actual   "
                  f"error {errors[f]:+.1%}")

    # 2. finetui estimate --tokens-per-s, with the throughput of the first quarter
    q = [r for r in logs if int(r["step"]) <= max(2, total // 4)]
    # tokens over time across those steps (the first step, with its start-up, left out): a median of the per-step
    # rates reads high when steps differ in length, as unpacked (padded) DPO batches do (+17 % here)
    tps = (sum(float(r["tokens_per_s"]) * (r["t"] - p["t"]) for p, r in zip(q, q[1:]) if r.get("tokens_per_s"))
           / max(1e-9, q[-1]["t"] - q[0]["t"]))
    packed = next((r for r in recs if r.get("kind") == "status" and "packed_sequences" in r), None)
    if packed:  # the data check's tokens per example would give the same: the packed bins' fill
        per_example = packed["packed_fill"] * a.max_len * packed["packed_sequences"] / packed["packed_rows"]
    est = estimate(job.resolved(), model_config=model_config, num_examples=a.rows, throughput_tokens_per_s=tps, tokens_per_example=per_example)
    actual = t_end - start["t"]
    err = est.seconds / actual - 1
    print(f"  finetui estimate --tokens-per-s {tps:.0f} (steps 2–{len(q)}): {est.seconds:6.1f} s predicted "
          f"for {est.steps.total_steps} steps, {actual:6.1f} s actual   error {err:+.1%}")
    print(f"    {est.time_formula}")
    # the tokens a step really held (tokens/s × the time between log records), and the throughput over the whole run
    seen = sum(float(r["tokens_per_s"]) * (r["t"] - p["t"]) for p, r in zip(logs, logs[1:]) if r.get("tokens_per_s"))
    steps_seen = int(logs[-1]["step"]) - int(logs[0]["step"])
    print(f"    measured: {seen / max(1, steps_seen):.0f} tokens/step, {seen / max(1e-9, logs[-1]['t'] - logs[0]['t']):.0f} "
          f"tokens/s over steps {logs[0]['step']}–{logs[-1]['step']} (the estimate: {est.steps.tokens_per_step} "
          f"tokens/step, {tps:.0f} tokens/s)")
    worst = max(abs(v) for f, v in errors.items() if f >= 0.25) if errors else float("nan")
    print(f"  worst error once a quarter is measured: monitor ETA {worst:.1%}, estimate {abs(err):.1%}   "
          f"target within 10 %")
    return 0


def mean_trained_length(res: dict, model_dir: Path) -> float:
    """What the data check reports as ``mean_trained_length`` (the TUI passes it to the estimate)."""
    from transformers import AutoTokenizer

    from engine.data import load_rows
    from engine.data.tokenize import tokenize_row

    tok = AutoTokenizer.from_pretrained(model_dir)
    n = int(res["general.max_sequence_length"])
    rows = load_rows(res, None).train
    return statistics.fmean(min(n, len(tokenize_row(tok, r, res["trainer.stage"], None)["input_ids"])) for r in rows)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Where a finetui SFT step goes, beside a plain ``transformers.Trainer`` step on the same job.

Both train the engine's tiny Llama with LoRA r8 on all linear layers over the bundled alpaca rows,
tokenized once by finetui's own ``tokenize_lm`` (same tokens, same masks), batch 8, max length 128,
gradient checkpointing off, fp32 on CPU, one process. finetui's side is ``build_trainer`` with
``common_args`` (the worker's code path: TRL's SFTTrainer); the plain side is ``Trainer`` with
``DataCollatorForSeq2Seq``. The two alternate, A B A B; the median seconds per step (first step of
each run dropped) are printed, and with ``--profile`` a cProfile of one finetui run (top entries).

    python bench/profile_step.py --rounds 3 --steps 20 [--profile] [--smoke]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOB = """
[model]
name_or_path = "finetui:tiny-llama"
[data]
train_path = "finetui:samples/alpaca_demo.jsonl"
format = "alpaca"
packing = false
[trainer]
stage = "sft"
training_type = "lora"
[general]
batch_size = 8
max_sequence_length = 128
max_steps = {steps}
learning_rate = 0.003
[runtime]
mixed_precision = "none"
gradient_checkpointing = false
seed = 0
[adapter]
lora_rank = 8
lora_alpha = 16
target_modules = ["all-linear"]
[eval]
evaluation_strategy = "no"
checkpoint_strategy = "no"
logging_steps = 5
[launch]
device = "cpu"
"""


class Times:
    def __init__(self) -> None:
        self.t: list[float] = []
        self.last = 0.0

    def cb(self):  # noqa: ANN201
        from transformers import TrainerCallback

        outer = self

        class C(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
                outer.last = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                outer.t.append(time.perf_counter() - outer.last)
        return C()


def setup(steps: int):  # noqa: ANN201
    from engine import presets
    from engine.data import load_rows
    from engine.train.modeling import apply_method, load_config, load_model, load_tokenizer

    res = presets.loads(JOB.format(steps=steps)).resolved()
    data = load_rows(res, None)
    path, cfg = load_config(res, print)
    tok = load_tokenizer(path, res, print)
    return res, data, path, cfg, tok, (load_model, apply_method)


def _train(tr, tm: Times, prof: cProfile.Profile | None) -> tuple[list[float], float]:  # noqa: ANN001
    """Train (profiled when ``prof``); → seconds of each step but the first, the final training loss."""
    if prof is not None:
        prof.enable()
    tr.train()
    if prof is not None:
        prof.disable()
    return tm.t[1:], float(tr.state.log_history[-1].get("train_loss", 0))


def finetui_run(steps: int, out: Path, prof: cProfile.Profile | None = None) -> tuple[list[float], float]:
    from transformers import set_seed

    from engine.train.trainers import build_trainer, common_args

    res, data, path, cfg, tok, (load_model, apply_method) = setup(steps)
    set_seed(0)
    model = apply_method(load_model(path, cfg, res, "cpu"), res, path, "cpu", print)
    tm = Times()
    tr = build_trainer(res, model, tok, data.train, None, common_args(res, out, "cpu", False, []), [tm.cb()], None,
                       lambda *a, **k: None)
    return _train(tr, tm, prof)


def plain_run(steps: int, out: Path, prof: cProfile.Profile | None = None) -> tuple[list[float], float]:
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from engine.train.trainers import tokenize_lm

    res, data, path, cfg, tok, (load_model, apply_method) = setup(steps)
    set_seed(0)
    model = apply_method(load_model(path, cfg, res, "cpu"), res, path, "cpu", print)
    rows, _ = tokenize_lm(tok, data.train, "sft", 128)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=8, max_steps=steps, learning_rate=0.003,
                             logging_steps=5, save_strategy="no", report_to=[], use_cpu=True, seed=0, data_seed=0,
                             disable_tqdm=True, lr_scheduler_type="cosine", warmup_steps=0.0, optim="adamw_torch")
    tm = Times()
    tr = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                 data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=-100), callbacks=[tm.cb()])
    return _train(tr, tm, prof)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--profile", choices=("finetui", "plain"), help="cProfile one run of this side's training loop")
    ap.add_argument("--smoke", action="store_true", help="one round of 3 steps: the whole path, figures meaningless")
    a = ap.parse_args()
    if a.smoke:
        a.rounds, a.steps = 1, 3
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as td:
        if a.profile:
            pr = cProfile.Profile()
            (finetui_run if a.profile == "finetui" else plain_run)(a.steps, Path(td) / "p", pr)
            for key in ("tottime", "cumulative"):
                s = io.StringIO()
                pstats.Stats(pr, stream=s).sort_stats(key).print_stats(30)
                print(s.getvalue())
        ratios = []
        for r in range(a.rounds):
            f, fl = finetui_run(a.steps, Path(td) / f"f{r}")
            p, pl = plain_run(a.steps, Path(td) / f"p{r}")
            ratios.append(statistics.median(p) / statistics.median(f))
            print(f"round {r}: finetui {statistics.median(f) * 1000:.1f} ms/step (loss {fl:.4f}), "
                  f"plain Trainer {statistics.median(p) * 1000:.1f} ms/step (loss {pl:.4f}), "
                  f"finetui speed ÷ plain {ratios[-1]:.2f}", flush=True)
        if ratios:
            print(f"median speed ratio finetui ÷ plain Trainer: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()

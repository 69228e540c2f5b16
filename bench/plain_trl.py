#!/usr/bin/env python3
"""A minimal plain TRL SFT script — the baseline bench/engine_overhead.py holds ``finetui train`` to.

What a user would write by hand: read an alpaca jsonl, turn rows into chat messages, train with
``SFTTrainer`` (assistant-only loss, like finetui), save. Prints the trainer's final metrics as
one JSON line prefixed ``PLAIN_METRICS``, with the tokens/s of each logging interval (a
measurement-only callback computing what finetui's ``log`` events carry).

    python bench/plain_trl.py --model DIR --data FILE --out DIR --batch 8 --max-steps 30 ...
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--logging-steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    def to_messages(r):
        prompt = "\n".join(s for s in (r["instruction"], r.get("input") or "") if s.strip())
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}]}

    ds = load_dataset("json", data_files=a.data, split="train")
    ds = ds.map(to_messages, remove_columns=ds.column_names)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, attn_implementation="sdpa")
    cfg = SFTConfig(output_dir=a.out, per_device_train_batch_size=a.batch, max_steps=a.max_steps,
                    learning_rate=a.lr, max_length=a.max_len, logging_steps=a.logging_steps, save_strategy="no",
                    bf16=False, fp16=False, use_cpu=True, seed=a.seed, data_seed=a.seed, report_to=[],
                    disable_tqdm=True, assistant_only_loss=True, gradient_checkpointing=False,
                    include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, optim="adamw_torch",
                    ddp_find_unused_parameters=False)
    class StepTimes(TrainerCallback):  # measurement only: tokens/s of each logging interval, as finetui's events
        def __init__(self):
            self.t, self.tok, self.tps = None, 0, []

        def on_train_begin(self, args, state, control, **kw):
            self.t = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            now, tok = time.monotonic(), int(state.num_input_tokens_seen)
            self.tps.append((tok - self.tok) / max(now - self.t, 1e-9))
            self.t, self.tok = now, tok

    times = StepTimes()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[times])
    out = trainer.train()
    trainer.save_model(os.path.join(a.out, "final"))
    m = dict(out.metrics)
    m["num_input_tokens_seen"] = int(trainer.state.num_input_tokens_seen)
    m["global_step"] = int(trainer.state.global_step)
    m["interval_tokens_per_s"] = times.tps
    print("PLAIN_METRICS " + json.dumps(m), flush=True)


if __name__ == "__main__":
    main()

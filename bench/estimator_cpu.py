#!/usr/bin/env python3
"""Estimator accuracy on CPU: predicted weights + gradients + optimizer bytes vs the real tensors.

For two model shapes (a Llama with untied embeddings, a Qwen2 with tied embeddings and q/k/v
biases) and the tuning methods full, LoRA (all-linear), T-Few and prompt tuning, the job is
built exactly as finetui's worker builds it (``engine.train.modeling.load_model`` /
``apply_method``, ``engine.train.trainers.common_args`` / ``build_trainer`` → a real TRL
``SFTTrainer`` with ``adamw_torch``), trained for one optimizer step on the bundled sample
data, and at ``on_optimizer_step`` (after ``optimizer.step()``, before the gradients are
zeroed) the bytes of the distinct storages are summed:

* weights — every parameter of the model (tied embeddings counted once);
* gradients — every ``param.grad``;
* optimizer states — every tensor in ``optimizer.state`` (AdamW's moments and step counters).

The prediction is ``engine.estimate.estimate`` for the same resolved configuration, from the
model's config.json only. Target: each within 3 %.

    python bench/estimator_cpu.py
    python bench/estimator_cpu.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: two shapes; vocabulary 512 so the tiny model's tokenizer fits both
SHAPES = {
    "llama-untied 6.2M": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
                          "intermediate_size": 704, "num_hidden_layers": 8, "num_attention_heads": 8,
                          "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
                          "tie_word_embeddings": False, "dtype": "float32"},
    "qwen2-tied 9.6M": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 384,
                        "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 6,
                        "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512,
                        "tie_word_embeddings": True, "dtype": "float32"},
}
METHODS = {
    "full": {"trainer.training_type": "full"},
    "lora": {"trainer.training_type": "lora", "adapter.lora_rank": 16, "adapter.target_modules": ["all-linear"]},
    "tfew": {"trainer.training_type": "tfew"},
    "prompt_tuning": {"trainer.training_type": "prompt_tuning"},
}
PARTS = ("weights", "gradients", "optimizer states")
#: other stages, on the Llama shape (untied: the reward model drops an LM head of vocab × hidden): DPO with
#: full fine-tuning loads a reference model (its weights count), with LoRA TRL adds a frozen copy of the adapters
STAGE_RUNS = [("dpo", "full"), ("dpo", "lora"), ("reward", "full"), ("reward", "lora")]
STAGE_DATA = {"sft": ("alpaca_demo.jsonl", "alpaca"), "dpo": ("preference_demo.jsonl", "preference"),
              "reward": ("preference_demo.jsonl", "preference")}


def build_model_dir(shape: dict, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from engine.tiny import PAD, ensure_tiny_model

    d = {k: v for k, v in shape.items() if k not in ("model_type", "architectures", "dtype") and not k.startswith("_")}
    d.update(pad_token_id=1, bos_token_id=0, eos_token_id=2)  # the tiny tokenizer's
    cfg = AutoConfig.for_model(shape["model_type"], **d)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if shape.get("dtype") == "bfloat16" else torch.float32  # saved in the checkpoint's dtype
    AutoModelForCausalLM.from_config(cfg, dtype=dtype).save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(ensure_tiny_model())
    assert tok.pad_token == PAD
    tok.save_pretrained(out)
    return out


def storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def worker_model(values: dict, device: str = "cpu") -> tuple[dict, Any, Any]:
    """The job's resolved values, its tokenizer and its model, built as the worker builds them."""
    import torch

    from engine.schema import JobConfig
    from engine.train.modeling import apply_method, load_config, load_model, load_tokenizer

    res = JobConfig(values=values).resolved()
    warn = lambda m: None  # noqa: E731
    path, cfg = load_config(res, warn)
    tok = load_tokenizer(path, res, warn)
    torch.manual_seed(0)
    model = load_model(path, cfg, res, device)
    return res, tok, apply_method(model, res, path, device, warn)


def worker_trainer(values: dict, run_dir: Path, callbacks: list, *, steps: int, rows: int,
                   device: str = "cpu") -> Any:
    """The job built as the worker builds it and its real TRL trainer: ``steps`` optimizer steps on the
    first ``rows`` rows of its data, nothing saved or logged."""
    from engine.data import load_rows
    from engine.train.trainers import build_trainer, common_args

    res, tok, model = worker_model(values, device)
    base = common_args(res, Path(run_dir), device, False, [])
    base.update(max_steps=steps, save_strategy="no", logging_strategy="no")
    return build_trainer(res, model, tok, load_rows(res, None).train[:rows], None, base, callbacks, None,
                         lambda *a, **k: None)


def measure(model_dir: Path, values: dict, run_dir: Path) -> dict:
    """Build the job like the worker, train one optimizer step, return real bytes by part."""
    import torch
    from transformers import TrainerCallback

    got: dict = {}
    ref: list = []  # the reference model's parameters (DPO with full fine-tuning; with LoRA they are the model's)

    class Measure(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kw):
            if got:
                return
            params = list(model.parameters())
            opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
            got["weights"] = storage_bytes(params + ref)
            got["gradients"] = storage_bytes(p.grad for p in params)
            got["optimizer states"] = storage_bytes(
                v for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
            got["trainable"] = sum(p.numel() for p in params if p.requires_grad)
            got["total"] = sum(p.numel() for p in params)

    trainer = worker_trainer(values, run_dir, [Measure()], steps=1, rows=64)
    if getattr(trainer, "ref_model", None) is not None:
        ref.extend(trainer.ref_model.parameters())
    trainer.train()
    return got


def run(quick: bool = False, smoke: bool = False) -> list[dict]:
    from engine.schema import JobConfig
    from engine.estimate import estimate

    rows = []
    with tempfile.TemporaryDirectory(prefix="finetui-bench-est-") as tmp:
        dirs = {sname: build_model_dir(shape, Path(tmp) / sname.split()[0]) for sname, shape in SHAPES.items()}
        llama = next(iter(SHAPES))
        runs = [(sname, mname, "sft") for sname in SHAPES for mname in METHODS
                if not quick or mname in ("full", "lora")]
        runs += [(llama, mname, stage) for stage, mname in STAGE_RUNS if not quick or stage == "dpo"]
        if smoke:
            runs = [(llama, "lora", "sft"), (llama, "lora", "dpo")]
        for sname, mname, stage in runs:
            shape, mdir, mvals = SHAPES[sname], dirs[sname], METHODS[mname]
            data, fmt = STAGE_DATA[stage]
            values = {"model.name_or_path": str(mdir), "data.train_path": f"finetui:samples/{data}",
                      "data.format": fmt, "trainer.stage": stage, "launch.device": "cpu",
                      "launch.procs_per_node": 1, "runtime.mixed_precision": "none",
                      "runtime.gradient_checkpointing": False, "general.batch_size": 4,
                      "general.max_sequence_length": 128, "general.epochs": 1,
                      "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no", **mvals}
            t0 = time.perf_counter()
            real = measure(mdir, values, Path(tmp) / f"run-{sname.split()[0]}-{mname}-{stage}")
            est = estimate(JobConfig(values=values).resolved(), model_config=shape)
            pred = {p: est.part(p).bytes for p in PARTS}
            rows.append({"shape": sname, "method": mname, "stage": stage, "real": {p: real[p] for p in PARTS},
                         "pred": pred, "trainable_real": real["trainable"], "trainable_pred": est.trainable_params,
                         "params_real": real["total"], "params_pred": est.num_params,
                         "real_sum": sum(real[p] for p in PARTS), "pred_sum": sum(pred.values()),
                         "secs": time.perf_counter() - t0})
    return rows


def report(rows: list[dict]) -> str:
    L = ["| shape | stage | method | trainable (real / predicted) | weights+grads+optimizer real | predicted | error | "
         "per part (pred ÷ real − 1: weights, grads, optimizer) |",
         "|---|---|---|---|---|---|---|---|"]
    worst = 0.0
    for r in rows:
        err = r["pred_sum"] / r["real_sum"] - 1
        worst = max(worst, abs(err))
        per = ", ".join(f"{(r['pred'][p] / r['real'][p] - 1) * 100:+.2f} %" if r["real"][p] else
                        f"{r['pred'][p]:.0f} B vs 0" for p in PARTS)
        L.append(f"| {r['shape']} | {r['stage']} | {r['method']} | {r['trainable_real']:,} / {r['trainable_pred']:,} | "
                 f"{r['real_sum'] / 2**20:.3f} MiB | {r['pred_sum'] / 2**20:.3f} MiB | {err * 100:+.2f} % | {per} |")
    L.append("")
    L.append(f"worst error {worst * 100:.2f} % over {len(rows)} configurations (target: within 3 %)")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="full and LoRA only")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = run(a.quick, a.smoke)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    print("estimator vs real tensors after the first optimizer step (CPU, fp32, adamw_torch)")
    print(report(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

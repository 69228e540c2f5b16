#!/usr/bin/env python3
"""Estimator vs measured GPU memory: predicted peak vs ``torch.cuda.max_memory_allocated``.

Self-contained: builds random-initialised models from config dicts (no download), trains
each configuration a few steps the way finetui's worker does (the checkpoint's dtype, PEFT
adapters in fp32, bf16 autocast, ``adamw_torch`` = foreach AdamW, gradient clipping) and
prints a markdown table. The prediction compared is the estimate's total minus the CUDA context
(which PyTorch's allocator does not count). Target: within ±15 %.

    python bench/gpu_memory.py            # needs a CUDA GPU
    python bench/gpu_memory.py --quick    # fewer configurations
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import JobConfig  # noqa: E402
from engine.estimate import CUDA_CONTEXT_BYTES, GIB, estimate  # noqa: E402
from engine.modelinfo import CATALOG  # noqa: E402

SHAPES = {
    "qwen2-0.5b": CATALOG["Qwen/Qwen2-0.5B-Instruct"],
    "qwen2-0.5b-fp32": {**CATALOG["Qwen/Qwen2-0.5B-Instruct"], "dtype": "float32"},
    "llama-3.2-1b": CATALOG["meta-llama/Llama-3.2-1B"],
}

#: (shape, values) — each is one measured configuration.
CONFIGS = [
    ("qwen2-0.5b", {"trainer.training_type": "full", "general.batch_size": 4, "general.max_sequence_length": 1024,
                    "runtime.gradient_checkpointing": False}),
    ("qwen2-0.5b", {"trainer.training_type": "full", "general.batch_size": 8, "general.max_sequence_length": 1024,
                    "runtime.gradient_checkpointing": True}),
    ("qwen2-0.5b-fp32", {"trainer.training_type": "full", "general.batch_size": 2,
                         "general.max_sequence_length": 512, "runtime.gradient_checkpointing": False,
                         "runtime.mixed_precision": "none"}),
    ("qwen2-0.5b-fp32", {"trainer.training_type": "full", "general.batch_size": 4,
                         "general.max_sequence_length": 1024, "runtime.gradient_checkpointing": True}),
    ("llama-3.2-1b", {"trainer.training_type": "lora", "general.batch_size": 4, "general.max_sequence_length": 1024,
                      "runtime.gradient_checkpointing": False, "adapter.lora_rank": 16, "adapter.lora_dropout": 0.0}),
    ("llama-3.2-1b", {"trainer.training_type": "lora", "general.batch_size": 8, "general.max_sequence_length": 2048,
                      "runtime.gradient_checkpointing": True, "adapter.lora_rank": 16, "adapter.lora_dropout": 0.05}),
    ("llama-3.2-1b", {"trainer.training_type": "full", "general.batch_size": 2, "general.max_sequence_length": 1024,
                      "runtime.gradient_checkpointing": True}),
    ("llama-3.2-1b", {"trainer.training_type": "tfew", "general.batch_size": 4, "general.max_sequence_length": 1024,
                      "runtime.gradient_checkpointing": False}),
    ("llama-3.2-1b", {"trainer.training_type": "freeze", "general.batch_size": 4,
                      "general.max_sequence_length": 1024, "runtime.gradient_checkpointing": False,
                      "adapter.freeze_trainable_layers": 2}),
    ("qwen2-0.5b", {"trainer.training_type": "prompt_tuning", "general.batch_size": 4,
                    "general.max_sequence_length": 1024, "runtime.gradient_checkpointing": False}),
]


def job_res(values: dict) -> dict:
    base = {"data.train_path": "x.jsonl", "launch.device": "cuda", "launch.procs_per_node": 1,
            "trainer.distributed_backend": "ddp", "runtime.mixed_precision": "bf16"}
    return JobConfig(values={**base, **values}).resolved()


def build(shape: dict, res: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    d = {k: v for k, v in shape.items() if not k.startswith("_") and k not in ("architectures", "model_type")}
    cfg = AutoConfig.for_model(shape["model_type"], **d)
    cfg._attn_implementation = "sdpa"
    method = res["trainer.training_type"]
    dtype = torch.bfloat16 if shape.get("dtype") == "bfloat16" else torch.float32  # the worker: dtype="auto"
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=res["adapter.lora_rank"], lora_alpha=res["adapter.lora_alpha"],
                                                 lora_dropout=res["adapter.lora_dropout"],
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    elif method == "tfew":
        from peft import IA3Config, get_peft_model

        model = get_peft_model(model, IA3Config(task_type="CAUSAL_LM"))
    elif method == "prompt_tuning":
        from peft import PromptTuningConfig, get_peft_model

        model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM",
                                                         num_virtual_tokens=res["adapter.num_virtual_tokens"]))
    elif method == "freeze":
        n = res["adapter.freeze_trainable_layers"]
        layers = model.model.layers
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[-n:]:
            for p in layer.parameters():
                p.requires_grad_(True)
    if method in ("lora", "tfew", "prompt_tuning"):
        for p in model.parameters():  # PEFT's autocast_adapter_dtype: trainable adapters in fp32
            if p.requires_grad:
                p.data = p.data.float()
    if res["runtime.gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method != "full":
            model.enable_input_require_grads()
    return model


def measure(shape: dict, res: dict, steps: int = 3) -> int:
    import torch

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(shape, res)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, foreach=True)  # transformers' adamw_torch
    b, s = res["general.batch_size"], res["general.max_sequence_length"]
    vocab = shape["vocab_size"]
    half = res["runtime.mixed_precision"] in ("bf16", "fp16")
    g = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(steps):
        ids = torch.randint(0, vocab, (b, s), device="cuda", generator=g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del model, opt, params, out
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def describe(values: dict) -> str:
    m = values["trainer.training_type"]
    mp = values.get("runtime.mixed_precision", "bf16")
    gc_ = "GC" if values.get("runtime.gradient_checkpointing") else "no GC"
    return f"{m}, {mp}, b{values['general.batch_size']}×{values['general.max_sequence_length']}, {gc_}"


def run(quick: bool = False) -> dict:
    import torch

    rows = []
    configs = CONFIGS[:6] if quick else CONFIGS
    torch.cuda.init()
    for shape_name, values in configs:
        res = job_res(values)
        shape = SHAPES[shape_name]
        est = estimate(res, model_config=shape)
        predicted = est.total_bytes - CUDA_CONTEXT_BYTES
        t0 = time.time()
        try:
            real = measure(shape, res)
            err = None
        except Exception as e:  # noqa: BLE001 — report and go on
            real, err = None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        parts = {p.name: round(p.bytes / GIB, 3) for p in est.parts}
        rows.append({"model": shape_name, "config": describe(values), "predicted_gib": predicted / GIB,
                     "measured_gib": real / GIB if real else None,
                     "ratio": predicted / real if real else None, "parts_gib": parts,
                     "seconds": round(time.time() - t0, 1), "error": err})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(), "rows": rows}


def table(result: dict) -> str:
    L = [f"GPU memory: estimate vs torch.cuda.max_memory_allocated — {result['device']}, torch {result['torch']}, "
         f"{result['date']}", "",
         "| model | configuration | predicted (GiB) | measured (GiB) | predicted ÷ measured |",
         "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        if r["measured_gib"] is None:
            L.append(f"| {r['model']} | {r['config']} | {r['predicted_gib']:.2f} | error: {r['error']} | — |")
        else:
            L.append(f"| {r['model']} | {r['config']} | {r['predicted_gib']:.2f} | {r['measured_gib']:.2f} | "
                     f"{r['ratio']:.3f} |")
    ok = [r for r in result["rows"] if r["ratio"]]
    within = sum(1 for r in ok if abs(r["ratio"] - 1) <= 0.15)
    L.append("")
    L.append(f"{within} of {len(ok)} configurations within ±15 % (target: all).")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the result as JSON here")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_memory: torch is not installed", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_memory: no CUDA GPU here — skipped (run it on a GPU machine)")
        return 0
    result = run(quick=a.quick)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

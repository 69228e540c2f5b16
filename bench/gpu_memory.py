#!/usr/bin/env python3
"""Estimator vs measured GPU memory: predicted peak vs ``torch.cuda.max_memory_allocated``.

Self-contained (no download): for each model shape a random-initialised checkpoint is saved in
the shape's dtype with the tiny model's tokenizer, and each configuration runs in its own
process exactly as finetui's worker runs it — ``load_model`` / ``apply_method`` /
``build_trainer`` (a real TRL ``SFTTrainer``, ``DPOTrainer`` for the DPO row: fused LM head,
bf16 autocast through Accelerate, ``adamw_torch``, gradient clipping) — for three optimizer
steps on rows longer than ``max_length`` (every micro-batch full). Measured: the allocator's
peak over those steps; predicted: the estimate's total minus the CUDA context (which PyTorch's
allocator does not count). Target: within ±15 %.

    python bench/gpu_memory.py            # needs a CUDA GPU (a few minutes)
    python bench/gpu_memory.py --quick    # the first six configurations
    python bench/gpu_memory.py --smoke  # the same code path on CPU, two small configurations: a
                                          # check that the script runs before spending GPU time
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from engine.schema import JobConfig  # noqa: E402
from engine.estimate import CUDA_CONTEXT_BYTES, GIB, estimate  # noqa: E402
from engine.modelinfo import CATALOG  # noqa: E402

from activations_cpu import SHAPES as CPU_SHAPES, STAGES, _status, long_rows  # noqa: E402 - bench/ is the script's folder
from estimator_cpu import build_model_dir, worker_trainer  # noqa: E402

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
    ("llama-3.2-1b", {"trainer.training_type": "lora", "general.batch_size": 2, "general.max_sequence_length": 1024,
                      "runtime.gradient_checkpointing": False, "adapter.lora_rank": 16, "adapter.lora_dropout": 0.0,
                      **STAGES["dpo"]}),
]
#: --smoke: the same path on CPU with a small shape (the peak is the process's resident high-water mark there,
#: libraries included: not comparable with the estimate, only a check that every step of the script runs)
SMOKE_SHAPES = {"llama-untied": CPU_SHAPES["llama-untied"]}
SMOKE = [("llama-untied", {"trainer.training_type": "full", "general.batch_size": 2, "general.max_sequence_length": 128,
                           "runtime.gradient_checkpointing": False, "runtime.mixed_precision": "none"}),
         ("llama-untied", {"trainer.training_type": "lora", "general.batch_size": 2, "general.max_sequence_length": 128,
                           "runtime.gradient_checkpointing": True, "adapter.lora_dropout": 0.0, **STAGES["dpo"]})]
STEPS = 3


def job_values(values: dict, model_dir: Path, data: Path, device: str) -> dict:
    base = {"model.name_or_path": str(model_dir), "data.train_path": str(data), "data.format": "alpaca",
            "data.packing": False, "launch.device": device, "launch.procs_per_node": 1,
            "trainer.distributed_backend": "ddp", "runtime.mixed_precision": "bf16",
            "runtime.attention_implementation": "sdpa", "general.epochs": 1, "eval.evaluation_strategy": "no",
            "eval.checkpoint_strategy": "no", "tracking.tensorboard": False}
    return {**base, **values}


def child(spec: dict) -> dict:
    """One configuration in this process: the worker's model and trainer, STEPS optimizer steps, the peak."""
    import torch
    from transformers import TrainerCallback

    dev, values = spec["device"], spec["values"]
    got: dict = {"steps": 0}

    def peak() -> int:
        return int(torch.cuda.max_memory_allocated()) if dev == "cuda" else _status()[1]

    class Peak(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            got["steps"], got["peak"] = state.global_step, peak()

    rows = int(values["general.batch_size"]) * int(values.get("runtime.gradient_accumulation_steps", 1)) * STEPS
    worker_trainer(values, Path(spec["run_dir"]), [Peak()], steps=STEPS, rows=rows, device=dev).train()
    return got


def describe(values: dict) -> str:
    m = values["trainer.training_type"]
    mp = values.get("runtime.mixed_precision", "bf16")
    gc_ = "GC" if values.get("runtime.gradient_checkpointing") else "no GC"
    stage = "DPO, " if values.get("trainer.stage") == "dpo" else ""
    return f"{stage}{m}, {mp}, b{values['general.batch_size']}×{values['general.max_sequence_length']}, {gc_}"


def run(configs: list, shapes: dict, device: str) -> dict:
    import torch

    rows = []
    with tempfile.TemporaryDirectory(prefix="finetui-bench-gpu-") as tmp:
        # responses of ~4,600 tokens: longer than every configuration's max_length, so every micro-batch is full
        data = {st: long_rows(Path(tmp) / f"long-{st}.jsonl", st, n=32, words=1024) for st in STAGES}
        dirs: dict[str, Path] = {}
        for shape_name, values in configs:
            shape = shapes[shape_name]
            t0 = time.time()
            if shape_name not in dirs:
                dirs[shape_name] = build_model_dir(shape, Path(tmp) / shape_name)
            vals = job_values(values, dirs[shape_name], data[values.get("trainer.stage", "sft")], device)
            est = estimate(JobConfig(values=vals).resolved(), model_config=shape)
            predicted = est.total_bytes - (CUDA_CONTEXT_BYTES if device == "cuda" else 0)
            spec = {"values": vals, "device": device, "run_dir": str(Path(tmp) / f"run{len(rows)}")}
            p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                               cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1200)
            if p.returncode == 0:
                got = json.loads(p.stdout.strip().splitlines()[-1])
                real, err = got["peak"], None if got["steps"] == STEPS else f"{got['steps']} steps of {STEPS}"
            else:
                real, err = None, (p.stderr.strip().splitlines() or ["?"])[-1][:160]
            parts = {pt.name: round(pt.bytes / GIB, 3) for pt in est.parts}
            rows.append({"model": shape_name, "config": describe(values), "predicted_gib": predicted / GIB,
                         "measured_gib": real / GIB if real else None,
                         "ratio": predicted / real if real else None, "parts_gib": parts,
                         "seconds": round(time.time() - t0, 1), "error": err})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU smoke run ({platform.processor() or 'cpu'})"
    return {"device": name, "torch": torch.__version__,
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
    if result["device"].startswith("CPU smoke"):
        L.append("CPU smoke run: the measured figure is the process's resident high-water mark, libraries included — "
                 "not comparable with the estimate; this run only shows that the script works.")
    else:
        L.append(f"{within} of {len(ok)} configurations within ±15 % (target: all).")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first six configurations")
    ap.add_argument("--smoke", dest="cpu_smoke", action="store_true",
                    help="two small configurations on CPU: checks that the script runs (tests/test_bench_smoke.py)")
    ap.add_argument("--json", type=Path, help="also write the result as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return 0
    try:
        import torch
    except ImportError:
        print("gpu_memory: torch is not installed", file=sys.stderr)
        return 2
    if a.cpu_smoke:
        result = run(SMOKE, SMOKE_SHAPES, "cpu")
    elif not torch.cuda.is_available():
        print("gpu_memory: no CUDA GPU here — skipped (run it on a GPU machine; --smoke checks the script on CPU)")
        return 0
    else:
        result = run(CONFIGS[:6] if a.quick else CONFIGS, SHAPES, "cuda")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 1 if any(r["error"] for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())

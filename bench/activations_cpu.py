#!/usr/bin/env python3
"""Estimator accuracy on CPU for what a training step adds: activations, logits and gradients.

``bench/estimator_cpu.py`` checks the parts that live through the whole run (weights,
gradients, optimizer states) byte for byte. This one checks the part that makes a step's
peak: what the forward pass keeps for the backward (``activations``), the ``logits`` and the
loss's tensors, and the gradients that appear during the backward pass.

Measured without a GPU: each configuration runs in its own process with glibc's mmap
threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``), so every tensor of 64 KiB or more
is its own mapping, in the resident set while it lives and out of it once freed (checked
below with a 100 MiB tensor: +100.00 MiB, then 0). The job is built exactly as the worker
builds it (``load_model`` / ``apply_method`` / ``build_trainer`` → a real TRL ``SFTTrainer``, and
for the other stages ``DPOTrainer``, ``KTOTrainer``, ORPO's and ``RewardTrainer``), on rows long enough
that every sequence is ``max_length`` tokens (DPO, ORPO and the reward model put a pair's chosen and
rejected sequences in one micro-batch: twice the sequences). At the second
optimizer step (the first one allocates the optimizer states):

* **saved** — the bytes of every tensor autograd saves during the forward pass that trains (by
  storage, parameters left out; DPO's reference pass and KTO's KL pass run under no_grad and are
  not measured);
* **kept** — resident bytes at the end of that forward pass minus those at its start: what
  autograd keeps, plus the model's outputs (ORPO: the logits);
* **peak** — the resident high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``
  at the start of the forward pass) until the backward pass is over, minus the same start.

Predicted, by ``engine.estimate.estimate`` for the same resolved job from config.json only:
the ``activations`` as the forward pass leaves them (without the layer gradient checkpointing
recomputes during the backward pass) plus what the head keeps (the hidden states TRL's fused LM
head saves; the reward model's score-head input; ORPO's returned logits), against *saved* and
*kept*; the estimate's step term ``max(activations + logits + the LM head's gradient when it
trains, gradients)`` (one micro-batch a step under DDP: the backward pass frees the activations
as it allocates the gradients; the ``logits``
part is the fused head's tile and buffers, with the fp32 temporaries of its torch fallback on
CPU) against *peak*. Target: within 15 %, the GPU target of issue 8 (that one
against ``torch.cuda.max_memory_allocated``, which needs a GPU).

    python bench/activations_cpu.py            # every configuration (a few minutes on 2 CPUs)
    python bench/activations_cpu.py --quick    # five of them
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from estimator_cpu import SHAPES as ESTIMATOR_SHAPES, build_model_dir, worker_trainer  # noqa: E402 - bench/ is the script's folder

MMAP_THRESHOLD = 65536
#: estimator_cpu's two shapes (a Llama with untied embeddings, a Qwen2 with tied embeddings and q/k/v
#: biases) with a vocabulary of 8,192 (the tokenizer's 512 ids use the first rows), so the LM head
#: weighs as it does in a real model
SHAPES = {name.split()[0]: {**shape, "vocab_size": 8192, "max_position_embeddings": 1024}
          for name, shape in ESTIMATOR_SHAPES.items()}
METHODS = {
    "full": {"trainer.training_type": "full"},
    "lora": {"trainer.training_type": "lora", "adapter.lora_rank": 16, "adapter.lora_dropout": 0.0,
             "adapter.target_modules": ["all-linear"]},
    "lora q,v": {"trainer.training_type": "lora", "adapter.lora_rank": 16, "adapter.lora_dropout": 0.0,
                 "adapter.target_modules": ["q_proj", "v_proj"]},
    "tfew": {"trainer.training_type": "tfew"},
}
#: the stages besides SFT: DPO (chosen and rejected side by side), KTO (unpaired, with a KL forward under no_grad),
#: ORPO (logits materialized), the reward model (a score head)
STAGES = {
    "sft": {},
    "dpo": {"trainer.stage": "dpo", "data.format": "preference", "preference.preference_loss": "sigmoid"},
    "kto": {"trainer.stage": "kto", "data.format": "kto"},
    "orpo": {"trainer.stage": "dpo", "data.format": "preference", "preference.preference_loss": "orpo"},
    "reward": {"trainer.stage": "reward", "data.format": "preference"},
}
#: (shape, method, precision, gradient checkpointing, stage)
CONFIGS = [(s, m, "fp32", False, "sft") for s in SHAPES for m in METHODS] + [
    ("llama-untied", "full", "fp32", True, "sft"), ("llama-untied", "lora", "fp32", True, "sft"),
    ("llama-untied", "full", "bf16", False, "sft"), ("llama-untied", "lora", "bf16", False, "sft"),
    ("llama-untied", "lora", "fp32", False, "dpo"), ("llama-untied", "full", "fp32", False, "dpo"),
    ("llama-untied", "lora", "fp32", False, "kto"), ("llama-untied", "lora", "fp32", False, "orpo"),
    ("llama-untied", "full", "fp32", False, "reward"),
]
QUICK = [("llama-untied", "full", "fp32", False, "sft"), ("llama-untied", "lora", "fp32", False, "sft"),
         ("llama-untied", "full", "fp32", True, "sft"), ("llama-untied", "lora", "bf16", False, "sft"),
         ("llama-untied", "lora", "fp32", False, "dpo")]
BATCH, MAX_LEN = 4, 256


def job_values(model_dir: Path, data: Path, method: str, prec: str, gc: bool, stage: str = "sft") -> dict:
    return {"model.name_or_path": str(model_dir), "data.train_path": str(data), "data.format": "alpaca",
            "data.packing": False, "trainer.stage": "sft", **STAGES[stage], "launch.device": "cpu",
            "launch.procs_per_node": 1,
            "runtime.mixed_precision": "bf16" if prec == "bf16" else "none",
            "runtime.gradient_checkpointing": gc, "runtime.attention_implementation": "sdpa",
            "general.batch_size": BATCH, "general.max_sequence_length": MAX_LEN, "general.epochs": 1,
            "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no",
            "tracking.tensorboard": False, **METHODS[method]}


# ---------------------------------------------------------------- the child: one configuration


def _status() -> tuple[int, int]:
    rss = hwm = 0
    with open("/proc/self/status") as fh:
        for ln in fh:
            if ln.startswith("VmRSS:"):
                rss = int(ln.split()[1]) * 1024
            elif ln.startswith("VmHWM:"):
                hwm = int(ln.split()[1]) * 1024
    return rss, hwm


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def child(spec: dict) -> dict:
    import torch
    from transformers import TrainerCallback

    torch.set_num_threads(1)  # the same arithmetic each run; memory does not depend on threads
    # the measurement itself: a tensor of 100 MiB appears in the resident set, then leaves it
    r0, _ = _status()
    t = torch.ones(100 * 2 ** 20 // 4)
    r1, _ = _status()
    del t
    r2, _ = _status()
    probe = ((r1 - r0) / 2 ** 20, (r2 - r0) / 2 ** 20)

    got: dict = {"probe": probe, "steps": []}
    mark: dict = {}
    params: set[int] = set()  # the model's parameters' storages (not activations)
    saved: dict[int, int] = {}

    def pack(t):  # every tensor autograd saves for the backward pass, by storage (views counted once)
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    # DPO and KTO also run the model under no_grad (the reference with its adapters disabled, KTO's KL sequences):
    # only the forward pass that trains is measured
    def pre(module, args, kwargs):
        if module.training and torch.is_grad_enabled():
            saved.clear()
            mark["hooks"] = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
            mark["hooks"].__enter__()
            mark["start"] = _status()[0]
            _reset_peak()

    def post(module, args, kwargs, out):
        if module.training and torch.is_grad_enabled():
            mark["kept"] = _status()[0] - mark["start"]
            mark["hooks"].__exit__(None, None, None)
            mark["saved"] = sum(saved.values())
            mark["tokens"] = int(kwargs["input_ids"].numel()) if "input_ids" in kwargs else None

    class AfterBackward(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            rss, hwm = _status()
            got["steps"].append({"kept": mark["kept"], "saved": mark["saved"], "peak": hwm - mark["start"],
                                 "tokens": mark["tokens"]})

    trainer = worker_trainer(spec["values"], Path(spec["run_dir"]), [AfterBackward()], steps=2, rows=BATCH * 2)
    params.update(p.untyped_storage().data_ptr() for p in trainer.model.parameters())
    trainer.model.register_forward_pre_hook(pre, with_kwargs=True)
    trainer.model.register_forward_hook(post, with_kwargs=True)
    trainer.train()
    return got


# ---------------------------------------------------------------- the parent


def long_rows(path: Path, stage: str = "sft", n: int = 64, words: int = MAX_LEN * 2) -> Path:
    """Rows far longer than MAX_LEN tokens (alpaca, preference or KTO): every sequence is MAX_LEN tokens.

    ``words``: words of each response (the tiny tokenizer makes about 4.5 tokens of one)."""
    import random

    rnd = random.Random(0)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma"]
    text = lambda: " ".join(rnd.choice(vocab) for _ in range(words))  # noqa: E731
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            ask = f"Repeat the words, row {i}."
            if STAGES[stage].get("data.format") == "preference":
                row = {"instruction": ask, "input": "", "chosen": text(), "rejected": text()}
            elif STAGES[stage].get("data.format") == "kto":
                row = {"messages": [{"role": "user", "content": ask}, {"role": "assistant", "content": text()}],
                       "label": i % 2 == 0}
            else:
                row = {"instruction": ask, "input": "", "output": text()}
            fh.write(json.dumps(row) + "\n")
    return path


def run(configs: list[tuple[str, str, str, bool, str]]) -> list[dict]:
    from engine.schema import JobConfig
    from engine.estimate import estimate

    rows = []
    with tempfile.TemporaryDirectory(prefix="finetui-bench-act-") as tmp:
        data = {st: long_rows(Path(tmp) / f"long-{st}.jsonl", st) for st in {c[4] for c in configs}}
        dirs = {s: build_model_dir(SHAPES[s], Path(tmp) / s.split()[0]) for s in {c[0] for c in configs}}
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "PYTHONPATH": str(ROOT)}
        for i, (shape, method, prec, gc, stage) in enumerate(configs):
            values = job_values(dirs[shape], data[stage], method, prec, gc, stage)
            spec = {"values": values, "run_dir": str(Path(tmp) / f"run{i}")}
            p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                               text=True, env=env, cwd=tmp, timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"{shape} {method} {prec} {stage}: {p.stderr[-2000:]}")
            got = json.loads(p.stdout.strip().splitlines()[-1])
            real = got["steps"][-1]
            est = estimate(JobConfig(values=values).resolved(), model_config=SHAPES[shape])
            act, logits, grads = (est.part(n).bytes for n in ("activations", "logits", "gradients"))
            # at the end of the forward pass: the activations without the layer gradient checkpointing recomputes
            # in the backward pass ((activations without checkpointing - final norm) ÷ layers), plus what the head
            # keeps: the hidden states the fused LM head saves (n × hidden, in the model's dtype: fp32 here), the
            # score head's input (reward), or the logits the model returns (ORPO; + the LM head's input when it trains)
            h, L, V = (SHAPES[shape][k] for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
            seqs = BATCH * (2 if stage in ("dpo", "orpo", "reward") else 1)
            tokens = seqs * MAX_LEN
            final_norm = tokens * (h * (8 if method == "full" else 4) + 4)
            recomputed = (est.activations_other_bytes - final_norm) / L if gc else 0.0
            head = {"reward": tokens * h * 4, "orpo": tokens * V * 4 + (tokens * h * 4 if method == "full" else 0)}
            kept_pred = act - recomputed + head.get(stage, seqs * (MAX_LEN - 1) * h * 4)
            returned = tokens * V * 4 if stage == "orpo" else 0  # resident, but not saved by autograd
            rows.append({"shape": shape, "method": method, "precision": prec, "gc": gc, "stage": stage,
                         "tokens": real["tokens"],
                         "kept": real["kept"], "saved": real["saved"], "peak": real["peak"], "activations": act, "logits": logits,
                         "gradients": grads, "kept_pred": kept_pred,
                         # the total's step term: max(activations + logits (+ the LM head's gradient), gradients)
                         "step": est.step_bytes,
                         "saved_pred": kept_pred - returned, "probe": got["probe"]})
    return rows


def report(rows: list[dict]) -> str:
    mib = lambda b: f"{b / 2 ** 20:.1f}"  # noqa: E731
    L = ["| shape | stage | method | precision | checkpointing | saved by autograd | kept (resident) | activations as kept "
         "(predicted) | error vs saved | error vs kept | peak (resident) | the estimate's step term "
         "(predicted) | error |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    worst_s = worst_k = worst_p = 0.0
    for r in rows:
        pk = r["kept_pred"]
        pp = r["step"]  # the estimate's step term (DDP, no accumulation)
        es, ek, ep = r["saved_pred"] / r["saved"] - 1, pk / r["kept"] - 1, pp / r["peak"] - 1
        worst_s, worst_k, worst_p = max(worst_s, abs(es)), max(worst_k, abs(ek)), max(worst_p, abs(ep))
        L.append(f"| {r['shape']} | {r['stage']} | {r['method']} | {r['precision']} | {'on' if r['gc'] else 'off'} | "
                 f"{mib(r['saved'])} MiB | {mib(r['kept'])} MiB | {mib(pk)} MiB | {es * 100:+.1f} % | {ek * 100:+.1f} % "
                 f"| {mib(r['peak'])} MiB | {mib(pp)} MiB | {ep * 100:+.1f} % |")
    L.append("")
    probe = rows[0]["probe"] if rows else (0, 0)
    L.append(f"worst error: vs saved {worst_s * 100:.1f} %, vs kept {worst_k * 100:.1f} %, peak {worst_p * 100:.1f} % "
             f"over {len(rows)} configurations (target: within 15 %); {BATCH} rows × {MAX_LEN} tokens a micro-batch "
             f"(DPO / ORPO / reward: {2 * BATCH} sequences, chosen and rejected); "
             f"the probe tensor of 100 MiB: +{probe[0]:.2f} MiB, then {probe[1]:+.2f} MiB")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="four configurations")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return 0
    rows = run(QUICK[:1] if a.smoke else QUICK if a.quick else CONFIGS)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    print("estimator vs the resident set of a training step (CPU, sdpa, a process per configuration, "
          f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD})")
    print(report(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

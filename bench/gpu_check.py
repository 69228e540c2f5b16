#!/usr/bin/env python3
"""The GPU paths of issue 26 settled in one device call (about five minutes, one or two GPUs).

Each check runs finetui's real training worker (``python -m engine.train.worker`` under torchrun for
several ranks) on the tiny model saved as a bf16 / fp16 checkpoint, and reads what the worker wrote
(``events.jsonl``, the final model):

* ``master_weights`` — DDP full fine-tuning of a bf16 checkpoint under bf16 mixed precision trains float32
  parameters, and lr 1e-5 moves the weights (pure bf16 left most of them unchanged); ``fp16_scaler``: an
  fp16 checkpoint under fp16 mixed precision trains (GradScaler refused fp16 gradients: "Attempting to
  unscale FP16 gradients"). The run's logged memory is set against the estimate (``memory``).
* ``zero3_precision`` — DeepSpeed ZeRO-3 partitions a bf16 job in bf16 (it was float32), and the process
  group has the job's timeout (``runtime.ddp_timeout``).
* ``zero3_merge`` — ZeRO-3 LoRA with ``adapter.merge_adapter`` ends with a whole merged model.
* ``gpus`` — nvidia-smi's GPUs (engine/gpus.py) are torch's, in number and compute capability; bf16 is
  chosen only where it is not emulated; more ranks than GPUs are refused before launch.
* ``visible_devices`` (2+ GPUs) — CUDA_VISIBLE_DEVICES=1: nvidia-smi's parse and torch name the same GPU,
  and the DeepSpeed launcher's rank runs on it (``--include``), not on GPU 0.
* ``packing`` — tokens/s of finetui's packing with sdpa (bins with a block mask) against flash-attention-2
  (flattened, varlen), when flash-attn is installed.

    python bench/gpu_check.py --out DIR          # on a GPU machine: DIR/gpu_check.json and .md
    python bench/gpu_check.py --cpu-smoke --out DIR   # the same path on CPU (gloo, bf16 autocast): a check
                                                      # that the script runs before spending GPU time

Exit 0 when every check that ran passed; a check that cannot run here is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BASE = {"data.train_path": "finetui:samples/alpaca_demo.jsonl", "data.format": "alpaca", "data.max_samples": 8,
        "trainer.stage": "sft", "general.batch_size": 2, "general.epochs": None, "general.max_sequence_length": 128,
        "runtime.gradient_checkpointing": False, "runtime.lr_scheduler": "constant", "data.packing": False,
        "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no", "eval.logging_steps": 1,
        "tracking.tensorboard": False}


class Check:
    def __init__(self, device: str, work: Path, gpus: int):
        self.device, self.work, self.gpus = device, work, gpus
        self.results: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- helpers
    def record(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        t0 = time.time()
        try:
            out = fn() or {}
            ok = out.pop("ok", True)
        except Skip as e:
            ok, out = None, {"why": str(e)}
        except Exception as e:  # noqa: BLE001 - one check's failure is its row, the others still run
            ok, out = False, {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-1500:]}
        row = {"check": name, "ok": ok, "seconds": round(time.time() - t0, 1), **out}
        self.results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "traceback"}), file=sys.stderr, flush=True)

    def ranks(self) -> int:
        return max(1, min(2, self.gpus)) if self.device == "cuda" else 1

    def train(self, name: str, values: dict[str, Any], ranks: int = 1, env: dict[str, str] | None = None,
              timeout: float = 240) -> tuple[Path, list[dict]]:
        """The job as a run directory, trained by the real worker (torchrun for several ranks); → (dir, events)."""
        from engine import presets
        from engine.schema import JobConfig
        from engine.train.command import free_port

        d = self.work / name
        vals = {**BASE, "launch.device": self.device, "launch.procs_per_node": ranks, **values}
        job = JobConfig(profile="native", values={k: v for k, v in vals.items() if v is not None})
        job.validate()
        d.mkdir(parents=True)
        presets.save(job, d / "config.toml", resolved=True)
        worker = ["-m", "engine.train.worker", "--run-dir", str(d)]
        cmd = [sys.executable, *worker] if ranks == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
             str(free_port()), *worker]
        e = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
             **(env or {})}
        with open(d / "worker.log", "w") as log:
            p = subprocess.run(cmd, cwd=d, env=e, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        recs = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines() if x.strip()] \
            if (d / "events.jsonl").exists() else []
        end = [r for r in recs if r["kind"] == "end"]
        if p.returncode != 0 or not end or end[-1]["outcome"] != "completed":
            errs = [r.get("message") for r in recs if r["kind"] == "error"]
            tail = (d / "worker.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{name}: exit {p.returncode}, errors {errs}, log: {' | '.join(tail)}")
        return d, recs

    @staticmethod
    def status(recs: list[dict]) -> dict:
        return [r for r in recs if r["kind"] == "status" and r.get("trainable_params")][-1]

    # ---------------------------------------------------------------- the checks
    def checkpoints(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from engine.tiny import ensure_tiny_model

        tiny = ensure_tiny_model()
        self.ckpt = {}
        for dt in ("bfloat16", "float16"):
            d = self.work / f"ckpt-{dt}"
            AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).to(getattr(torch, dt)).save_pretrained(d)
            AutoTokenizer.from_pretrained(tiny).save_pretrained(d)
            self.ckpt[dt] = d

    def master_weights(self) -> dict:
        from safetensors.torch import load_file

        vals = {"model.name_or_path": str(self.ckpt["bfloat16"]), "trainer.training_type": "full",
                "runtime.mixed_precision": "bf16", "general.learning_rate": 1e-5, "general.max_steps": 6}
        d, recs = self.train("master_weights", vals, self.ranks())
        st = self.status(recs)
        before = load_file(str(self.ckpt["bfloat16"] / "model.safetensors"))
        after = load_file(str(d / "final" / "model.safetensors"))
        keys = [k for k in before if k.startswith("model.layers.")]
        changed = sum(int((before[k].float() != after[k].float()).sum()) for k in keys) / \
            sum(before[k].numel() for k in keys)
        logs = [r for r in recs if r["kind"] == "log"]
        self.memory_run = (vals, logs[-1] if logs else {}, self.ranks())
        return {"ok": st.get("trainable_dtype") == "float32" and changed > 0.9, "trainable_dtype":
                st.get("trainable_dtype"), "decoder_weights_changed": round(changed, 4),
                "losses": [r.get("loss") for r in logs], "ranks": self.ranks()}

    def fp16_scaler(self) -> dict:
        if self.device != "cuda":
            raise Skip("fp16 mixed precision needs CUDA")
        vals = {"model.name_or_path": str(self.ckpt["float16"]), "trainer.training_type": "full",
                "runtime.mixed_precision": "fp16", "general.learning_rate": 1e-5, "general.max_steps": 4}
        _d, recs = self.train("fp16_scaler", vals, 1)
        st = self.status(recs)
        return {"ok": st.get("trainable_dtype") == "float32", "trainable_dtype": st.get("trainable_dtype"),
                "frozen_dtype": st.get("frozen_dtype")}

    def memory(self) -> dict:
        """The master-weights run's logged peaks against the estimate (CUDA only: on CPU the figure is RSS)."""
        if self.device != "cuda":
            raise Skip("the allocator's peaks exist on CUDA only")
        from engine.schema import JobConfig
        from engine.estimate import CUDA_CONTEXT_BYTES, GIB, estimate

        vals, log, ranks = self.memory_run
        res = JobConfig(values={**BASE, "launch.device": "cuda", "launch.procs_per_node": ranks, **vals}).resolved()
        est = estimate(res, model_config=json.loads((self.ckpt["bfloat16"] / "config.json").read_text()),
                       gpu_memory_gb=self.gpu_gib)
        predicted = (est.total_bytes - CUDA_CONTEXT_BYTES) / 2**20
        return {"estimate_mib": round(predicted, 1), "max_memory_allocated_mib": log.get("memory_mb"),
                "max_memory_reserved_mib": log.get("memory_reserved_mb"), "per_gpu_reserved_mib":
                log.get("gpu_reserved_mb"), "margin": est.margin_formula,
                "note": "the tiny model: fixed costs (kernels' workspaces) dominate; bench/gpu_memory.py measures "
                        "real shapes"}

    def zero3_precision(self) -> dict:
        if importlib.util.find_spec("deepspeed") is None:
            raise Skip("deepspeed is not installed")
        vals = {"model.name_or_path": str(self.ckpt["bfloat16"]), "trainer.training_type": "full",
                "trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3, "runtime.mixed_precision":
                "bf16", "general.learning_rate": 1e-4, "general.max_steps": 2, "runtime.ddp_timeout": 777}
        _d, recs = self.train("zero3_precision", vals, self.ranks())
        st = self.status(recs)
        start = [r for r in recs if r["kind"] == "start"][0]
        return {"ok": st.get("partition_dtype") == "bfloat16" and start.get("process_group_timeout_s") == 777,
                "partition_dtype": st.get("partition_dtype"),
                "process_group_timeout_s": start.get("process_group_timeout_s"), "ranks": self.ranks()}

    def zero3_merge(self) -> dict:
        if importlib.util.find_spec("deepspeed") is None:
            raise Skip("deepspeed is not installed")
        from safetensors import safe_open

        vals = {"model.name_or_path": str(self.ckpt["bfloat16"]), "trainer.training_type": "lora",
                "trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3, "adapter.merge_adapter": True,
                "runtime.mixed_precision": "bf16", "general.learning_rate": 1e-3, "general.max_steps": 2}
        d, _recs = self.train("zero3_merge", vals, self.ranks())
        with safe_open(str(d / "final" / "model.safetensors"), "pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        whole = all(0 not in s for s in shapes.values()) and not (d / "final" / "adapter_config.json").exists()
        return {"ok": whole, "embed_shape": shapes.get("model.embed_tokens.weight"), "ranks": self.ranks()}

    def gpus_probe(self) -> dict:
        if self.device != "cuda":
            raise Skip("no GPU")
        import torch

        from engine import gpus as G
        from engine.schema import ConfigError, JobConfig
        from engine.launch import fit_to_gpus
        from engine.train.modeling import _bf16

        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        smi = G.local(env) or []
        caps = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
        emulated = bool(torch.cuda.is_bf16_supported(including_emulation=True))
        native = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        auto_bf16 = _bf16({"runtime.mixed_precision": "auto"}, "cuda")
        job = JobConfig(values={**BASE, "model.name_or_path": "finetui:tiny-llama", "launch.device": "cuda",
                                "launch.procs_per_node": len(smi) + 1})
        try:
            fit_to_gpus(job)
            refused = None
        except ConfigError as e:
            refused = str(e.problems[0])
        ok = len(smi) == len(caps) and [g.compute_cap for g in smi] == caps and auto_bf16 == native \
            and native == (min(caps) >= G.AMPERE) and refused is not None
        return {"ok": ok, "nvidia_smi": [f"{g.index}: {g.name} cc {g.cap}" for g in smi],
                "torch_caps": [f"{a}.{b}" for a, b in caps], "bf16_with_emulation": emulated,
                "bf16_native": native, "auto_picks_bf16": auto_bf16, "more_ranks_refused": refused}

    def visible_devices(self) -> dict:
        if self.device != "cuda" or self.gpus < 2:
            raise Skip("needs 2 GPUs")
        from engine import gpus as G

        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "1"}
        want = (G.local(env) or [None])[0]
        code = "import torch; print(torch.cuda.device_count(), torch.cuda.get_device_properties(0).uuid)"
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        count, uuid = p.stdout.split()[-2:]
        out: dict[str, Any] = {"smi_gpu": want and f"{want.index} {want.uuid}", "torch_gpu0": uuid, "count": count}
        ok = want is not None and want.index == 1 and count == "1" and want.uuid.endswith(uuid[-12:])
        if importlib.util.find_spec("deepspeed") is None:
            out["deepspeed"] = "skipped: not installed"
        else:  # the DeepSpeed launcher's rank under CUDA_VISIBLE_DEVICES=1 (finetui's argv, a probe script)
            from engine.train.command import worker_argv

            probe = self.work / "rank_probe.py"
            got = self.work / "rank_probe.txt"
            probe.write_text("import sys, torch\nopen(sys.argv[1], 'w').write(str(torch.cuda.get_device_properties"
                             "(0).uuid))\n")
            argv = worker_argv({"launch.launcher": "deepspeed", "launch.procs_per_node": 1}, self.work,
                               python=sys.executable, visible="1")
            argv = argv[:argv.index("--module")] + [str(probe), str(got)]
            q = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, cwd=self.work)
            ds_uuid = got.read_text().strip() if got.exists() else None
            out.update(deepspeed_argv=argv[3:8], deepspeed_rank_gpu=ds_uuid,
                       deepspeed_error=None if ds_uuid else (q.stderr.strip().splitlines() or ["?"])[-1])
            ok = ok and ds_uuid == uuid
        return {"ok": ok, **out}

    def packing(self) -> dict:
        sys.path.insert(0, str(ROOT / "bench"))
        import packing as PK

        cuda = self.device == "cuda"
        if cuda:
            from engine.modelinfo import CATALOG

            shape, rows, max_len = CATALOG["meta-llama/Llama-3.2-1B"], 192, 2048
        else:  # (a smaller Llama than bench/packing.py's CPU one: the smoke run only shows that the path works)
            shape = {**PK.SMALL, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}
            rows, max_len = 16, 128
        sdpa = PK.run(self.device, rows, 8, max_len, 1, shape, "sdpa", ("padded", "packed_rows"))
        out = {"sdpa_padded_tok_s": round(sdpa["tokens_per_s"]["padded"]),
               "sdpa_packed_bins_tok_s": round(sdpa["tokens_per_s"]["packed_rows"]), "model_params": sdpa["params"]}
        if not cuda or importlib.util.find_spec("flash_attn") is None:
            out["flash_attention_2"] = "skipped: " + ("CPU" if not cuda else "flash-attn is not installed")
            return out
        fa = PK.run("cuda", rows, 8, max_len, 1, shape, "flash_attention_2", ("padded", "packed"))
        out.update(fa2_padded_tok_s=round(fa["tokens_per_s"]["padded"]),
                   fa2_packed_flat_tok_s=round(fa["tokens_per_s"]["packed"]),
                   fa2_packed_over_sdpa_packed=round(fa["tokens_per_s"]["packed"] / sdpa["tokens_per_s"]["packed_rows"],
                                                     3))
        return out


class Skip(Exception):
    pass


def report(result: dict) -> str:
    L = [f"GPU check (issue 26) — {result['device']}, {result['gpus']} GPU(s), torch {result['torch']}, "
         f"{result['date']}", "", "| check | result | figures |", "|---|---|---|"]
    for r in result["checks"]:
        verdict = "skipped" if r["ok"] is None else "ok" if r["ok"] else "FAILED"
        figs = "; ".join(f"{k} {v}" for k, v in r.items() if k not in ("check", "ok", "traceback"))
        L.append(f"| {r['check']} | {verdict} | {figs} |")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", "--cpu-smoke", dest="cpu_smoke", action="store_true",
                    help="the same path on CPU: does the script run? (tests/test_bench_gpu_check.py)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/finetui-gpu")))
    a = ap.parse_args()
    import tempfile

    import torch

    cuda = torch.cuda.is_available() and not a.cpu_smoke
    if not cuda and not a.cpu_smoke:
        print("gpu_check: no CUDA GPU here — skipped (--cpu-smoke checks the script on CPU)")
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="finetui-gpu-check-") as tmp:
        os.environ.setdefault("FINETUI_CACHE_DIR", str(Path(tmp) / "cache"))
        c = Check("cuda" if cuda else "cpu", Path(tmp), torch.cuda.device_count() if cuda else 0)
        c.gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None
        c.checkpoints()
        for name, fn in (("gpus", c.gpus_probe), ("master_weights", c.master_weights), ("memory", c.memory),
                         ("fp16_scaler", c.fp16_scaler), ("zero3_precision", c.zero3_precision),
                         ("zero3_merge", c.zero3_merge), ("visible_devices", c.visible_devices),
                         ("packing", c.packing)):
            if name == "memory" and not hasattr(c, "memory_run"):
                continue
            c.record(name, fn)
    result = {"device": torch.cuda.get_device_name(0) if cuda else f"CPU smoke run ({platform.processor() or 'cpu'})",
              "gpus": c.gpus, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "checks": c.results}
    (a.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    text = report(result)
    (a.out / "gpu_check.md").write_text(text)
    print(text)
    return 1 if any(r["ok"] is False for r in c.results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-test fixtures: run directories for the real worker on the tiny model (CPU).

Every single-rank run of the training matrix is written as a run directory up
front and trained by one ``tests/train_runner.py`` process (torch, TRL and PEFT
are imported once; each run is forked from there), so the matrix costs seconds
per run instead of a full interpreter start each.  Runs are tiny: 4 rows, batch
4, 64 tokens, a handful of steps — every step sees the same batch, so the loss
must fall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_data import COMPAT_DATA

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "train_runner.py"
PYTHON = sys.executable

#: the tiny settings shared by every training test
BASE: dict[str, Any] = {
    "model.name_or_path": "finetui:tiny-llama",
    "data.train_path": "finetui:samples/alpaca_demo.jsonl",
    "data.format": "alpaca",
    "data.max_samples": 4,
    "trainer.stage": "sft",
    "trainer.training_type": "lora",
    "general.batch_size": 4,
    "general.max_steps": 4,
    "general.epochs": None,
    "general.learning_rate": 0.01,
    "general.max_sequence_length": 64,
    "runtime.mixed_precision": "none",
    "runtime.gradient_checkpointing": False,
    "runtime.lr_scheduler": "constant",
    "eval.evaluation_strategy": "no",
    "eval.checkpoint_strategy": "no",
    "eval.logging_steps": 1,
    "tracking.tensorboard": False,
    "launch.device": "cpu",
    "launch.procs_per_node": 1,
}


def train_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_DATASETS_DISABLE_PROGRESS_BARS="1",
               PYTHONUNBUFFERED="1", FINETUI_STOP_GRACE_S="20", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def write_run(run_dir: Path, **values: Any):
    """A validated job (BASE + values) saved as ``run_dir/config.toml``; returns the JobConfig."""
    from engine import presets
    from engine.schema import JobConfig

    vals = {**BASE, **values}
    job = JobConfig(profile="native", values={k: v for k, v in vals.items() if v is not None})
    job.validate()
    run_dir.mkdir(parents=True, exist_ok=True)
    presets.save(job, run_dir / "config.toml", resolved=True)
    return job


def events(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / "events.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def kinds(recs: list[dict], kind: str) -> list[dict]:
    return [r for r in recs if r.get("kind") == kind]


def losses(recs: list[dict]) -> list[float]:
    return [float(r["loss"]) for r in kinds(recs, "log") if r.get("loss") is not None]


def describe_run(run_dir: Path) -> str:
    """The tail of a run's worker.log and its error events, for assertion messages."""
    log = Path(run_dir) / "worker.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    errs = [r.get("message") for r in kinds(events(run_dir), "error")]
    return f"{run_dir}: errors={errs}\n{tail}"


def session_cache(tmp_path_factory) -> str:
    """The tiny model's cache folder of this session (the one tests/conftest.py sets per test)."""
    return os.environ.get("FINETUI_TEST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "finetui-cache"))


def run_batch(specs: list[dict], cache_dir: str, timeout: float = 900) -> dict[str, dict]:
    """Run every spec in one runner process; → spec name → {code, seconds}."""
    spec_file = Path(specs[0]["run_dir"]).parent / f"specs-{os.getpid()}.json"
    spec_file.write_text(json.dumps(specs))
    r = subprocess.run([PYTHON, str(RUNNER), str(spec_file)], cwd=ROOT, env=train_env(FINETUI_CACHE_DIR=cache_dir),
                       capture_output=True, text=True, timeout=timeout)
    out: dict[str, dict] = {}
    for line in r.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "name" in rec:
            out[rec["name"]] = rec
    if r.returncode != 0:
        raise AssertionError(f"train_runner failed ({r.returncode}): {r.stderr[-3000:]}")
    return out


@dataclass
class Spec:
    name: str
    values: dict[str, Any] | None  # None: train the same run directory again (config unchanged)
    dir: str = ""  # run directory name (default: the spec name)
    kind: str = "train"  # or "generate": load dir's final model and generate (generated.json)
    hook: str | None = None
    at: int = 0
    temperature: float = 0.0  # generate: sample at this temperature (0: greedy)


#: every single-rank run of the training matrix, in the order they run
MATRIX: list[Spec] = []


def matrix_run(name: str, values: dict[str, Any] | None = None, **kw: Any) -> None:
    MATRIX.append(Spec(name, values, **kw))


PREF = {"data.train_path": "finetui:samples/preference_demo.jsonl", "data.format": "preference",
        "trainer.stage": "dpo", "general.learning_rate": 0.02, "general.max_steps": 3}
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")

# SFT × tuning methods, pre-training on the corpus
matrix_run("sft_full", {"trainer.training_type": "full", "general.learning_rate": 0.005})
matrix_run("sft_lora", {"general.learning_rate": 0.02, "adapter.target_modules": [], "adapter.loraplus_lr_ratio": 4.0,
                        "data.packing": False})  # the padded path
# packing (on by default): 16 rows into a few 256-token sequences, two per batch
matrix_run("sft_packed", {"trainer.training_type": "full", "general.learning_rate": 0.005, "data.max_samples": 16,
                          "general.max_sequence_length": 256, "general.batch_size": 2, "general.max_steps": 3,
                          "runtime.lr_scheduler": "constant"})
matrix_run("sft_tfew", {"trainer.training_type": "tfew", "general.learning_rate": 0.5})
matrix_run("sft_prompt", {"trainer.training_type": "prompt_tuning", "adapter.prompt_tuning_init": "text",
                          "adapter.prompt_tuning_init_text": "Answer the question.",
                          "adapter.num_virtual_tokens": 4, "general.learning_rate": 0.3})
matrix_run("sft_freeze", {"trainer.training_type": "freeze", "adapter.freeze_trainable_layers": 1,
                          "general.learning_rate": 0.01, "runtime.lr_scheduler": "cosine", "runtime.min_lr": 0.001,
                          "runtime.lr_warmup_steps": 1, "model.attention_dropout": 0.1, "model.ffn_dropout": 0.1,
                          "model.hidden_dropout": 0.1})
matrix_run("pretrain", {"trainer.stage": "pretrain", "trainer.training_type": "full",
                        "data.train_path": "finetui:samples/corpus_demo.jsonl", "data.format": "corpus",
                        "general.learning_rate": 0.005})
# DPO × every preference loss, + SFT mixing (preference_ftx) and label smoothing
for _loss in PREF_LOSSES:  # (ORPO and kto_pair get an SFT weight they cannot use: a warning says so)
    matrix_run(f"dpo_{_loss}", {**PREF, "preference.preference_loss": _loss,
                                "preference.preference_ftx": 0.5 if _loss in ("orpo", "kto_pair") else 0.0})
matrix_run("dpo_sigmoid_ftx_smooth", {**PREF, "preference.preference_loss": "sigmoid",
                                      "preference.preference_ftx": 1.0, "preference.dpo_label_smoothing": 0.1})
matrix_run("dpo_hinge_ftx", {**PREF, "preference.preference_loss": "hinge", "preference.preference_ftx": 0.5})
matrix_run("dpo_simpo_ftx", {**PREF, "preference.preference_loss": "simpo", "preference.preference_ftx": 0.5,
                             "preference.simpo_gamma": 1.0})
# KTO on unpaired rows; reward model
matrix_run("kto", {**PREF, "trainer.stage": "kto", "data.train_path": "finetui:samples/kto_demo.jsonl",
                   "data.format": "kto", "data.max_samples": 8})
matrix_run("reward", {**PREF, "trainer.stage": "reward"})
# early stopping: the second evaluation cannot improve by 10 → stop at step 2 of 6
matrix_run("early_stop", {"data.max_samples": 8, "data.val_size": 0.25, "general.batch_size": 2,
                          "general.max_steps": 6, "eval.evaluation_strategy": "steps", "eval.eval_steps": 1,
                          "eval.early_stopping_patience": 1, "eval.early_stopping_threshold": 10.0,
                          "eval.checkpoint_strategy": "steps", "eval.checkpoint_steps": 1,
                          "eval.save_best_checkpoint": True})
# resume: killed while checkpoint-4's trainer_state.json is half written, then the same run again
RESUME = {"data.max_samples": 8, "general.batch_size": 2, "general.max_steps": 6, "general.learning_rate": 0.02,
          "eval.checkpoint_strategy": "steps", "eval.checkpoint_steps": 1,
          "general.resume_from_checkpoint": "last"}
matrix_run("resume_ref", {**RESUME, "eval.checkpoint_limit": 2})  # (and it keeps only the last 2 checkpoints)
matrix_run("resume_killed", RESUME, dir="resume", hook="kill_in_checkpoint", at=4)
matrix_run("resume_again", None, dir="resume")
# resume from an explicit path: another run's checkpoint-5 → only step 6 is trained here
matrix_run("resume_path", {**RESUME, "general.resume_from_checkpoint": "{base}/resume_ref/checkpoints/checkpoint-5"})
# merge_adapter: the final model is a plain model
matrix_run("merge", {"adapter.merge_adapter": True, "general.max_steps": 2})
# errors: out of memory in step 2 (simulated), a LoRA target the model does not have
matrix_run("oom", {"general.max_steps": 3}, hook="oom", at=2)
matrix_run("bad_target", {"adapter.target_modules": ["q_proj", "attn_qkv"]})
# (device auto: with launch.device = cpu the validation refuses it first; the runner's env hides any GPU)
matrix_run("qlora_cpu", {"trainer.training_type": "qlora", "launch.device": "auto"})
# LLaMA-Factory's example configurations, imported unchanged and trained on their own data (identity +
# alpaca_en_demo, c4_demo, dpo/kto_en_demo) with the tiny model in place of Qwen3-4B, a few steps on CPU
COMPAT_EXAMPLES = COMPAT_DATA.parent / "examples"
COMPAT_RUNS = ("qwen3_lora_sft", "qwen3_full_sft", "qwen3_lora_pretrain", "qwen3_lora_dpo", "qwen3_lora_kto",
               "qwen3_lora_reward")
CPU_TINY = {"model.name_or_path": "finetui:tiny-llama", "model.trust_remote_code": None, "general.max_steps": 2,
            "general.epochs": None, "general.max_sequence_length": 128, "runtime.mixed_precision": "none",
            "runtime.gradient_accumulation_steps": 2, "eval.checkpoint_strategy": "no", "launch.device": "cpu",
            # the runner forks single ranks without a launcher; DeepSpeed's ZeRO-3 (qwen3_full_sft) is trained
            # by tests/test_train_distributed.py under torchrun
            "trainer.distributed_backend": "ddp", "trainer.zero_stage": None, "trainer.offload_optimizer": None,
            "trainer.offload_params": None}


def compat_values(name: str) -> dict[str, Any]:
    """An example's imported values with ``CPU_TINY`` on top: what a user who imports it and points it at a
    model they have would train."""
    from engine import interop

    job, _ = interop.import_file(COMPAT_EXAMPLES / f"{name}.yaml")
    return {**{k: None for k in BASE}, **job.values, **CPU_TINY}


if COMPAT_EXAMPLES.is_dir():
    for _name in COMPAT_RUNS:
        matrix_run(f"compat_{_name}", compat_values(_name))

# the trained models generate, loaded the way `finetui generate` loads them
for _name in ("merge", "sft_full", "sft_tfew", "sft_prompt", "pretrain", "dpo_sigmoid"):
    matrix_run(f"gen_{_name}", dir=_name, kind="generate", temperature=0.8 if _name == "sft_full" else 0.0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny model, built in this session's cache before any multi-rank run uses it."""
    cache = session_cache(tmp_path_factory)
    d = Path(cache) / "tiny-llama"
    from engine import tiny

    if not tiny._is_built(d):
        subprocess.run([PYTHON, "-m", "engine.tiny"], cwd=ROOT, env=train_env(FINETUI_CACHE_DIR=cache),
                       check=True, capture_output=True, timeout=300)
    return d


@pytest.fixture(scope="session")
def train_matrix(tmp_path_factory) -> dict[str, Any]:
    """Train every run of MATRIX once per session; → spec name → Path of its run directory.

    ``train_matrix["_results"]`` maps spec name → {code, seconds} from the runner."""
    base = tmp_path_factory.mktemp("train-matrix")
    specs, dirs = [], {}
    for sp in MATRIX:
        d = base / (sp.dir or sp.name)
        if sp.values is not None and sp.kind == "train":
            write_run(d, **{k: v.replace("{base}", str(base)) if isinstance(v, str) else v
                            for k, v in sp.values.items()})
        specs.append({"name": sp.name, "run_dir": str(d), "kind": sp.kind, "hook": sp.hook, "at": sp.at,
                      "temperature": sp.temperature})
        dirs[sp.name] = d
    t0 = time.monotonic()
    results = run_batch(specs, session_cache(tmp_path_factory))
    results["_total_seconds"] = round(time.monotonic() - t0, 1)
    return {**dirs, "_results": results}

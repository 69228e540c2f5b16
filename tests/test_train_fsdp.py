"""FSDP2 on two CPU ranks for real (torchrun, gloo, accelerate's FSDP2 through the Trainer): the demo preset
with ``distributed_backend = "fsdp"`` trains to the end with the model cut into FSDP units; a full fine-tuning
run checkpoints (sharded state dict) and a run resumed from its middle checkpoint continues with the same losses
as the uninterrupted run, step for step; one rank with FSDP's activation checkpointing saves a whole model;
SIGTERM saves a sharded checkpoint where the run stops and leaves no process."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.fixtures_train import BASE, ROOT, describe_run, events, kinds, train_env

pytestmark = [pytest.mark.slow]

FINETUI = [sys.executable, "-m", "tui.cli"]


def _train(tmp: Path, name: str, doc: dict) -> Path:
    """``finetui train`` on a preset written from ``doc``; the run directory."""
    runs = tmp / "runs"
    p = tmp / f"{name}.toml"
    doc.setdefault("launch", {})["run_name"] = name
    p.write_text(tomli_w.dumps(doc))
    r = subprocess.run(FINETUI + ["train", str(p), "--runs-dir", str(runs)], cwd=tmp,
                       env=train_env(), capture_output=True, text=True, timeout=540)
    run = runs / name
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + (describe_run(run) if run.exists() else "")
    return run


def _doc(vals: dict) -> dict:
    """A preset document (sections) from dotted values; None values left out."""
    doc: dict = {"profile": "native"}
    for k, v in vals.items():
        if v is not None:
            sec, name = k.split(".", 1)
            doc.setdefault(sec, {})[name] = v
    return doc


def _step_losses(run: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in kinds(events(run), "log") if r.get("loss") is not None}


@pytest.mark.timeout(600)
def test_demo_preset_with_fsdp_on_two_ranks_completes(tmp_path, tiny_model):
    doc = tomllib.loads((ROOT / "presets" / "demo.toml").read_text())
    doc["trainer"]["distributed_backend"] = "fsdp"
    doc["general"]["max_steps"] = 6
    doc["eval"].update(eval_steps=3, checkpoint_steps=3, logging_steps=1)
    run = _train(tmp_path, "demo_fsdp", doc)
    recs = events(run)
    start = kinds(recs, "start")[0]
    assert start["world_size"] == 2 and start["backend"] == "fsdp" and start["method"] == "lora"
    assert start["fsdp_units"] >= 3, start  # each of the 2 decoder layers, and the whole model
    assert kinds(recs, "end")[-1]["outcome"] == "completed", describe_run(run)
    assert len(_step_losses(run)) == 6 and kinds(recs, "eval")
    assert [c["step"] for c in kinds(recs, "checkpoint")] == [3, 6]
    assert json.loads((run / "final" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert (run / "final" / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.timeout(900)
def test_fsdp_sharded_checkpoint_resumes_with_the_same_losses(tmp_path, tiny_model):
    """Full fine-tuning under FSDP2 with sharded checkpoints: 8 steps straight; then a new run resumed from the
    first one's checkpoint-4 logs steps 5..8 with the same losses (model shards, optimizer state, scheduler,
    data position and RNG all restored)."""
    vals = {**BASE, "trainer.training_type": "full", "trainer.distributed_backend": "fsdp",
            "trainer.fsdp_state_dict": "sharded", "launch.procs_per_node": 2, "general.batch_size": 2,
            "data.max_samples": 32, "general.max_steps": 8, "general.learning_rate": 0.002,
            "runtime.lr_scheduler": "cosine", "runtime.seed": 7,
            "eval.checkpoint_strategy": "steps", "eval.checkpoint_steps": 4}
    doc = _doc(vals)
    whole = _train(tmp_path, "whole", doc)
    ck = whole / "checkpoints" / "checkpoint-4"
    assert (ck / "trainer_state.json").is_file()
    shards = [p.name for p in ck.rglob("*.distcp")]
    assert len(shards) >= 2, sorted(p.name for p in ck.rglob("*"))  # each rank wrote its own shard
    doc["general"]["resume_from_checkpoint"] = str(ck)
    resumed = _train(tmp_path, "resumed", doc)
    a, b = _step_losses(whole), _step_losses(resumed)
    assert sorted(a) == list(range(1, 9)) and sorted(b) == [5, 6, 7, 8], (a, b)
    for s in (5, 6, 7, 8):
        assert b[s] == pytest.approx(a[s], abs=2e-4), (s, a, b)
    assert a[8] < a[1], a
    # the final model is whole (gathered), whatever form the checkpoints take
    assert any((resumed / "final").glob("*.safetensors")), sorted(p.name for p in (resumed / "final").iterdir())


@pytest.mark.timeout(600)
def test_fsdp_single_rank_full_with_activation_checkpointing_saves_a_whole_model(tmp_path, tiny_model):
    """One rank (its own process group on loopback: the Trainer refuses FSDP outside one), full fine-tuning with
    FSDP's own activation checkpointing: trains, and the final model is whole (every tensor its full shape)."""
    vals = {**BASE, "trainer.training_type": "full", "trainer.distributed_backend": "fsdp",
            "runtime.gradient_checkpointing": True, "general.max_steps": 3, "general.batch_size": 2}
    doc = _doc(vals)
    run = _train(tmp_path, "solo", doc)
    start = kinds(events(run), "start")[0]
    assert start["world_size"] == 1 and start["fsdp_units"] >= 3, start
    from safetensors import safe_open

    with safe_open(str(run / "final" / "model.safetensors"), "pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    assert shapes["model.embed_tokens.weight"] == [512, 64] and all(0 not in s for s in shapes.values()), shapes


@pytest.mark.timeout(600)
def test_fsdp_sigterm_saves_a_sharded_checkpoint_where_it_stops(tmp_path, monkeypatch, tiny_model):
    """`finetui stop` on an FSDP run (2 ranks, sharded checkpoints): the worker saves where it stops, writes
    `end stopped` itself, and no process of the run is left."""
    import engine.launch as L
    from tests.test_train_distributed import _env, _group_gone, _job, _procs_naming, _until_log_step

    _env(monkeypatch)
    job = _job(tmp_path / "runs", **{"trainer.distributed_backend": "fsdp", "trainer.fsdp_state_dict": "sharded",
                                     "launch.procs_per_node": 2, "general.batch_size": 2, "general.max_steps": 2000,
                                     "eval.checkpoint_strategy": "steps", "eval.checkpoint_steps": 1000})
    ref = L.start_run(job)
    d = ref.run_dir
    _until_log_step(ref, 3)
    assert L.stop_run(ref, grace=60) == "stopped"
    recs = events(d)
    end = kinds(recs, "end")
    assert len(end) == 1 and end[0]["outcome"] == "stopped" and end[0].get("by") != "launcher", describe_run(d)
    step = end[0]["step"]
    cks = kinds(recs, "checkpoint")
    assert cks and cks[-1]["step"] == step and cks[-1]["complete"], describe_run(d)
    assert len(list((d / "checkpoints" / f"checkpoint-{step}").rglob("*.distcp"))) >= 2
    assert _group_gone(json.loads((d / "launch.json").read_text())["pgid"], 5)
    assert _procs_naming(d) == []

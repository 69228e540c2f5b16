"""Two CPU ranks for real: the demo preset end to end (DDP, torchrun, gloo) and `finetui generate`
on its result; DeepSpeed ZeRO-3 (deepspeed launcher) to the end; DeepSpeed ZeRO-2 (torchrun)
stopped with SIGTERM, which leaves no process behind.  Runs are started detached by the real launcher, like the TUI does.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_train import BASE, ROOT, describe_run, events, kinds, losses, train_env

pytestmark = [pytest.mark.slow]

FINETUI = [sys.executable, "-m", "tui.cli"]


def _job(runs: Path, **values):
    from engine.schema import JobConfig

    vals = {**BASE, "launch.runs_dir": str(runs), **values}
    job = JobConfig(profile="native", values={k: v for k, v in vals.items() if v is not None})
    job.validate()
    return job


def _env(monkeypatch) -> None:  # noqa: ANN001
    for k, v in train_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("OMP_NUM_THREADS")  # the worker splits the cores between CPU ranks itself


def _wait_end(ref, timeout: float) -> list[dict]:
    import engine.launch as L

    src = L.event_source(ref)
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = src.read()
        got += recs
        if src.done:
            return got + src.read()
        if not recs:
            time.sleep(0.2)
    raise AssertionError(f"no end record after {timeout}s: {describe_run(ref.run_dir)}")


def _until_log_step(ref, step: int, timeout: float = 400) -> list[dict]:
    """The run's records until it has logged ``step`` (fails if it ends first)."""
    import engine.launch as L

    src = L.event_source(ref)
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not any(r["kind"] == "log" and r["step"] >= step for r in got):
        assert time.monotonic() < deadline and not src.done, describe_run(ref.run_dir)
        got += src.read()
        time.sleep(0.1)
    return got


def _group_gone(pgid: int, timeout: float = 30) -> bool:
    from engine.launch import procs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.group_alive(pgid):
            return True
        time.sleep(0.1)
    return False


def _procs_naming(run_dir: Path) -> list[int]:
    """Live processes whose command line names the run directory (any rank, launcher or supervisor)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(run_dir) in cmd and state != "Z":
            out.append(int(d.name))
    return out


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    return {k: v["shape"] for k, v in head.items() if k != "__metadata__"}


@pytest.mark.timeout(600)
def test_demo_preset_end_to_end_then_generate(tmp_path, tiny_model):
    """`finetui train presets/demo.toml`: 2 DDP ranks, falling loss, evaluations, the adapter; then generate."""
    runs = tmp_path / "runs"
    env = train_env()
    r = subprocess.run(FINETUI + ["train", str(ROOT / "presets" / "demo.toml"), "--runs-dir", str(runs)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    run = next(runs.iterdir())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + describe_run(run)
    recs = events(run)
    start = kinds(recs, "start")[0]
    assert start["world_size"] == 2 and start["backend"] == "ddp" and start["method"] == "lora"
    assert start["process_group_timeout_s"] == 1800  # the job's runtime.ddp_timeout (default), not NCCL's 10 minutes
    ls = losses(recs)
    assert len(ls) >= 10
    k = 3
    # falling loss: the demo's 46 steps fall by 0.300 to 0.305 (means of the first and last 3 logs; gloo's
    # reduction order varies the 4th decimal from run to run), so the bound sits below that, not on it
    assert sum(ls[-k:]) / k < sum(ls[:k]) / k - 0.25, ls
    assert kinds(recs, "eval") and all(e.get("loss") is not None for e in kinds(recs, "eval"))
    end = kinds(recs, "end")[-1]
    assert end["outcome"] == "completed" and end["final_path"] == str(run / "final")
    assert json.loads((run / "final" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert f"run {run.name}: completed" in r.stdout

    # the adapter loads onto the tiny model with peft and generates
    g = subprocess.run(FINETUI + ["generate", run.name, "--runs-dir", str(runs), "--prompt",
                                  "Reverse the word.\nharbor", "--max-new-tokens", "16", "--min-new-tokens", "4"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert g.returncode == 0, g.stderr[-2000:]
    assert g.stdout.strip() and "Traceback" not in g.stderr, (g.stdout, g.stderr[-2000:])

    # bad input: one line, exit 2 (before any heavy import)
    bad = subprocess.run(FINETUI + ["generate", "no-such-run", "--runs-dir", str(runs), "--prompt", "x"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "no run 'no-such-run'" in bad.stderr
    broken = runs / "broken"
    broken.mkdir()
    (broken / "config.toml").write_text((run / "config.toml").read_text())
    (broken / "events.jsonl").write_text(json.dumps({"t": 1, "kind": "end", "step": 3, "outcome": "failed"}) + "\n")
    nofinal = subprocess.run(FINETUI + ["generate", "broken", "--runs-dir", str(runs), "--prompt", "x"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert nofinal.returncode == 2, nofinal.stderr
    assert nofinal.stderr.strip() == f"run broken has no final model in {broken / 'final'}: it ended failed"


@pytest.mark.timeout(600)
def test_deepspeed_zero3_two_ranks(tmp_path, monkeypatch, tiny_model):
    """ZeRO-3 under the deepspeed launcher, full fine-tuning (the parameters are sharded), to the end."""
    import engine.launch as L

    _env(monkeypatch)
    job = _job(tmp_path / "runs", **{"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3,
                                     "launch.launcher": "deepspeed", "launch.procs_per_node": 2,
                                     "general.batch_size": 2, "general.max_steps": 3,
                                     "trainer.training_type": "full", "general.learning_rate": 0.005})
    ref = L.start_run(job)
    recs = _wait_end(ref, 480)
    d = ref.run_dir
    end = kinds(recs, "end")[-1]
    assert end["outcome"] == "completed", describe_run(d)
    start = kinds(recs, "start")[0]
    assert start["world_size"] == 2 and start["backend"] == "deepspeed"
    ls = losses(recs)
    assert len(ls) == 3 and ls[-1] < ls[0], ls  # 2 ranks × 2 rows = the same 4 rows every step
    info = json.loads((d / "launch.json").read_text())
    assert "deepspeed.launcher.runner" in info["command"]
    assert "shm_comm" not in (d / "worker.log").read_text()  # no JIT-compiled op on CPU
    # the saved model holds the gathered weights, not the empty ZeRO-3 shards
    shapes = _safetensors_shapes(d / "final" / "model.safetensors")
    assert shapes["model.embed_tokens.weight"] == [512, 64], shapes
    assert all(0 not in s for s in shapes.values()), shapes
    assert _group_gone(info["pgid"])


@pytest.mark.timeout(600)
def test_deepspeed_zero3_lora_merges_after_the_ranks_are_done(tmp_path, monkeypatch, tiny_model):
    """ZeRO-3 + adapter.merge_adapter on 2 ranks (torchrun): the merge runs in a process of its own once both
    ranks have saved and left the process group (rank 0 merged inside the live ZeRO-3 context: empty shards,
    and rank 0 alone in a gather while rank 1 waited for the timeout)."""
    import engine.launch as L

    _env(monkeypatch)
    job = _job(tmp_path / "runs", **{"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3,
                                     "launch.launcher": "torchrun", "launch.procs_per_node": 2,
                                     "general.batch_size": 2, "general.max_steps": 2, "runtime.ddp_timeout": 120,
                                     "adapter.merge_adapter": True})
    ref = L.start_run(job)
    recs = _wait_end(ref, 480)
    d = ref.run_dir
    assert kinds(recs, "end")[-1]["outcome"] == "completed", describe_run(d)
    assert kinds(recs, "start")[0]["process_group_timeout_s"] == 120
    assert any(r.get("phase") == "merging" for r in kinds(recs, "status"))
    shapes = _safetensors_shapes(d / "final" / "model.safetensors")
    assert shapes["model.embed_tokens.weight"] == [512, 64] and all(0 not in s for s in shapes.values()), shapes
    assert not (d / "final" / "adapter_config.json").exists() and (d / "adapter" / "adapter_config.json").exists()
    assert _group_gone(json.loads((d / "launch.json").read_text())["pgid"])


@pytest.mark.timeout(600)
def test_deepspeed_zero2_trains_then_sigterm_stops_every_rank(tmp_path, monkeypatch, tiny_model):
    """ZeRO-2 under torchrun (2 ranks, LoRA) trains; SIGTERM → it saves a checkpoint where it stops, writes
    `end stopped` itself, and no process of the run is left."""
    import engine.launch as L

    _env(monkeypatch)
    job = _job(tmp_path / "runs", **{"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 2,
                                     "launch.launcher": "torchrun", "launch.procs_per_node": 2,
                                     "general.batch_size": 2, "general.max_steps": 2000,
                                     "general.learning_rate": 0.02,
                                     "eval.checkpoint_strategy": "steps", "eval.checkpoint_steps": 1000})
    ref = L.start_run(job)
    d = ref.run_dir
    got = _until_log_step(ref, 4)
    start = kinds(got, "start")[0]
    assert start["world_size"] == 2 and start["backend"] == "deepspeed" and start["total_steps"] == 2000
    ls = losses(got)
    assert ls[-1] < ls[0], ls  # 2 ranks × 2 rows = the same 4 rows every step
    info = json.loads((d / "launch.json").read_text())
    assert "torch.distributed.run" in info["command"]
    assert len(_procs_naming(d)) >= 3  # supervisor, torchrun, 2 ranks
    status = L.stop_run(ref, grace=60)
    assert status == "stopped"
    recs = events(d)
    end = kinds(recs, "end")
    assert len(end) == 1 and end[0]["outcome"] == "stopped"
    assert end[0].get("by") != "launcher", "the worker itself must write its end record"
    step = end[0]["step"]
    assert 4 <= step < 2000
    cks = kinds(recs, "checkpoint")  # checkpointing is configured: it saves where it stopped
    assert cks and cks[-1]["step"] == step and cks[-1]["complete"], describe_run(d)
    assert (d / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").is_file()
    assert not kinds(recs, "error"), describe_run(d)
    assert _group_gone(info["pgid"], 5)
    assert _procs_naming(d) == [], "no process of the run may be left"
    assert "received SIGTERM: stopping" in (d / "worker.log").read_text()

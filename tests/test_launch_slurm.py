"""Slurm as a launch target, against a real single-node Slurm cluster (tests/fixtures_slurm.py) and the real
training worker (demo preset, tiny model, a few CPU steps)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import engine.launch as L
from engine.launch import procs
from engine.launch.rundir import read_json, read_records
from tests.fixtures_launch import PYTHON
from tests.fixtures_slurm import slurm_cluster  # noqa: F401 - fixture
from tests.test_launch_local import FINETUI, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _real_worker(monkeypatch):
    monkeypatch.delenv("FINETUI_WORKER_ARGV", raising=False)


def slurm_job(launch_job, **values):
    """The demo on Slurm: 2 tasks (torchrun agents) of 1 CPU rank each, meeting at a c10d rendezvous."""
    base = {"launch.launcher": "slurm", "launch.procs_per_node": 1, "launch.slurm_tasks_per_node": 2,
            "launch.slurm_cpus_per_task": 1, "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no",
            "eval.logging_steps": 1}
    base.update(values)
    return launch_job(**base)


def kinds(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in read_records(run_dir / "events.jsonl") if r.get("kind") == kind]


def ended(ref) -> bool:
    return L.run_info(ref).status not in ("pending", "running")


def test_demo_trains_as_a_two_task_slurm_job(slurm_cluster, launch_job, tmp_path):
    ref = L.start_run(slurm_job(launch_job, **{"general.max_steps": 3}))
    info = read_json(ref.run_dir / "launch.json")
    job = info["slurm_job_id"]
    assert job.isdigit() and info["launcher"] == "slurm"
    script = (ref.run_dir / "slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --signal=B:USR1@120" in script
    assert "srun" in script and "torch.distributed.run" in script and "scontrol show hostnames" in script
    assert os.access(ref.run_dir / "slurm.sbatch", os.R_OK)
    wait_for(lambda: ended(ref), 300, poll=1)
    i = L.run_info(ref)
    assert i.status == "completed", (i.status, i.error, (ref.run_dir / "worker.log").read_text()[-3000:])
    start = kinds(ref.run_dir, "start")[0]
    assert start["world_size"] == 2 and i.step == 3
    assert (ref.run_dir / "final").is_dir()
    wait_for(lambda: slurm_cluster.job(job)["JobState"] == "COMPLETED", 60, poll=0.5)
    assert L.run_info(ref).extra["slurm"]["state"] == "COMPLETED"
    # the CLI lists it with Slurm's word
    r = subprocess.run(FINETUI + ["runs", "--runs-dir", str(ref.run_dir.parent), "--json"], capture_output=True,
                       text=True, timeout=120)
    assert '"completed"' in r.stdout and f'"job_id": "{job}"' in r.stdout, r.stdout + r.stderr

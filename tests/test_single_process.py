"""A one-process local run starts the worker itself, without torchrun's launcher: same run directory contract,
same training (the loss curve under torchrun and without it are the same on the same seed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.launch import core
from engine.launch.rundir import read_json
from engine.train.command import worker_argv
from tests.fixtures_train import describe_run, events, kinds, losses, train_env, write_run


def test_one_process_on_one_node_is_the_worker_itself():
    one = worker_argv({"launch.procs_per_node": 1}, "/r", python="py")
    assert one == ["py", "-m", "engine.train.worker", "--run-dir", "/r"]
    two = worker_argv({"launch.procs_per_node": 2}, "/r", python="py", master_port=1)
    assert two[:3] == ["py", "-m", "torch.distributed.run"] and two[two.index("--nproc_per_node") + 1] == "2"
    # several nodes, or an elastic rendezvous, keep torchrun (it is what joins the nodes)
    nodes = worker_argv({"launch.procs_per_node": 1}, "/r", python="py", nnodes=2, master_port=1)
    assert "torch.distributed.run" in nodes
    elastic = worker_argv({"launch.procs_per_node": 1}, "/r", python="py", rdzv="c10d", master_port=1)
    assert "torch.distributed.run" in elastic
    ds = worker_argv({"launch.procs_per_node": 1, "launch.launcher": "deepspeed"}, "/r", python="py", master_port=1)
    assert "deepspeed.launcher.runner" in ds  # the DeepSpeed launcher is the user's explicit choice


def _run(run_dir: Path, monkeypatch: pytest.MonkeyPatch, cache: str, torchrun: bool) -> list[dict]:
    job = write_run(run_dir, **{"data.max_samples": 16, "general.max_steps": 6, "runtime.seed": 7})
    res = job.resolved()
    for k, v in train_env(FINETUI_CACHE_DIR=cache).items():
        monkeypatch.setenv(k, v)
    cmd = None
    if torchrun:  # what every one-process run started before: torchrun with one rank
        cmd = worker_argv({**res, "launch.procs_per_node": 2}, run_dir)
        cmd[cmd.index("--nproc_per_node") + 1] = "1"
    info = core.start_in_dir(run_dir, res, command=cmd)
    assert info["token"] and info["pid"] and (run_dir / "launch.json").exists()
    deadline = time.monotonic() + 300
    while not kinds(events(run_dir), "end"):
        assert time.monotonic() < deadline, describe_run(run_dir)
        time.sleep(0.2)
    while core.info_alive(read_json(run_dir / "launch.json")):
        assert time.monotonic() < deadline, describe_run(run_dir)
        time.sleep(0.1)
    recs = events(run_dir)
    assert kinds(recs, "end")[-1]["outcome"] == "completed", describe_run(run_dir)
    return recs


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_direct_worker_trains_as_under_torchrun(tmp_path, monkeypatch, tiny_model):
    cache = str(Path(tiny_model).parent)
    direct = _run(tmp_path / "direct", monkeypatch, cache, torchrun=False)
    info = read_json(tmp_path / "direct" / "launch.json")
    assert "torch.distributed.run" not in info["command"] and info["command"][-3:] == [
        "engine.train.worker", "--run-dir", str((tmp_path / "direct").resolve())]
    sup = read_json(tmp_path / "direct" / "supervisor.json")
    assert sup["phase"] == "exited" and sup["exit_code"] == 0 and sup["worker_pid"] != sup["pid"]
    assert kinds(direct, "start")[0]["world_size"] == 1
    launched = _run(tmp_path / "torchrun", monkeypatch, cache, torchrun=True)
    assert "torch.distributed.run" in read_json(tmp_path / "torchrun" / "launch.json")["command"]
    assert len(losses(direct)) == 6
    assert losses(direct) == pytest.approx(losses(launched), rel=1e-6, abs=1e-7)
    assert (tmp_path / "direct" / "final").is_dir()

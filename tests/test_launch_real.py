"""End to end with the real training worker (demo preset, tiny model, a few CPU steps)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import engine.launch as L
from engine.launch import procs
from engine.launch.rundir import read_json, read_records
from tests.fixtures_launch import PYTHON, free_port
from tests.test_launch_local import FINETUI, proc_pgids, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _real_worker(monkeypatch):
    monkeypatch.delenv("FINETUI_WORKER_ARGV", raising=False)


def test_real_worker_local_train_cli(launch_job, tmp_path):
    from engine import presets

    job = launch_job(**{"general.max_steps": 2, "launch.procs_per_node": 1, "eval.evaluation_strategy": "no",
                        "eval.checkpoint_strategy": "no"})
    preset = presets.save(job, tmp_path / "demo.toml")
    r = subprocess.run(FINETUI + ["train", str(preset)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = next((tmp_path / "runs").iterdir())
    recs = read_records(run / "events.jsonl")
    assert recs[-1]["kind"] == "end" and recs[-1]["outcome"] == "completed"
    assert (run / "final").is_dir()
    info = json.loads((run / "launch.json").read_text())
    assert "engine.train.worker" in info["command"]
    # torchrun's ranks live in sessions of their own: the run token finds them
    wait_for(lambda: procs.run_pids(info["pgid"], info["token"]) == [], 30)


def test_real_worker_on_one_ssh_host_reattach_and_stop(ssh_env, launch_job, tmp_path):
    """The real training worker on one remote host (demo preset, tiny model): attach, drop the attachment,
    reattach with nothing missed or repeated, then stop: the run says stopped and no rank is left there."""
    node = ssh_env.nodes[0]
    ref = L.start_run(launch_job(**{
        "general.max_steps": 400, "general.epochs": 100, "launch.procs_per_node": 1, "eval.logging_steps": 1,
        "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no", "launch.host": node.target,
        "launch.remote_python": PYTHON, "launch.remote_workdir": str(tmp_path / "remote $dir")}))
    assert ref.is_remote and "engine.train.worker" in ref.remote.nodes[0].command
    rdir = Path(ref.remote.run_dir)
    token = read_json(rdir / "launch.json")["token"]
    logs = lambda recs: [r["step"] for r in recs if r["kind"] == "log"]  # noqa: E731
    first = L.event_source(ref)
    got: list[dict] = []
    wait_for(lambda: got.extend(first.read()) or len(logs(got)) >= 2, 240, poll=0.2)
    first.close()  # the dashboard closes; the run goes on
    again = L.event_source(ref)
    replay: list[dict] = []
    wait_for(lambda: replay.extend(again.read()) or len(logs(replay)) >= len(logs(got)) + 2, 240, poll=0.2)
    assert replay[:len(got)] == got  # the history from the start, then the new records
    assert L.run_info(ref).status == "running"
    assert L.stop_run(ref, grace=10) == "stopped"
    wait_for(lambda: replay.extend(again.read()) or again.done, 60, poll=0.2)
    end = replay[-1]
    assert end["kind"] == "end" and end["outcome"] == "stopped", replay[-3:]
    assert logs(replay) == list(range(1, end["step"] + 1))  # every step once, in order
    assert replay == read_records(rdir / "events.jsonl") == read_records(ref.run_dir / "events.jsonl")
    wait_for(lambda: procs.token_pids(token) == [], 30)
    assert L.list_runs(tmp_path / "runs")[0].status == "stopped"


# The DeepSpeed launcher on each node with a generated hostfile passes too, but costs ~1.5 min of the suite's
# budget on a 2-core machine: it runs with FINETUI_TEST_DEEPSPEED_MULTINODE=1.  test_launch_local.py checks its
# command and hostfile through DeepSpeed's own runner on every run.
TWO_NODE_LAUNCHERS = ["torchrun"] + (["deepspeed"] if os.environ.get("FINETUI_TEST_DEEPSPEED_MULTINODE") else [])


@pytest.mark.parametrize("launcher", TWO_NODE_LAUNCHERS)
def test_two_node_run_over_ssh(ssh_env, launch_job, tmp_path, launcher):
    """nnodes=2 on two sshd instances, 1 CPU rank each, gloo; torchrun with c10d rendezvous (first host is the
    master), or the DeepSpeed launcher on each node with a generated hostfile.  It ends by itself."""
    # both "nodes" share this machine's model cache: on a fresh cache the two ranks race to build the tiny model
    # (the winner may be rank 1, which transformers would not let save a model)
    hosts = [n.alias for n in ssh_env.nodes]
    extra = {"launch.launcher": "deepspeed", "trainer.distributed_backend": "deepspeed",
             "trainer.zero_stage": 2} if launcher == "deepspeed" else {}
    job = launch_job(**{"general.max_steps": 2, "launch.procs_per_node": 1, "launch.nodes": 2,
                        "launch.hosts": hosts, "launch.master_port": free_port(), "launch.remote_python": PYTHON,
                        "launch.remote_workdir": str(tmp_path / "remote $dir"), "eval.evaluation_strategy": "no",
                        "eval.checkpoint_strategy": "steps", "eval.checkpoint_steps": 2, **extra})
    t0 = time.time()
    ref = L.start_run(job)
    nodes = ref.remote.nodes
    assert [n.host for n in nodes] == hosts
    if launcher == "torchrun":
        assert all("c10d" in n.command and "--rdzv_endpoint" in n.command for n in nodes)
        assert all(f"127.0.0.1:{job.values['launch.master_port']}" in n.command for n in nodes)
    else:
        for i, n in enumerate(nodes):
            cmd = n.command
            assert "deepspeed.launcher.runner" in cmd and "--no_ssh" in cmd
            assert cmd[cmd.index("--node_rank") + 1] == str(i)
            hostfile = Path(cmd[cmd.index("--hostfile") + 1])
            assert hostfile.parent == Path(n.run_dir)
            assert [ln for ln in hostfile.read_text().splitlines() if not ln.startswith("#")] == \
                ["node0 slots=1", "node1 slots=1"]
    src = L.event_source(ref)
    got = []
    wait_for(lambda: got.extend(src.read()) or src.done, 200, poll=0.2)
    end = got[-1]
    assert end["kind"] == "end" and end["outcome"] == "completed", (got[-3:], open(ref.run_dir / "remote.json").read())
    start = next(r for r in got if r["kind"] == "start")
    assert start["world_size"] == 2
    assert L.list_runs(tmp_path / "runs")[0].status == "completed"
    # rank 0 ran on one node (torchrun's rendezvous picks which); the other finished its part without an end
    ev_node = ref.remote.events_node
    if launcher == "deepspeed":
        assert ev_node == 0  # static node ranks
    other = nodes[1 - ev_node]
    assert not read_records(Path(other.run_dir) / "events.jsonl")
    # every node keeps a whole checkpoint in its own run directory (save_on_each_node): resume and load-best read it
    from engine.train.checkpoints import newest_complete

    for n in nodes:
        ck = newest_complete(Path(n.run_dir) / "checkpoints")
        assert ck is not None and ck.name == "checkpoint-2", n.run_dir
        assert any(ck.glob("*.safetensors")), sorted(p.name for p in ck.iterdir())
        li = read_json(Path(n.run_dir) / "launch.json")  # NCCL's bootstrap: the interface gloo uses
        assert li["nccl_socket_ifname"] == li["gloo_socket_ifname"] == "lo", li
    sup = wait_for(lambda: (lambda d: d if d.get("phase") == "exited" else None)(
        read_json(Path(other.run_dir) / "supervisor.json")), 30)
    assert sup["exit_code"] == 0 and sup["node_done"] is True
    assert read_records(ref.run_dir / "events.jsonl") == got
    wait_for(lambda: not any(g in (nodes[0].pgid, nodes[1].pgid) for g in proc_pgids().values()), 30)
    for n in nodes:
        wait_for(lambda: procs.token_pids(read_json(Path(n.run_dir) / "launch.json")["token"]) == [], 30)
    print(f"two-node {launcher} run: {time.time() - t0:.1f} s")


def test_resume_a_stopped_run_from_its_last_checkpoint(launch_job, tmp_path):
    """Stopped mid-way, `finetui resume` starts a new run beside it at the saved step (weights, optimizer and
    schedule restored by the trainer); the stopped run is left as it was.  Its config.toml loads as a preset."""
    job = launch_job(**{"general.max_steps": 400, "general.epochs": 100, "launch.procs_per_node": 1,
                        "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "steps",
                        "eval.checkpoint_steps": 2, "eval.checkpoint_limit": 2, "data.packing": False,
                        "eval.logging_steps": 1})
    ref = L.start_run(job)
    saved = lambda: [r for r in read_records(ref.run_dir / "events.jsonl")  # noqa: E731
                     if r["kind"] == "checkpoint" and r.get("complete")]
    wait_for(lambda: len(saved()) >= 2, 240)
    assert L.stop_run(ref) in ("stopped", "killed")
    before = sorted(p.name for p in ref.run_dir.rglob("*"))
    last = saved()[-1]
    r = subprocess.run(FINETUI + ["validate", str(ref.run_dir / "config.toml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr  # a run's config opens as a job (c on the runs screen) and validates
    r = subprocess.run(FINETUI + ["resume", ref.name, "--runs-dir", str(tmp_path / "runs"), "-d"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming from {last['path']} (step {last['step']})" in r.stderr
    new = L.resolve_run(r.stdout.strip(), tmp_path / "runs")
    assert new.run_dir.parent == ref.run_dir.parent and new.name != ref.name
    logs = lambda: [x for x in read_records(new.run_dir / "events.jsonl") if x["kind"] == "log"]  # noqa: E731
    wait_for(lambda: len(logs()) >= 2, 240)
    L.stop_run(new)
    start = next(x for x in read_records(new.run_dir / "events.jsonl") if x["kind"] == "start")
    assert start["step"] == last["step"] and logs()[0]["step"] == last["step"] + 1
    assert sorted(p.name for p in ref.run_dir.rglob("*")) == before  # the stopped run is untouched
    # nothing to resume: a run still going, a completed run, a run without a checkpoint — one sentence each
    done = L.start_run(launch_job(**{"general.max_steps": 1, "launch.procs_per_node": 1,
                                     "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no"}))
    wait_for(lambda: L.run_info(done).status == "completed", 240)
    r = subprocess.run(FINETUI + ["resume", done.name, "--runs-dir", str(tmp_path / "runs")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().endswith(
        f"run {done.name} completed; there is nothing to resume (open its config as a new job to train it again: c "
        "on the runs screen)")

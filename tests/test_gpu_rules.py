"""What a job may ask of the GPUs it runs on, and the launch commands that pick them — on CPU.

A fake ``nvidia-smi`` on PATH (a shell script printing the CSV the real one prints for
``--query-gpu=index,uuid,name,memory.total,compute_cap``) stands for the GPUs of the host:
ranks per node against the visible GPUs (and one rank per GPU when unset), bf16 and
flash-attention-2 on GPUs older than Ampere.  The DeepSpeed launcher's argv keeps to the
``CUDA_VISIBLE_DEVICES`` it is started under.  Refused combinations are one line each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.schema import ConfigError, JobConfig

ROOT = Path(__file__).resolve().parent.parent
T4 = "Tesla T4"
H100 = "NVIDIA H100 80GB HBM3"

FAKE_SMI = """#!/bin/sh
case "$*" in
  *compute_cap*) [ -n "$FAKE_SMI_NO_CAP" ] && { echo 'Field "compute_cap" is not a valid field to query.'; exit 2; }
                 cat "$FAKE_SMI_CSV" ;;
  *=name,memory.total*) cut -d, -f3,4 "$FAKE_SMI_CSV" ;;
  *) cut -d, -f1-4 "$FAKE_SMI_CSV" ;;
esac
"""


@pytest.fixture
def smi(tmp_path, monkeypatch):
    """→ set(name, count, cap): this machine's nvidia-smi reports ``count`` GPUs called ``name``."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "nvidia-smi").write_text(FAKE_SMI)
    (bin_ / "nvidia-smi").chmod(0o755)
    csv = tmp_path / "gpus.csv"
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SMI_CSV", str(csv))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def set_(name: str, count: int, cap: str) -> None:
        csv.write_text("".join(f"{i}, GPU-{i:04d}-uuid, {name}, 81559, {cap}\n" for i in range(count)))

    return set_


def _job(**vals) -> JobConfig:
    base = {"model.name_or_path": "finetui:tiny-llama", "data.train_path": "finetui:samples/alpaca_demo.jsonl",
            "launch.device": "auto"}
    return JobConfig(profile="native", values={**base, **{k.replace("__", "."): v for k, v in vals.items()}})


def _lines(e: ConfigError) -> list[str]:
    return [str(p) for p in e.problems]


def test_local_probe_sees_the_visible_gpus_in_their_order(smi, monkeypatch):
    from engine import gpus

    smi(H100, 4, "9.0")
    got = gpus.local()
    assert [g.index for g in got] == [0, 1, 2, 3] and got[0].compute_cap == (9, 0) and got[0].name == H100
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert [g.index for g in gpus.local()] == [3, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0002")  # (UUIDs, as CUDA takes them)
    assert [g.index for g in gpus.local()] == [2]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.local() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("FAKE_SMI_NO_CAP", "1")  # a driver without the compute_cap field: no generation, no guess
    assert [g.compute_cap for g in gpus.local()] == [None] * 4


def test_unset_ranks_per_node_become_one_per_visible_gpu_and_say_so(smi, monkeypatch):
    from engine.launch import fit_to_gpus

    smi(H100, 4, "9.0")
    job = _job()
    notes = fit_to_gpus(job)
    assert job.resolved()["launch.procs_per_node"] == 4
    assert notes == [f"launch.procs_per_node is unset and this machine has 4 × {H100} visible: 4 ranks, one per "
                     "GPU (set launch.procs_per_node to choose)"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    job = _job()
    fit_to_gpus(job)
    assert job.resolved()["launch.procs_per_node"] == 2
    job = _job(launch__procs_per_node=1)  # the user's choice stands
    assert fit_to_gpus(job) == [] and job.resolved()["launch.procs_per_node"] == 1
    job = _job(launch__device="cpu")  # CPU ranks: not the GPUs' business
    assert fit_to_gpus(job) == [] and job.resolved()["launch.procs_per_node"] == 1


def test_more_ranks_than_gpus_bf16_and_flash_attention_on_a_t4_are_refused(smi):
    from engine.launch import fit_to_gpus

    smi(T4, 2, "7.5")
    with pytest.raises(ConfigError) as e:
        fit_to_gpus(_job(launch__procs_per_node=4, runtime__mixed_precision="bf16",
                         runtime__attention_implementation="flash_attention_2"))
    assert _lines(e.value) == [
        "launch.procs_per_node: 4 ranks per node but this machine has 2 visible GPUs (one rank per GPU) "
        "(allowed: 1–2)",
        f"runtime.mixed_precision: bf16 needs an Ampere or newer GPU (compute capability 8.0); {T4} on this machine "
        "is 7.5 and would emulate it, slowly (allowed: fp16, none)",
        f"runtime.attention_implementation: flash-attention-2 needs an Ampere or newer GPU (compute capability "
        f"8.0); {T4} on this machine is 7.5 (allowed: sdpa, eager)",
    ]
    fit_to_gpus(_job(launch__procs_per_node=2, runtime__mixed_precision="fp16"))  # what a T4 can do
    fit_to_gpus(_job(runtime__mixed_precision="auto"))  # (auto picks fp16 there: the worker asks torch)
    smi(H100, 2, "9.0")
    fit_to_gpus(_job(launch__procs_per_node=2, runtime__mixed_precision="bf16",
                     runtime__attention_implementation="flash_attention_2"))


def test_finetui_train_refuses_them_in_one_line_each_and_writes_nothing(smi, tmp_path):
    smi(T4, 1, "7.5")
    from engine import presets

    job = _job(launch__procs_per_node=2, runtime__mixed_precision="bf16", launch__runs_dir=str(tmp_path / "runs"))
    presets.save(job, tmp_path / "job.toml")
    p = subprocess.run([sys.executable, "-m", "tui.cli", "train", str(tmp_path / "job.toml")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("launch.procs_per_node: 2 ranks per node but this machine has 1 visible GPU ")
    assert lines[1].startswith("runtime.mixed_precision: bf16 needs an Ampere or newer GPU")
    assert "Traceback" not in p.stderr and not (tmp_path / "runs").exists()


def test_deepspeed_launcher_keeps_to_the_visible_gpus():
    from engine.train.command import worker_argv

    res = {"launch.launcher": "deepspeed", "launch.procs_per_node": 2}
    argv = worker_argv(res, "/r", master_port=29999, python="py", visible="2,3")
    # the launcher would set CUDA_VISIBLE_DEVICES=0,1 for its ranks (--num_gpus counts from GPU 0): it is told
    # which ones, and counts every GPU of the machine to find them
    assert argv[:3] == ["env", "-u", "CUDA_VISIBLE_DEVICES"]
    assert argv[argv.index("--include") + 1] == "localhost:2,3"
    assert "--num_gpus" not in argv and "--num_nodes" not in argv  # (the runner refuses them beside --include)
    one = worker_argv({**res, "launch.procs_per_node": 1}, "/r", master_port=1, python="py", visible="5, 6")
    assert one[one.index("--include") + 1] == "localhost:5"
    with pytest.raises(ValueError, match=r"launch.procs_per_node: 3 ranks but CUDA_VISIBLE_DEVICES=2,3 names 2 GPUs"):
        worker_argv({**res, "launch.procs_per_node": 3}, "/r", master_port=1, python="py", visible="2,3")
    with pytest.raises(ValueError, match="takes GPU indices"):
        worker_argv(res, "/r", master_port=1, python="py", visible="GPU-1234,GPU-5678")
    plain = worker_argv(res, "/r", master_port=1, python="py", visible="")  # CPU ranks, or every GPU
    assert plain[0] == "py" and plain[plain.index("--num_gpus") + 1] == "2"
    torchrun = worker_argv({**res, "launch.launcher": "torchrun"}, "/r", master_port=1, python="py", visible="2,3")
    assert torchrun[0] == "py" and "--include" not in torchrun  # torchrun's ranks inherit the variable


def test_worker_command_reads_the_runs_environment(tmp_path):
    from engine.launch import core
    from engine.launch.rundir import LaunchError

    res = {"launch.launcher": "deepspeed", "launch.procs_per_node": 2}
    argv = core.worker_command(res, tmp_path, python="py", env={"CUDA_VISIBLE_DEVICES": "4,7"})
    assert argv[argv.index("--include") + 1] == "localhost:4,7"
    with pytest.raises(LaunchError, match="names 1 GPU$"):
        core.worker_command(res, tmp_path, python="py", env={"CUDA_VISIBLE_DEVICES": "4"})


@pytest.mark.parametrize("vals,line", [
    ({"trainer.distributed_backend": "deepspeed", "trainer.offload_optimizer": True, "runtime.optimizer": "sgd"},
     "runtime.optimizer: sgd with trainer.offload_optimizer would train with Adam: the offloaded optimizer is "
     "DeepSpeed's CPU Adam, which accelerate puts in place of any other (allowed: adamw, or offload_optimizer = "
     "false)"),
    ({"runtime.attention_implementation": "flash_attention_2", "runtime.mixed_precision": "none"},
     "runtime.attention_implementation: flash-attention-2 computes in bf16 or fp16 only, and "
     "runtime.mixed_precision = none trains in float32 (allowed: sdpa, eager, or mixed_precision bf16 / fp16 / "
     "auto)"),
    ({"launch.hosts": ["a", "b"]}, "launch.hosts: 2 hosts named but launch.nodes is 1 (allowed: 1 hosts, or set "
     "launch.nodes = 2)"),
])
def test_combinations_that_would_train_otherwise_than_asked_are_refused_in_one_line(vals, line):
    job = _job(**{k.replace(".", "__"): v for k, v in vals.items()})
    errs = [str(p) for p in job.problems()]
    assert errs == [line], errs


def test_doctor_names_the_gpu_generation_the_visible_ones_and_the_gpu_extras(smi, tmp_path):
    smi(T4, 4, "7.5")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "tui.cli", "doctor"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=180)
    lines = {ln[9:17].strip() + ":" + ln[18:] for ln in r.stdout.splitlines()}
    assert f"gpus:4: {T4}, 81559; {T4}, 81559; {T4}, 81559; {T4}, 81559" in lines, r.stdout
    assert "gpus:2 of them visible to finetui's ranks (CUDA_VISIBLE_DEVICES)" in lines, r.stdout
    assert ("gpu-gen:compute capability 7.5 (before Ampere): fp16 only — no bf16, no flash-attention-2; finetui "
            "refuses them there and mixed_precision auto picks fp16") in lines, r.stdout
    extras = next(ln for ln in lines if ln.startswith("extras:"))
    assert "bitsandbytes" in extras and "pip install 'finetui[gpu]'" in extras, extras  # (none installed here)


def test_each_node_resumes_from_its_own_copy_of_the_checkpoint(tmp_path):
    """Resuming a multi-node run, every node is given node 0's checkpoint path; node k reads its own copy."""
    from engine.train.checkpoints import resolve_resume

    def ck(run: Path) -> Path:
        d = run / "checkpoints" / "checkpoint-4"
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text("{}")
        return d

    node0, node1 = tmp_path / "host0", tmp_path / "host1"  # (the workdirs of two hosts)
    given = ck(node0 / "old")
    mine = ck(node1 / "old.node1")
    for run in (node0 / "new", node1 / "new.node1"):
        run.mkdir(parents=True)
    assert resolve_resume(str(given), node0 / "new", node0 / "new" / "checkpoints") == given
    assert resolve_resume(str(given), node1 / "new.node1", node1 / "new.node1" / "checkpoints") == mine
    import shutil

    shutil.rmtree(node0)  # node 0's path does not exist on node 1's host: its own copy, all the same
    assert resolve_resume(str(given), node1 / "new.node1", node1 / "new.node1" / "checkpoints") == mine


def test_nccl_settings_travel_to_the_remote_nodes(monkeypatch):
    from engine.launch.remote import forwarded_env

    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib0")
    monkeypatch.setenv("NCCL_IB_HCA", "mlx5_0")
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    monkeypatch.setenv("MY_SECRET_THING", "x")
    monkeypatch.delenv("FINETUI_REMOTE_ENV", raising=False)
    env = forwarded_env()
    assert {k: env[k] for k in env if "NCCL" in k} == {"NCCL_SOCKET_IFNAME": "ib0", "NCCL_IB_HCA": "mlx5_0",
                                                        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}
    assert "MY_SECRET_THING" not in env


def test_fused_adamw_on_cuda():
    from engine.schema import JobConfig
    from engine.train.trainers import common_args

    res = JobConfig(profile="native", values={"data.train_path": "x.jsonl"}).resolved()
    assert common_args(res, Path("/tmp/r"), "cuda", False, [])["optim"] == "adamw_torch_fused"
    assert common_args(res, Path("/tmp/r"), "cpu", False, [])["optim"] == "adamw_torch"
    assert common_args({**res, "runtime.optimizer": "sgd"}, Path("/tmp/r"), "cuda", False, [])["optim"] == "sgd"


def test_dashboard_shows_reserved_and_the_fullest_gpu_where_the_worker_logs_them():
    """On CUDA every rank's reserved peak is logged (nvidia-smi reads the allocator's reserve, not the tensors)."""
    from engine.train.callbacks import memory_fields
    from tui.widgets.metrics import RunState
    from tui.widgets.progress import stats_text

    rec = {"t": 1.0, "kind": "log", "step": 3, "loss": 2.0,
           **memory_fields([(30 * 1024.0, 34 * 1024.0), (31 * 1024.0, 36.5 * 1024.0)])}
    assert rec["gpu_reserved_mb"] == [34816.0, 37376.0] and rec["memory_mb"] == 30720.0
    st = RunState()
    st.update([rec])
    assert "mem 30.0 GiB (reserved 34.0 GiB, fullest GPU 36.5 GiB)" in stats_text(st)
    cpu = RunState()
    cpu.update([{"t": 1.0, "kind": "log", "step": 3, "loss": 2.0, "memory_mb": 900.0}])
    assert stats_text(cpu).endswith("mem 900 MiB")


@pytest.mark.slow
def test_a_remote_host_without_nvidia_smi_is_not_checked_and_the_job_starts_as_asked(ssh_env):
    """Over SSH (a real sshd): no nvidia-smi there → no GPU facts (one ssh call), nothing refused or changed."""
    from engine import gpus
    from engine.launch import fit_to_gpus

    node = ssh_env.nodes[0]
    assert gpus.remote(node.alias) is None
    job = _job(launch__host=node.alias, launch__procs_per_node=3)
    assert fit_to_gpus(job) == [] and job.resolved()["launch.procs_per_node"] == 3

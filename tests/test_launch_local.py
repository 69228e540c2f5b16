"""Local runs: detached start, statuses (incl. lost), attach/replay, logs, stop leaves no process, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import engine.launch as L
from engine.launch import procs
from engine.launch.rundir import read_json, read_records
from tests.fixtures_launch import ROOT

FINETUI = [sys.executable, "-m", "tui.cli"]


def wait_for(pred, timeout=30.0, poll=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise AssertionError("timed out waiting")


def events(ref):
    return read_records(ref.run_dir / "events.jsonl")


def wait_end(ref, timeout=30.0):
    return wait_for(lambda: next((r for r in events(ref) if r["kind"] == "end"), None), timeout)


def proc_pgids() -> dict[int, int]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                raw = (d / "stat").read_text()
            except OSError:
                continue
            rest = raw[raw.rfind(")") + 2:].split()
            if rest[0] != "Z":
                out[int(d.name)] = int(rest[2])
    return out


def cli(*args, cwd=None, env=None, timeout=60, **kw):
    return subprocess.run(FINETUI + list(args), cwd=cwd or ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, **kw)


def test_local_run_completes_and_replays(fake_worker, launch_job, tmp_path):
    fake_worker(steps=6, delay=0.02, ranks=2)
    ref = L.start_run(launch_job(), secrets={"HF_TOKEN": "s3cr3t-value"})
    assert ref.host == "local" and ref.run_dir.parent == tmp_path / "runs"
    assert ref.name.startswith("ft_tiny-llama_")
    info = read_json(ref.run_dir / "launch.json")
    assert info["pgid"] == info["pid"] and info["command"]
    src = L.event_source(ref)
    got = []
    wait_for(lambda: got.extend(src.read()) or src.done, 30)
    assert got[-1]["kind"] == "end" and got[-1]["outcome"] == "completed"
    assert [r["step"] for r in got if r["kind"] == "log"] == [1, 2, 3, 4, 5, 6]
    # attach after the finish shows the whole history, byte-exact
    again = L.event_source(L.resolve_run(ref.name, tmp_path / "runs"))
    assert again.read() == got and again.offset == (ref.run_dir / "events.jsonl").stat().st_size
    runs = L.list_runs(tmp_path / "runs")
    assert [(r.name, r.status, r.step, r.total_steps) for r in runs] == [(ref.name, "completed", 6, 6)]
    assert runs[0].last_loss == pytest.approx(2 / 6, abs=1e-3)
    # config written resolved, secrets nowhere in the run directory
    cfg = (ref.run_dir / "config.toml").read_text()
    assert "[launch]" in cfg and "learning_rate" in cfg
    for f in ref.run_dir.iterdir():
        if f.is_file():
            assert "s3cr3t-value" not in f.read_text(errors="replace"), f
    assert "fake worker: step 6" in (ref.run_dir / "worker.log").read_text()


def test_secrets_reach_the_worker_by_environment(fake_worker, launch_job):
    fake_worker(2, 0.01, 1, "--env-report", "FT_TEST_SECRET")
    ref = L.start_run(launch_job(), secrets={"FT_TEST_SECRET": "abc123"})
    wait_end(ref)
    rep = json.loads((ref.run_dir / "env_report.json").read_text())
    assert rep == {"set": True, "len": 6, "cwd": os.getcwd()}
    assert "abc123" not in (ref.run_dir / "launch.json").read_text()


def test_stop_leaves_no_process_and_ends_stopped(fake_worker, launch_job, tmp_path):
    # ranks that ignore SIGTERM, each in a session of its own (as torchrun starts them): SIGKILL after the
    # grace period reaches them through the run token, not the process group
    fake_worker(1000, 0.05, 3, "--ignore-term", "--setsid-ranks")
    ref = L.start_run(launch_job())
    wait_for(lambda: any(r["kind"] == "log" for r in events(ref)))
    info = read_json(ref.run_dir / "launch.json")
    pgid, token = info["pgid"], info["token"]
    wait_for(lambda: len(procs.token_pids(token)) >= 4)  # supervisor + worker + 2 ranks
    ranks = [p for p in procs.token_pids(token) if proc_pgids().get(p) != pgid]
    assert len(ranks) == 2  # outside the group
    assert L.list_runs(tmp_path / "runs")[0].status == "running"
    t = time.time()
    assert L.stop_run(ref.name, grace=1.0, runs_dir=tmp_path / "runs") == "stopped"
    assert time.time() - t < 8
    assert [p for p, g in proc_pgids().items() if g == pgid] == []
    assert procs.token_pids(token) == [] and not any(procs.pid_alive(p) for p in ranks)
    recs = events(ref)
    assert recs[-1]["kind"] == "end" and recs[-1]["outcome"] == "stopped"
    assert sum(r["kind"] == "end" for r in recs) == 1
    assert L.list_runs(tmp_path / "runs")[0].status == "stopped"


def test_graceful_stop_worker_writes_its_own_end(fake_worker, launch_job):
    fake_worker(1000, 0.05, 2)
    ref = L.start_run(launch_job())
    wait_for(lambda: any(r["kind"] == "log" for r in events(ref)))
    assert L.stop_run(ref) == "stopped"
    ends = [r for r in events(ref) if r["kind"] == "end"]
    assert len(ends) == 1 and "by" not in ends[0]  # written by the worker, not the launcher


def test_stop_waits_for_ranks_that_outlive_their_launcher(fake_worker, launch_job):
    """DeepSpeed's launcher exits at once on SIGTERM while its ranks still save: the run's end
    is the worker's own, written once, not a premature one from the supervisor."""
    fake_worker(1000, 0.05, 1, "--launcher")
    ref = L.start_run(launch_job())
    wait_for(lambda: any(r["kind"] == "log" for r in events(ref)))
    assert L.stop_run(ref) == "stopped"
    time.sleep(0.5)
    ends = [r for r in events(ref) if r["kind"] == "end"]
    assert len(ends) == 1 and "by" not in ends[0], ends


def test_statuses_failed_and_lost(fake_worker, launch_job, tmp_path):
    fake_worker(10, 0.02, 1, "--fail-at", "3")
    failed = L.start_run(launch_job(**{"launch.run_name": "will-fail"}))
    fake_worker(1000, 0.05, 2)
    lost = L.start_run(launch_job(**{"launch.run_name": "will-be-lost"}))
    running = L.start_run(launch_job(**{"launch.run_name": "keeps-running"}))
    wait_end(failed)
    wait_for(lambda: any(r["kind"] == "log" for r in events(lost)))
    pgid = read_json(lost.run_dir / "launch.json")["pgid"]
    os.killpg(pgid, signal.SIGKILL)  # the whole group dies without an end record
    wait_for(lambda: not procs.group_alive(pgid))
    st = {r.name: r for r in L.list_runs(tmp_path / "runs")}
    assert st["will-fail"].status == "failed" and "code 3" in st["will-fail"].error
    assert "boom" in st["will-fail"].error
    assert st["will-be-lost"].status == "lost"
    assert st["keeps-running"].status == "running"
    src = L.event_source(lost)
    wait_for(lambda: src.read() is not None and src.done, 5)
    assert src.lost and not src.ended
    L.stop_run(running, grace=2)
    L.delete_run("will-fail", runs_dir=tmp_path / "runs")
    assert not failed.run_dir.exists()


def test_run_name_unique_and_explicit_dir_with_hostile_path(fake_worker, launch_job, tmp_path):
    fake_worker(2, 0.01)
    a = L.start_run(launch_job(**{"launch.run_name": "same"}))
    b = L.start_run(launch_job(**{"launch.run_name": "same"}))
    assert (a.name, b.name) == ("same", "same-2")
    hostile = tmp_path / "we'ird $HOME dir \"x\"" / "run `1` ;"
    c = L.start_run(launch_job(), run_dir=hostile)
    assert c.run_dir == hostile.resolve()
    wait_end(c)
    assert events(c)[-1]["outcome"] == "completed"
    with pytest.raises(L.LaunchError, match="not empty"):
        L.start_run(launch_job(), run_dir=hostile)


def test_scheduled_run_starts_at_its_time_and_cancel(fake_worker, launch_job, tmp_path, monkeypatch):
    fake_worker(2, 0.01, 1, "--master_port", "1")  # the port picked at scheduling time is picked again at the start
    # the schema takes minutes; the start time is moved closer through the API to keep the test short
    soon = time.time() + 2.0
    monkeypatch.setattr(L, "parse_start_at", lambda text: soon if text else None)
    ref = L.start_run(launch_job(**{"launch.start_at": "2030-01-01 10:00"}))
    assert L.list_runs(tmp_path / "runs")[0].status == "scheduled"
    assert not events(ref)
    end = wait_end(ref, 20)
    start = next(r for r in events(ref) if r["kind"] == "start")
    assert start["t"] >= soon - 0.05 and end["outcome"] == "completed"
    assert start["master_port"] > 1024
    # a far-away schedule is cancelled by stop
    monkeypatch.setattr(L, "parse_start_at", lambda text: time.time() + 3600 if text else None)
    ref2 = L.start_run(launch_job(**{"launch.start_at": "2030-01-01 10:00", "launch.run_name": "later"}))
    info = {r.name: r for r in L.list_runs(tmp_path / "runs")}["later"]
    assert info.status == "scheduled" and info.start_at > time.time() + 3000
    assert L.stop_run(ref2, grace=2) == "stopped"
    pgid = read_json(ref2.run_dir / "launch.json")["pgid"]
    assert not procs.group_alive(pgid)
    assert {r.name: r for r in L.list_runs(tmp_path / "runs")}["later"].status == "stopped"


# ------------------------------------------------------------------ CLI

def _preset(tmp_path: Path, **launch) -> Path:
    from engine import presets

    job = presets.load(ROOT / "presets" / "demo.toml")
    job.values["launch.runs_dir"] = str(tmp_path / "runs")
    job.values["general.max_steps"] = 3
    for k, v in launch.items():
        job.values[f"launch.{k}"] = v
    return presets.save(job, tmp_path / "job.toml")


def test_cli_train_follows_and_survives_kill9(fake_worker, tmp_path):
    fake_worker(40, 0.05, 2)
    preset = _preset(tmp_path)
    p = subprocess.Popen(FINETUI + ["train", str(preset)], cwd=tmp_path, env=dict(os.environ),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = tmp_path / "runs"
    run = wait_for(lambda: next(iter(runs.iterdir()), None) if runs.is_dir() else None)
    wait_for(lambda: (run / "events.jsonl").exists() and b'"log"' in (run / "events.jsonl").read_bytes())
    p.kill()  # kill -9 the CLI: the run goes on
    p.wait()
    ref = L.resolve_run(str(run))
    assert L.list_runs(runs)[0].status == "running"
    end = wait_end(ref, 30)
    assert end["outcome"] == "completed" and end["step"] == 40
    r = cli("runs", "--runs-dir", str(runs))
    assert r.returncode == 0 and run.name in r.stdout and "completed" in r.stdout
    r = cli("attach", run.name, "--runs-dir", str(runs), "--json")
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 0 and recs == events(ref)
    r = cli("logs", run.name, "--runs-dir", str(runs))
    assert "fake worker: step 40" in r.stdout


def test_cli_train_exit_code_is_the_outcome(fake_worker, tmp_path):
    fake_worker(3, 0.01)
    preset = _preset(tmp_path)
    r = cli("train", str(preset), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "completed" in r.stdout
    fake_worker(5, 0.01, 1, "--fail-at", "2")
    r = cli("train", str(preset), cwd=tmp_path)
    assert r.returncode == 1 and "failed" in r.stdout


def test_cli_detach_stop_and_bad_input(fake_worker, tmp_path):
    fake_worker(1000, 0.05)
    preset = _preset(tmp_path)
    runs = tmp_path / "runs"
    r = cli("train", str(preset), "--detach", cwd=tmp_path)
    assert r.returncode == 0
    name = r.stdout.strip()
    assert (runs / name / "launch.json").exists()
    wait_for(lambda: b'"log"' in (runs / name / "events.jsonl").read_bytes() if (runs / name / "events.jsonl").exists() else False)
    # `logs -f` prints the log as it grows and ends by itself once the run has ended
    follow = subprocess.Popen(FINETUI + ["logs", name, "-f", "--runs-dir", str(runs)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follow.stdout), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: sum(ln.startswith("fake worker: step") for ln in lines) >= 3)
        assert follow.poll() is None  # still following: the run goes on
        seen = len(lines)
        r = cli("stop", name, "--runs-dir", str(runs), "--grace", "3")
        assert r.returncode == 0 and "stopped" in r.stdout
        assert follow.wait(timeout=30) == 0, follow.stderr.read()
    finally:
        follow.kill()
    reader.join(10)
    assert len(lines) > seen and lines[0] == "fake worker: starting\n"
    steps = [int(ln.split()[-1]) for ln in lines if ln.startswith("fake worker: step")]
    assert steps == list(range(1, len(steps) + 1))  # every line once, in order, none lost across reads
    assert "".join(lines) == (runs / name / "worker.log").read_text()
    # bad input: one line, exit 2 (scheduling through the CLI: test_cli_scheduled_run_listed_and_cancelled)
    (tmp_path / "slurm").mkdir()
    slurm = _preset(tmp_path / "slurm", launcher="slurm", slurm_time="1h", runs_dir=str(runs))
    for args in (["train", str(tmp_path / "missing.toml")], ["attach", "no-such-run", "--runs-dir", str(runs)],
                 ["stop", "no-such-run", "--runs-dir", str(runs)],
                 ["train", str(preset), "--at", "tomorrow"], ["train", str(slurm)]):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("launch.slurm_time: '1h' is not a Slurm time limit"), r.stderr
    assert [d.name for d in runs.iterdir()] == [name]


def test_cli_scheduled_run_listed_and_cancelled(fake_worker, tmp_path):
    """`finetui train FILE --at ...`: returns at once, `runs` shows it scheduled (with its time), `stop` cancels."""
    fake_worker(2, 0.01)
    preset = _preset(tmp_path)
    runs = tmp_path / "runs"
    r = cli("train", str(preset), "--at", "2099-01-01 02:00", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "scheduled for 2099-01-01 02:00" in r.stdout
    run = next(runs.iterdir())
    r = cli("runs", "--runs-dir", str(runs))
    assert r.returncode == 0 and "scheduled" in r.stdout and "at 2099-01-01 02:00" in r.stdout, r.stdout
    info = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout.splitlines()[0])
    assert info["status"] == "scheduled" and info["start_at"] == time.mktime((2099, 1, 1, 2, 0, 0, 0, 0, -1))
    assert not (run / "events.jsonl").exists()  # nothing started
    launch = read_json(run / "launch.json")
    r = cli("stop", run.name, "--runs-dir", str(runs))
    assert r.returncode == 0 and f"{run.name}: stopped" in r.stdout, r.stdout + r.stderr
    assert procs.run_pids(launch["pgid"], launch["token"]) == []
    assert json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout.splitlines()[0])["status"] == "stopped"
    # a time in the past or not a time: one clear line, nothing created
    for bad, why in (("2001-01-01 10:00", "in the past"), ("tomorrow", "not a time")):
        r = cli("train", str(preset), "--at", bad, cwd=tmp_path)
        assert r.returncode == 2 and "launch.start_at" in r.stderr and why in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert len(list(runs.iterdir())) == 1


def test_deepspeed_multinode_command_and_hostfile(launch_job, tmp_path, monkeypatch):
    """The DeepSpeed launcher on node 1 of 2: finetui's command + generated hostfile, fed to DeepSpeed's own runner
    (its process start captured), become one local launch with node rank 1 of the two-node world — no pdsh, no
    ssh.  (The real two-node DeepSpeed run is test_launch_real.py's, with FINETUI_TEST_DEEPSPEED_MULTINODE=1.)"""
    import base64

    from engine.launch import core

    monkeypatch.delenv("FINETUI_WORKER_ARGV", raising=False)
    res = launch_job(**{"launch.launcher": "deepspeed", "trainer.distributed_backend": "deepspeed",
                        "launch.procs_per_node": 2, "launch.nodes": 2}).resolved()
    run_dir = tmp_path / "run $x 'q'"
    run_dir.mkdir()
    argv = core.worker_command(res, run_dir, nnodes=2, node_rank=1, master_addr="10.0.0.7", master_port=29555,
                               rdzv="c10d", hosts=["gpu-a", "user@gpu b:2222"], env={})
    assert argv[1:3] == ["-m", "deepspeed.launcher.runner"] and "--no_ssh" in argv
    hostfile = run_dir / "hostfile"
    assert argv[argv.index("--hostfile") + 1] == str(hostfile)
    assert [ln for ln in hostfile.read_text().splitlines() if not ln.startswith("#")] == ["node0 slots=2",
                                                                                          "node1 slots=2"]
    assert "# node1: user@gpu b:2222" in hostfile.read_text()
    from tests.fixtures_launch import deepspeed_runner_launch

    cmd, opts = deepspeed_runner_launch(monkeypatch, argv[3:])
    assert cmd[1:4] == ["-u", "-m", "deepspeed.launcher.launch"]
    assert json.loads(base64.urlsafe_b64decode(opts["world_info"])) == {"node0": [0, 1], "node1": [0, 1]}
    assert (opts["node_rank"], opts["master_addr"], opts["master_port"]) == ("1", "10.0.0.7", "29555")
    assert "--module" in cmd and cmd[-3:] == ["engine.train.worker", "--run-dir", str(run_dir)]


def test_resume_of_a_remote_run_sends_the_local_data_again(tmp_path):
    """A remote run's config.toml names the uploaded copies (data/0_…); remote.json keeps the local files they
    came from, and the resumed job names those again, on the same host, from the run's last checkpoint."""
    from engine import presets
    from engine.schema import JobConfig
    from engine.launch.rundir import write_json

    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    run = tmp_path / "runs" / "ft_remote"
    run.mkdir(parents=True)
    presets.save(JobConfig(values={"data.train_path": "data/0_train.jsonl", "launch.host": "gpu1",
                                   "launch.run_name": "ft_remote", "launch.remote_python": "/opt/py"}),
                 run / "config.toml", resolved=True)
    write_json(run / "remote.json", {"host": "gpu1", "hosts": ["gpu1"], "run_dir": "/w/ft_remote", "nodes": [],
                                     "data_sources": {"data.train_path": str(data)}})
    write_json(run / "launch.json", {"name": "ft_remote", "remote": True, "started": 1.0})
    (run / "events.jsonl").write_text(
        '{"t": 1, "kind": "checkpoint", "step": 4, "path": "/w/ft_remote/checkpoints/checkpoint-4", "complete": true}\n'
        '{"t": 2, "kind": "end", "step": 5, "outcome": "stopped"}\n')
    job, ck = L.resume_job("ft_remote", tmp_path / "runs")
    assert ck["step"] == 4 and job.problems() == []
    r = job.resolved()
    assert r["general.resume_from_checkpoint"] == "/w/ft_remote/checkpoints/checkpoint-4"
    assert r["data.train_path"] == str(data) and r["launch.host"] == "gpu1" and r["launch.remote_python"] == "/opt/py"
    assert r["launch.run_name"] is None and r["launch.runs_dir"] == str(tmp_path / "runs")

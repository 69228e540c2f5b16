"""Slurm as a launch target, against a real single-node Slurm cluster (tests/fixtures_slurm.py) and the real
training worker (demo preset, tiny model, a few CPU steps)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import engine.launch as L
from engine.launch import procs
from engine.launch.rundir import read_json, read_records
from tests.fixtures_launch import PYTHON, deepspeed_runner_launch
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


def test_stop_cancels_a_running_job_and_leaves_no_process(slurm_cluster, launch_job):
    ref = L.start_run(slurm_job(launch_job, **{"general.max_steps": 2000, "general.epochs": 1000}))
    job = read_json(ref.run_dir / "launch.json")["slurm_job_id"]
    wait_for(lambda: kinds(ref.run_dir, "log"), 240, poll=0.5)
    i = L.run_info(ref)
    assert i.status == "running" and "RUNNING" in i.extra["slurm"]["text"]
    token = read_json(ref.run_dir / "launch.json")["token"]
    assert procs.token_pids(token)  # the ranks run on this (the only) node
    assert L.stop_run(ref, grace=10) == "stopped"
    assert slurm_cluster.job(job)["JobState"] == "CANCELLED"
    assert procs.token_pids(token) == []
    i = L.run_info(ref)
    assert i.status == "cancelled" and kinds(ref.run_dir, "end")[-1]["outcome"] == "stopped"
    assert L.stop_run(ref) == "stopped"  # again: nothing to do, same answer


def test_a_pending_job_shows_its_reason_and_stops(slurm_cluster, launch_job):
    ref = L.start_run(slurm_job(launch_job, **{"launch.slurm_extra": ["--begin=now+3600"]}))
    job = read_json(ref.run_dir / "launch.json")["slurm_job_id"]
    i = wait_for(lambda: (lambda x: x if x.phase == "BeginTime" else None)(L.run_info(ref)), 30, poll=0.5)
    assert i.status == "pending" and i.extra["slurm"]["state"] == "PENDING"
    assert "PENDING (BeginTime" in i.extra["slurm"]["text"]
    r = subprocess.run(FINETUI + ["runs", "--runs-dir", str(ref.run_dir.parent)], capture_output=True, text=True,
                       timeout=120)
    assert "BeginTime" in r.stdout, r.stdout + r.stderr
    with pytest.raises(L.LaunchError, match="is pending; stop it first"):
        L.resume_job(ref)
    assert L.stop_run(ref, grace=5) == "stopped"
    assert slurm_cluster.job(job)["JobState"] == "CANCELLED"
    assert L.run_info(ref).status == "cancelled"


def test_sigusr1_checkpoints_requeues_and_resumes_at_the_checkpoint(slurm_cluster, launch_job):
    """What a time limit does (SIGUSR1 to the batch shell, --signal=B:USR1@grace): the ranks checkpoint and exit,
    the job requeues itself, and the next start resumes the same run at the checkpoint's step."""
    ref = L.start_run(slurm_job(launch_job, **{"general.max_steps": 60, "general.epochs": 100,
                                               "launch.slurm_requeue": True}))
    job = read_json(ref.run_dir / "launch.json")["slurm_job_id"]
    assert "#SBATCH --requeue" in (ref.run_dir / "slurm.sbatch").read_text()
    wait_for(lambda: len(kinds(ref.run_dir, "log")) >= 2, 240, poll=0.2)
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", job)
    ck = wait_for(lambda: kinds(ref.run_dir, "checkpoint"), 120, poll=0.2)[0]
    assert ck["complete"] and Path(ck["path"]).name == f"checkpoint-{ck['step']}"
    # requeued: pending again (Slurm holds a requeued job back a while), the same run
    wait_for(lambda: [r for r in kinds(ref.run_dir, "status") if r.get("phase") == "requeued"], 120, poll=0.5)
    i = wait_for(lambda: (lambda x: x if x.status == "pending" else None)(L.run_info(ref)), 60, poll=0.5)
    assert i.extra["slurm"]["state"] == "PENDING" and i.phase
    # Not the 2 minutes' wait — which is what keeps a real requeue from starting too early. A start forced at once
    # fails (exit 1:0, 0 s: "Killing non-startable batch JobId: Job credential revoked" — slurmd revoked the job's
    # credential when the requeue killed it, and a new credential issued in the same second counts as revoked), so
    # the node is let go first and the clock passes the revocation's second.
    wait_for(lambda: (lambda st: st and "COMPLETING" not in st and "ALLOC" not in st)(slurm_cluster.node_state()),
             60, poll=0.5)
    requeued_at = max(r["t"] for r in kinds(ref.run_dir, "status") if r.get("phase") == "requeued")
    time.sleep(max(0.0, requeued_at + 3 - time.time()))
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")

    def resumed_and_done():
        j = slurm_cluster.job(job)
        if j.get("JobState") == "PENDING" and j.get("Reason") == "BeginTime":
            # the requeue's own hold set after our update (slurmctld finishes the requeue on its next pass)
            slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
        return ended(ref) and j.get("JobState") == "COMPLETED"

    try:
        wait_for(resumed_and_done, 300, poll=1)
    except AssertionError:
        log = (ref.run_dir / "worker.log").read_text(errors="replace")[-3000:]
        daemons = "\n".join(f"{n}: " + "\n".join(ln for ln in (slurm_cluster.dir / n).read_text(errors="replace")
                                                 .splitlines() if f"JobId={job}" in ln or f"job {job}" in ln
                                                 or "error" in ln.lower())[-4000:]
                            for n in ("slurmctld.log", "slurmd.log") if (slurm_cluster.dir / n).exists())
        raise AssertionError(f"the requeued job did not complete: {slurm_cluster.job(job)}\n"
                             f"events: {read_records(ref.run_dir / 'events.jsonl')[-8:]}\nworker.log: {log}\n"
                             f"{daemons}") from None
    recs = read_records(ref.run_dir / "events.jsonl")
    assert [r for r in recs if r["kind"] == "status" and r.get("phase") == "preempted"]
    assert [r for r in recs if r["kind"] == "status" and r.get("phase") == "requeued"]
    assert int(slurm_cluster.job(job)["Restarts"]) == 1
    resumed = [r for r in recs if r["kind"] == "status" and r.get("phase") == "resuming"]
    assert resumed and resumed[0]["checkpoint"] == ck["path"]
    starts = [k for k, r in enumerate(recs) if r["kind"] == "start"]
    assert len(starts) == 2
    after = [r["step"] for r in recs[starts[1]:] if r["kind"] == "log"]
    assert after and after[0] == ck["step"] + 1, (ck["step"], after[:5])
    ends = [r for r in recs if r["kind"] == "end"]
    assert len(ends) == 1 and ends[0]["outcome"] == "completed" and ends[0]["step"] == 60
    assert L.run_info(ref).status == "completed"
    from tui.widgets.metrics import RunState  # the dashboard's view: one gap, from the preemption to the restart

    st = RunState()
    st.update(recs)
    (gap,) = st.gaps
    assert gap["step"] == ck["step"] and gap["to"] == recs[starts[1]]["t"] and st.lost_s(0) > 0


def test_submission_through_an_ssh_login_node(slurm_cluster, ssh_env, launch_job, tmp_path, monkeypatch):
    """sbatch runs on the login node (the loopback sshd); events, status and stop go through it."""
    monkeypatch.setenv("FINETUI_REMOTE_ENV", "FINETUI_CACHE_DIR,FINETUI_STATE_DIR,SLURM_CONF")
    node = ssh_env.nodes[0]
    ref = L.start_run(slurm_job(launch_job, **{
        "general.max_steps": 3, "launch.host": node.target, "launch.remote_python": PYTHON,
        "launch.remote_workdir": str(tmp_path / "login")}))
    assert ref.is_remote
    rdir = Path(ref.remote.run_dir)
    job = ref.remote.nodes[0].slurm_job_id
    assert read_json(rdir / "launch.json")["slurm_job_id"] == job and (rdir / "slurm.sbatch").is_file()
    src = L.event_source(ref)
    got: list[dict] = []
    wait_for(lambda: got.extend(src.read()) or src.done, 300, poll=0.5)
    src.close()
    assert got[-1]["kind"] == "end" and got[-1]["outcome"] == "completed"
    wait_for(lambda: slurm_cluster.job(job)["JobState"] == "COMPLETED", 60, poll=0.5)
    i = L.run_info(ref)
    assert i.status == "completed" and i.step == 3 and i.extra["slurm"]["state"] == "COMPLETED"


async def test_a_job_from_the_wizard_runs_as_a_slurm_job(slurm_cluster, make_app, tmp_path, monkeypatch):
    """The launch step: launcher slurm shows the Slurm fields; Launch submits through sbatch and the dashboard
    follows the job to completed."""
    from textual.widgets import Button, Select

    from tests.fixtures_tui import FIXED_NOW, fake_check_host, fake_data_check, fake_estimate, fake_model_info
    from tui.app import Services, _start_run
    from tui.widgets.form import row_id, widget_id

    monkeypatch.setenv("FINETUI_RUNS_DIR", str(tmp_path / "runs"))
    started: list = []

    def start(job, progress=None):
        started.append(_start_run(job, progress))
        return started[-1]

    app = make_app(services=Services(describe_model=fake_model_info, estimate=fake_estimate,
                                     data_check=fake_data_check, start_run=start, ssh_hosts=lambda: [],
                                     clock=lambda: FIXED_NOW, check_host=fake_check_host))
    async with app.run_test(size=(100, 40)) as pilot:
        app.goto("launch")
        await pilot.pause()
        assert not app.query_one(f"#{row_id('launch.slurm_partition')}").display
        app.query_one(f"#{widget_id('launch.launcher')}", Select).value = "slurm"
        await pilot.pause()
        assert app.job.values["launch.launcher"] == "slurm"
        assert app.query_one(f"#{row_id('launch.slurm_partition')}").display
        for k, v in {"launch.procs_per_node": 1, "launch.slurm_tasks_per_node": 2, "launch.slurm_cpus_per_task": 1,
                     "general.max_steps": 3, "eval.evaluation_strategy": "no",
                     "eval.checkpoint_strategy": "no"}.items():
            app.apply_edit(k, v)
        await pilot.pause()
        assert not app.query_one("#launch-button", Button).disabled, str(app.query_one("#launch-reason").render())
        await pilot.click("#launch-button")
        for _ in range(240):  # (not workers.wait_for_complete: the dashboard's tail worker runs until closed)
            await pilot.pause(0.25)
            if started and type(app.screen).__name__ == "MonitorScreen":
                break
        assert started, "nothing was launched"
        ref = started[0]
        assert read_json(ref.run_dir / "launch.json")["slurm_job_id"]
        assert type(app.screen).__name__ == "MonitorScreen"
        for _ in range(600):
            await pilot.pause(0.5)
            if ended(ref):
                break
        assert L.run_info(ref).status == "completed"


def test_a_requeue_in_flight_is_not_the_runs_outcome():
    """Between the batch script's ``scontrol requeue`` and PENDING, Slurm reports the job FAILED ("cancelled due
    to job requeue"); a reader then must not write the run's end (seen in CI: the requeued run ended 'failed')."""
    import time as _t

    from engine.launch.slurm import REQUEUE_GRACE_S, _requeue_in_flight

    now = _t.time()
    requeued = {"kind": "status", "phase": "requeued", "t": now - 1, "step": 4}
    assert _requeue_in_flight([{"kind": "start", "t": now - 9}, {"kind": "log", "t": now - 5}, requeued])
    assert _requeue_in_flight([requeued, {"kind": "status", "phase": "slurm", "t": now}])
    assert not _requeue_in_flight([requeued, {"kind": "start", "t": now}])  # it started again
    assert not _requeue_in_flight([{**requeued, "t": now - REQUEUE_GRACE_S - 1}])  # long ago: Slurm's word stands
    assert not _requeue_in_flight([{"kind": "start", "t": now}, {"kind": "log", "t": now}])


# ------------------------------------------------------------------ DeepSpeed's launcher under Slurm

def test_a_deepspeed_job_starts_deepspeeds_launcher_from_a_hostfile_of_the_allocation(slurm_cluster, launch_job):
    """trainer.distributed_backend = deepspeed: one DeepSpeed launcher per node (srun, one task per node) with a
    hostfile the batch script writes from ``scontrol show hostnames``; here 1 node, 2 CPU ranks, ZeRO-2 over gloo."""
    ref = L.start_run(launch_job(**{
        "launch.launcher": "slurm", "trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 2,
        "launch.procs_per_node": 2, "launch.slurm_cpus_per_task": 2, "general.max_steps": 3,
        "eval.evaluation_strategy": "no", "eval.checkpoint_strategy": "no", "eval.logging_steps": 1}))
    script = (ref.run_dir / "slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in script and "deepspeed.launcher.runner" in script
    wait_for(lambda: ended(ref), 300, poll=1)
    i = L.run_info(ref)
    assert i.status == "completed", (i.status, i.error, (ref.run_dir / "worker.log").read_text()[-3000:])
    hostfile = [ln for ln in (ref.run_dir / "hostfile").read_text().splitlines() if not ln.startswith("#")]
    assert hostfile == [f"{slurm_cluster.node} slots=2"]
    log = (ref.run_dir / "worker.log").read_text()
    assert "deepspeed.launcher.launch" in log and "--node_rank=0" in log
    start = kinds(ref.run_dir, "start")[0]
    assert start["world_size"] == 2 and start["backend"] == "deepspeed" and i.step == 3


FAKE_SRUN = r'''#!/usr/bin/env python3
"""srun of the test: each node's task (SLURM_NODEID 0..N-1) runs the wrapper, which prints its argv."""
import os, subprocess, sys
args = sys.argv[1:]
while args[0].startswith("--"):
    args.pop(0)
assert args[:2] == ["bash", "-c"], args
wrapper = args[2].replace('exec "${a[@]}"', 'printf "%s\\n" "${a[@]}" > "$OUT/node$SLURM_NODEID"')
for n in range(int(os.environ["SLURM_JOB_NUM_NODES"])):
    subprocess.run(["bash", "-c", wrapper, *args[3:]], env={**os.environ, "SLURM_NODEID": str(n)}, check=True)
'''


def test_the_batch_script_of_a_deepspeed_job_on_n_nodes(launch_job, tmp_path, monkeypatch):
    """The generated script for 4 nodes × 8 ranks, run by bash with Slurm's variables and a stand-in srun and
    scontrol: the hostfile lists the allocation's nodes with slots = ranks per node, every node's launcher gets its
    own node rank, and DeepSpeed's own runner turns each command into one local launch of that node in the
    4-node world (no pdsh, no ssh)."""
    import base64
    import json

    from engine.launch import slurm

    monkeypatch.delenv("FINETUI_WORKER_ARGV", raising=False)
    res = launch_job(**{"launch.launcher": "slurm", "trainer.distributed_backend": "deepspeed",
                        "launch.procs_per_node": 8, "launch.nodes": 4, "launch.slurm_gpus_per_node": 8,
                        "launch.slurm_cpus_per_task": 4}).resolved()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cmd = slurm.task_command(res, run_dir, {})
    assert not (run_dir / "hostfile").exists()  # (written by the job, from its allocation)
    script = slurm.batch_script(res, run_dir, command=cmd, python=PYTHON, token="t0k")
    for opt in ("--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=4"):
        assert f"#SBATCH {opt}\n" in script
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] && printf 'gpu1\\ngpu2\\ngpu3\\ngpu4\\n'"
                                      "\n[ \"$1\" = requeue ] && exit 1\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "SLURM_JOB_ID": "77",
           "SLURM_JOB_NODELIST": "gpu[1-4]", "SLURM_JOB_NUM_NODES": "4", "SLURM_NTASKS": "4"}
    p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "finetui: job 77 on gpu[1-4]" in p.stdout, p.stdout + p.stderr
    hostfile = (run_dir / "hostfile").read_text().splitlines()
    assert [ln for ln in hostfile if not ln.startswith("#")] == [f"gpu{k} slots=8" for k in range(1, 5)]
    for n in range(4):
        argv = (out / f"node{n}").read_text().splitlines()
        assert argv[1:3] == ["-m", "deepspeed.launcher.runner"]
        opts = {argv[k]: argv[k + 1] for k in range(len(argv) - 1) if argv[k].startswith("--")}
        assert (opts["--node_rank"], opts["--num_nodes"], opts["--master_addr"], opts["--hostfile"]) == (
            str(n), "4", "gpu1", str(run_dir / "hostfile")) and "--no_ssh" in argv
        launch, lo = deepspeed_runner_launch(monkeypatch, argv[3:])
        world = json.loads(base64.urlsafe_b64decode(lo["world_info"]))
        assert world == {f"gpu{k}": list(range(8)) for k in range(1, 5)}
        assert lo["node_rank"] == str(n) and lo["master_addr"] == "gpu1" and lo["master_port"].isdigit()
        assert launch[-3:] == ["engine.train.worker", "--run-dir", str(run_dir)]


# ------------------------------------------------------------------ sweeps as job arrays

SWEEP_SLURM = ('launcher = "slurm"\nslurm_cpus_per_task = 1\n\n[sweep]\nobjective = "{objective}"\nparallel = 1\n'
               '[sweep.parameters]\n"general.learning_rate" = {values}\n')


def sweep_preset(tmp_path, values: str, objective: str = "eval_loss", **kw) -> Path:
    from tests.test_sweep import preset

    return preset(tmp_path, SWEEP_SLURM.format(values=values, objective=objective), **kw)


def test_a_sweep_runs_as_one_slurm_job_array(slurm_cluster, tiny_model, tmp_path):
    """launch.launcher = slurm: one `sbatch --array=1-2%1` (parallel = 1) for the sweep's 2 trials, task i running
    trial i's run directory; `finetui sweep` follows it to the end, `sweep show` and `diff` compare the trials,
    and each trial is a Slurm run of its own (job id <array>_<i>)."""
    import json

    from tests.test_sweep import cli

    runs = tmp_path / "runs"
    r = cli("sweep", str(sweep_preset(tmp_path, "[1e-3, 5e-2]")), "--runs-dir", str(runs), cache=tiny_model.parent,
            timeout=500)
    assert r.returncode == 0, r.stdout + r.stderr
    (d,) = [x for x in runs.iterdir() if (x / "sweep.json").exists()]
    rec = json.loads((d / "sweep.json").read_text())
    script = (d / "slurm.sbatch").read_text()
    assert "#SBATCH --array=1-2%1" in script and script.count("RUN_DIR=") == 2
    array = rec["slurm_array"]
    assert rec["status"] == "completed" and [t["status"] for t in rec["trials"]] == ["completed", "completed"]
    assert all(isinstance(t["objective"], float) for t in rec["trials"])
    for t in rec["trials"]:
        run = runs / t["run"]
        info = read_json(run / "launch.json")
        assert info["slurm_job_id"] == f"{array}_{t['index']}" and info["script"] == str(d / "slurm.sbatch")
        assert f"finetui: job " in (run / "worker.log").read_text()  # the task's output is its run's log
        assert f"learning_rate = {t['values']['general.learning_rate']}" in (run / "config.toml").read_text()
        wait_for(lambda: L.run_info(t["run"], runs).extra["slurm"]["state"] == "COMPLETED", 60, poll=0.5)
    b = rec["best"]
    assert b == min(rec["trials"], key=lambda t: t["objective"])["index"]
    show = cli("sweep", "show", d.name, "--runs-dir", str(runs))
    assert show.returncode == 0 and f"best: trial {b}" in show.stdout, show.stdout + show.stderr
    diff = subprocess.run(FINETUI + ["diff", rec["trials"][0]["run"], rec["trials"][1]["run"], "--runs-dir",
                                     str(runs), "--json"], capture_output=True, text=True, timeout=120)
    assert diff.returncode == 0 and "general.learning_rate" in diff.stdout, diff.stdout + diff.stderr


def test_stop_a_slurm_array_sweep_cancels_its_running_and_queued_trials(slurm_cluster, tiny_model, tmp_path):
    import json

    from tests.test_sweep import cli

    runs = tmp_path / "runs"
    r = cli("sweep", str(sweep_preset(tmp_path, "[1e-3, 2e-3, 3e-3]", objective="loss", max_steps=100000,
                                      eval_steps=1000)), "--runs-dir", str(runs), "--detach", cache=tiny_model.parent)
    assert r.returncode == 0, r.stderr
    d = runs / r.stdout.strip()
    first = runs / f"{d.name}-t01"
    wait_for(lambda: kinds(first, "log"), 240, poll=0.5)
    # queued behind trial 1 (%1), with Slurm's reason
    wait_for(lambda: (lambda i: i.status == "pending" and i.phase == "JobArrayTaskLimit")(
        L.run_info(f"{d.name}-t02", runs)), 30, poll=0.5)
    token = read_json(first / "launch.json")["token"]
    r = cli("stop", d.name, "--runs-dir", str(runs), "--grace", "10", timeout=180)
    assert r.returncode == 0 and r.stdout.strip() == f"{d.name}: stopped", r.stdout + r.stderr
    rec = json.loads((d / "sweep.json").read_text())
    assert rec["status"] == "stopped"
    assert [t["status"] for t in rec["trials"]] == ["stopped", "skipped", "skipped"], rec["trials"]
    for k in (1, 2, 3):
        assert slurm_cluster.job(f"{rec['slurm_array']}_{k}").get("JobState") == "CANCELLED"
    assert procs.token_pids(token) == []
    assert kinds(first, "end")[-1]["outcome"] == "stopped"


def test_a_job_array_slurm_refuses_is_one_line_and_leaves_nothing(slurm_cluster, tiny_model, tmp_path):
    from tests.test_sweep import cli

    p = sweep_preset(tmp_path, "[1e-3, 5e-2]")
    p.write_text(p.read_text().replace('launcher = "slurm"\n', 'launcher = "slurm"\nslurm_partition = "nope"\n'))
    runs = tmp_path / "runs"
    r = cli("sweep", str(p), "--runs-dir", str(runs), cache=tiny_model.parent)
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("the sweep's job array was not submitted: local: sbatch refused the job: ") and \
        "partition" in line.lower(), line
    assert not runs.exists() or list(runs.iterdir()) == []

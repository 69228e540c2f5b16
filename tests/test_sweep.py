"""Sweeps (engine.sweep, `finetui sweep`): the [sweep] table's expansion (grid, seeded random, log scale), its
problems, every trial validated before anything starts, a real 2-trial sweep on CPU with the tiny model run to
completion by the detached driver, and the stop of a sweep as a whole."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_train import train_env

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)

BASE = """
name = "sweep test"

[model]
name_or_path = "finetui:tiny-llama"

[data]
train_path = "finetui:samples/alpaca_demo.jsonl"
format = "alpaca"
max_samples = 8
val_size = 0.25

[trainer]
stage = "sft"
training_type = "lora"

[general]
batch_size = 2
max_steps = {max_steps}
max_sequence_length = 64

[runtime]
mixed_precision = "none"
lr_scheduler = "constant"

[eval]
evaluation_strategy = "steps"
eval_steps = {eval_steps}
checkpoint_strategy = "no"
logging_steps = 1

[tracking]
tensorboard = false

[launch]
device = "cpu"
procs_per_node = 1
"""


def preset(tmp_path: Path, sweep: str, max_steps: int = 2, eval_steps: int = 1, name: str = "job.toml") -> Path:
    p = tmp_path / name
    p.write_text(BASE.format(max_steps=max_steps, eval_steps=eval_steps) + "\n" + sweep)
    return p


def cli(*args: str, cache: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = train_env(**({"FINETUI_CACHE_DIR": str(cache)} if cache else {}))
    env.pop("FINETUI_RUNS_DIR", None)
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def spec_of(text: str) -> dict:
    from engine import presets

    return presets.loads(BASE.format(max_steps=2, eval_steps=1) + "\n" + text).sweep


def test_grid_expansion_product_counts_log_scale_int_rounding_and_budget():
    from engine.sweep import combinations

    s = spec_of('[sweep]\n[sweep.parameters]\n'
                '"general.learning_rate" = { min = 1e-4, max = 1e-2, scale = "log", count = 3 }\n'
                'adapter.lora_rank = [8, 16]\n')
    got = combinations(s)
    assert got == [{"general.learning_rate": lr, "adapter.lora_rank": r} for lr in (1e-4, 1e-3, 1e-2) for r in (8, 16)]
    # linear spacing; an int field gets whole numbers, duplicates dropped; the budget cuts the grid in its order
    s = spec_of('[sweep]\nbudget = 3\n[sweep.parameters]\n'
                'adapter.lora_rank = { min = 4, max = 6, count = 5 }\n'
                'general.learning_rate = { values = [0.1, 0.2] }\n')
    assert combinations(s) == [{"adapter.lora_rank": 4, "general.learning_rate": 0.1},
                               {"adapter.lora_rank": 4, "general.learning_rate": 0.2},
                               {"adapter.lora_rank": 5, "general.learning_rate": 0.1}]


def test_random_expansion_is_seeded_bounded_and_log_uniform():
    from engine.sweep import combinations

    text = ('[sweep]\nmethod = "random"\ntrials = 400\nseed = {seed}\n[sweep.parameters]\n'
            '"general.learning_rate" = {{ min = 1e-5, max = 1e-1, scale = "log" }}\n'
            '"runtime.weight_decay" = {{ min = 0.0, max = 0.1 }}\n"adapter.lora_rank" = [4, 8, 16]\n')
    a, b, c = (combinations(spec_of(text.format(seed=s))) for s in (7, 7, 8))
    assert a == b and a != c and len(a) == 400
    lrs = [t["general.learning_rate"] for t in a]
    assert all(1e-5 <= x <= 1e-1 for x in lrs)
    # log-uniform: each decade holds about a quarter of the draws (a linear draw would put ~90% in the last one)
    per_decade = [sum(10 ** (k - 1) <= x * 1e5 < 10 ** k for x in lrs) for k in range(1, 5)]
    assert all(60 <= n <= 140 for n in per_decade), per_decade
    wds = [t["runtime.weight_decay"] for t in a]
    assert 0.0 <= min(wds) and max(wds) <= 0.1 and abs(sum(wds) / len(wds) - 0.05) < 0.01
    assert {t["adapter.lora_rank"] for t in a} == {4, 8, 16}
    # the budget caps the trials
    assert len(combinations(spec_of(text.format(seed=1).replace("trials = 400", "trials = 400\nbudget = 5")))) == 5


def test_the_sweep_table_round_trips_and_its_mistakes_are_one_line_each(tmp_path):
    from engine import presets
    from engine.schema import ConfigError

    job = presets.loads(BASE.format(max_steps=2, eval_steps=1) + '\n[sweep]\nmethod = "random"\ntrials = 3\n'
                        '[sweep.parameters]\n"general.learning_rate" = { min = 1e-4, max = 1e-2, scale = "log" }\n')
    again = presets.loads(presets.dumps(job))
    assert again.sweep == job.sweep and again.values == job.values
    assert "[sweep]" not in presets.dumps(job, resolved=True)  # a run's config is one trial
    bad = ('[sweep]\nmethd = "grid"\nmethod = "grd"\ngoal = "lowest"\n[sweep.parameters]\n'
           '"general.learnig_rate" = [1e-3]\n"launch.run_name" = ["a"]\n"trainer.stage" = { min = 1, max = 2 }\n'
           '"general.learning_rate" = { min = 0, max = 1e-2, scale = "log", count = 2 }\n'
           '"runtime.weight_decay" = { min = 0.0, max = 0.1 }\n"adapter.lora_rank" = []\n')
    with pytest.raises(ConfigError) as e:
        presets.loads(BASE.format(max_steps=2, eval_steps=1) + "\n" + bad, "job.toml")
    lines = str(e.value).splitlines()
    assert lines == [
        "sweep.methd: unknown key in job.toml; did you mean `method`? (allowed: method, parameters, objective, goal, "
        "budget, trials, seed, parallel)",
        "sweep.method: 'grd' is not a sweep method (allowed: grid, random)",
        "sweep.goal: 'lowest' is not a goal (allowed: minimize, maximize)",
        "sweep.parameters.general.learnig_rate: unknown field; did you mean `general.learning_rate`?",
        "sweep.parameters.launch.run_name: is set by the sweep for each trial and cannot be swept",
        "sweep.parameters.trainer.stage: a range needs a numeric field (trainer.stage is enum); give a list of values",
        "sweep.parameters.general.learning_rate: a log scale needs min above 0 (min is 0)",
        "sweep.parameters.adapter.lora_rank: the list of values is empty",
    ], lines
    with pytest.raises(ConfigError) as e:
        presets.loads(BASE.format(max_steps=2, eval_steps=1) + '\n[sweep]\n[sweep.parameters]\n'
                      '"runtime.weight_decay" = { min = 0.0, max = 0.1 }\n', "job.toml")
    assert str(e.value) == ("sweep.parameters.runtime.weight_decay: a range in a grid sweep needs count (how many "
                            "values between min and max)")


def test_every_trial_is_validated_before_anything_starts(tmp_path):
    p = preset(tmp_path, '[sweep]\n[sweep.parameters]\n"general.learning_rate" = [1e-3, -1.0]\n'
                         '"adapter.lora_rank" = [8, 0]\n')
    runs = tmp_path / "runs"
    r = cli("sweep", str(p), "--runs-dir", str(runs))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("trial ") for line in lines), lines
    assert lines[0].startswith("trial 2 (general.learning_rate=0.001, adapter.lora_rank=0): adapter.lora_rank: ")
    assert lines[1].startswith("trial 3 (general.learning_rate=-1, adapter.lora_rank=8): general.learning_rate: ")
    assert not runs.exists()  # nothing started, no folder written
    # validate says the same about the trials; the base is valid, and every other command loads the preset
    r2 = cli("validate", str(p))
    assert r2.returncode == 2 and r2.stderr.strip().splitlines() == lines
    assert cli("show", str(p)).returncode == 0 and cli("estimate", str(p)).returncode == 0
    # an objective the trials will not record
    p = preset(tmp_path, '[sweep]\n[sweep.parameters]\n"general.learning_rate" = [1e-3]\n', name="noeval.toml")
    p.write_text(p.read_text().replace('evaluation_strategy = "steps"', 'evaluation_strategy = "no"'))
    r = cli("validate", str(p))
    assert r.returncode == 2 and r.stderr.strip().startswith("sweep.objective: eval_loss needs evaluations"), r.stderr
    ok = preset(tmp_path, '[sweep]\n[sweep.parameters]\n"general.learning_rate" = [1e-3, 1e-2]\n', name="ok.toml")
    r = cli("validate", str(ok))
    assert r.returncode == 0 and r.stdout.strip() == f"{ok}: valid (profile native; sweep of 2 trials)"


def test_best_counts_early_stopped_trials_and_follows_the_goal():
    from engine.sweep import best, objective_of

    rec = {"goal": "minimize", "trials": [
        {"index": 1, "status": "completed", "objective": 2.0},
        {"index": 2, "status": "early_stopped", "objective": 1.5},
        {"index": 3, "status": "failed", "objective": 0.1}, {"index": 4, "status": "skipped", "objective": None}]}
    assert best(rec) == 2
    assert best({**rec, "goal": "maximize"}) == 1
    recs = [{"kind": "eval", "loss": 3.0}, {"kind": "eval", "loss": 2.5}, {"kind": "eval", "loss": 2.7},
            {"kind": "log", "loss": 9.0}, {"kind": "log", "loss": 8.0}]
    assert objective_of(recs, "eval_loss", "minimize") == 2.5 and objective_of(recs, "eval_loss", "maximize") == 3.0
    assert objective_of([r for r in recs if r["kind"] == "log"], "loss", "minimize") == 8.0
    assert objective_of(recs, "eval_accuracy", "maximize") is None


def test_a_two_trial_sweep_runs_to_completion_detached(tmp_path, tiny_model):
    cache = tiny_model.parent
    p = preset(tmp_path, '[sweep]\n[sweep.parameters]\n"general.learning_rate" = [1e-3, 5e-2]\n')
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    r = cli("sweep", str(p), "--runs-dir", str(runs), cache=cache, timeout=500)
    assert r.returncode == 0, r.stdout + r.stderr
    sweeps = [d for d in runs.iterdir() if (d / "sweep.json").exists()]
    assert len(sweeps) == 1
    d = sweeps[0]
    rec = json.loads((d / "sweep.json").read_text())
    assert rec["status"] == "completed" and rec["objective"] == "eval_loss" and rec["goal"] == "minimize"
    runs_of = [t["run"] for t in rec["trials"]]
    assert runs_of == [f"{d.name}-t01", f"{d.name}-t02"]
    assert [t["status"] for t in rec["trials"]] == ["completed", "completed"]
    assert all(isinstance(t["objective"], float) and math.isfinite(t["objective"]) for t in rec["trials"])
    for t in rec["trials"]:  # each trial is a normal run, with its values and its own eval losses
        run = runs / t["run"]
        cfg = (run / "config.toml").read_text()
        assert f"learning_rate = {t['values']['general.learning_rate']}" in cfg and "[sweep]" not in cfg
        evals = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if '"eval"' in x]
        assert t["objective"] == min(e["loss"] for e in evals)
    want_best = min(rec["trials"], key=lambda t: t["objective"])["index"]
    assert rec["best"] == want_best
    # the follow output and `sweep show`: the table of swept values against the objective, the best marked
    assert f"sweep {d.name}: completed" in r.stdout
    show = cli("sweep", "show", d.name, "--runs-dir", str(runs))
    assert show.returncode == 0
    rows = show.stdout.splitlines()
    assert rows[0] == f"sweep {d.name}: completed; minimize eval_loss; best: trial {want_best}"
    assert rows[1].split() == ["trial", "run", "status", "general.learning_rate", "eval_loss"]
    marked = [line for line in rows[2:] if line.startswith("*")]
    assert len(marked) == 1 and marked[0].split()[1:3] == [str(want_best), f"{d.name}-t{want_best:02d}"]
    assert show.stdout.split("\n", 1)[1] in r.stdout  # `sweep FILE` ended with the same table
    att = cli("sweep", "--attach", d.name, "--runs-dir", str(runs))
    assert att.returncode == 0 and f"sweep {d.name}: completed" in att.stdout
    listed = json.loads("[" + ",".join(cli("runs", "--json", "--runs-dir", str(runs)).stdout.split("\n")[:-1]) + "]")
    assert sorted(i["name"] for i in listed) == runs_of  # the trials are runs; the sweep's folder is not
    print(f"2-trial sweep: {time.monotonic() - t0:.1f}s")


def test_stop_a_sweep_stops_its_running_trial_and_starts_no_more(tmp_path, tiny_model):
    cache = tiny_model.parent
    p = preset(tmp_path, '[sweep]\n[sweep.parameters]\n"general.learning_rate" = [1e-3, 2e-3, 3e-3]\n',
               max_steps=100000, eval_steps=1000)
    runs = tmp_path / "runs"
    r = cli("sweep", str(p), "--runs-dir", str(runs), "--detach", cache=cache)
    assert r.returncode == 0, r.stderr
    name = r.stdout.strip()
    d = runs / name
    first = runs / f"{name}-t01"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # trial 1 is training
        ev = first / "events.jsonl"
        if ev.exists() and '"kind": "log"' in ev.read_text():
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"trial 1 did not train: {(d / 'sweep.log').read_text() if (d / 'sweep.log').exists() else ''}")
    r = cli("stop", name, "--runs-dir", str(runs), "--grace", "10", timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"{name}: stopped", r.stderr
    rec = json.loads((d / "sweep.json").read_text())
    assert rec["status"] == "stopped"
    assert [t["status"] for t in rec["trials"]] == ["stopped", "skipped", "skipped"]
    assert not (runs / f"{name}-t02").exists()
    end = [json.loads(x) for x in (first / "events.jsonl").read_text().splitlines() if '"end"' in x]
    assert end and end[-1]["outcome"] == "stopped"
    from engine import sweep as S
    import engine.launch as L

    assert not S.driver_alive(rec) and L.run_info(first.name, runs).status == "stopped"
    time.sleep(3)  # no trial starts afterwards
    assert sorted(x.name for x in runs.iterdir()) == [name, f"{name}-t01"]
    r = cli("stop", name, "--runs-dir", str(runs))  # again: it says what it is
    assert r.returncode == 0 and r.stdout.strip() == f"{name}: stopped"


async def test_the_runs_screen_groups_a_sweeps_trials_marks_the_best_and_shows_its_table(tmp_path, monkeypatch):
    from tests.fake_run import T0, harness_app, wait_for, write_fake_run, write_fake_sweep
    from tui.screens.runs import RunsScreen
    from tui.screens.sweep import SweepScreen

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    write_fake_sweep(runs, "sw_x", [({"general.learning_rate": 0.001}, "completed", 2.0),
                                    ({"general.learning_rate": 0.01}, "early_stopped", 1.5)], t0=T0)
    write_fake_run(runs / "ft_other", steps=20, t0=T0 + 1800, seed=9)
    app = harness_app(lambda: RunsScreen("runs", clock=lambda: T0 + 20_000, auto_refresh=False))
    async with app.run_test(size=(120, 30)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        await pilot.pause()
        # newest first, but a sweep's trials stay together in trial order where its newest trial stands
        assert [r.name for r in scr.rows] == ["sw_x-t01", "sw_x-t02", "ft_other"]
        assert [(r.sweep, r.trial, r.best) for r in scr.rows] == [("sw_x", 1, False), ("sw_x", 2, True),
                                                                  (None, None, False)]
        table = scr.query_one("#runs-table")
        assert [str(table.get_cell_at((i, 1))) for i in range(3)] == ["┌ sw_x-t01", "└★sw_x-t02", "ft_other"]
        table.move_cursor(row=1)
        await pilot.pause()
        detail = str(scr.query_one("#runs-detail").render())
        assert "trial 2 of sweep sw_x — its best · w: the sweep's table" in detail
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen))
        sw = app.screen
        t = sw.query_one("#sweep-table")
        rows = [[str(c) for c in t.get_row_at(i)] for i in range(t.row_count)]
        assert rows == [["", "1", "completed", "0.001", "2.0000"], ["★", "2", "early_stopped", "0.01", "1.5000"]]
        assert "completed, 2/2 trials done · minimize eval_loss · best: trial 2" in str(sw.query_one("#sweep-title")
                                                                                         .render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is scr)
        table.move_cursor(row=2)
        await pilot.press("w")
        await pilot.pause()
        assert app.screen is scr


def test_a_trial_that_fails_is_recorded_and_the_sweep_goes_on(tmp_path):
    """With the launch tests' stand-in worker (no torch): trial 2's worker cannot start; trials 1 and 3 run."""
    from tests.fixtures_launch import fake_worker_argv

    p = preset(tmp_path, '[sweep]\nobjective = "loss"\n[sweep.parameters]\n'
                         '"general.learning_rate" = [1e-3, 2e-3, 3e-3]\n')
    runs = tmp_path / "runs"
    env_cli = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(p), "--runs-dir", str(runs)],
                             capture_output=True, text=True, timeout=300, cwd=ROOT, env={**train_env(),
                             "FINETUI_WORKER_ARGV": fake_worker_argv(5, 0.05, 1, "--fail-if-dir-endswith=-t02")})
    assert env_cli.returncode == 0, env_cli.stdout + env_cli.stderr
    d = next(x for x in runs.iterdir() if (x / "sweep.json").exists())
    rec = json.loads((d / "sweep.json").read_text())
    assert [t["status"] for t in rec["trials"]] == ["completed", "failed", "completed"]
    assert rec["status"] == "completed"
    # the objective "loss": the last training loss of each finished trial; the best is the lowest
    scored = {t["index"]: t["objective"] for t in rec["trials"] if t["objective"] is not None}
    assert set(scored) == {1, 3} and rec["best"] == min(scored, key=scored.get)
    assert f"trial 2/3 {d.name}-t02 (general.learning_rate=0.002): failed" in env_cli.stdout


async def test_launch_sweep_in_the_tui_checks_the_trials_then_starts_the_driver(make_app, tmp_path, monkeypatch):
    from engine import presets
    from tests.fake_run import wait_for
    from tests.fixtures_launch import fake_worker_argv
    from tui.screens.runs import RunsScreen

    monkeypatch.setenv("FINETUI_WORKER_ARGV", fake_worker_argv(3, 0.05, 1))
    monkeypatch.setenv("FINETUI_RUNS_DIR", str(tmp_path / "runs"))
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        app.action_launch_sweep()  # the demo job has no [sweep]: said, nothing started
        await pilot.pause()
        assert any(n.title == "No sweep" for n in app._notifications)
        bad = presets.loads(presets.dumps(app.job) + '\n[sweep]\n[sweep.parameters]\n"adapter.lora_rank" = [4, 0]\n')
        app.set_job(bad)
        app.action_launch_sweep()
        await pilot.pause()
        assert any(n.title == "Cannot start the sweep: 1 to fix" and n.message.startswith(
            "trial 2 (adapter.lora_rank=0): adapter.lora_rank: ") for n in app._notifications)
        assert not (tmp_path / "runs").exists()
        good = presets.loads(presets.dumps(app.job).replace('"adapter.lora_rank" = [\n    4,\n    0,\n]',
                                                             '"adapter.lora_rank" = [4, 8]'))
        assert good.sweep["parameters"]["adapter.lora_rank"] == {"values": [4, 8]}
        app.set_job(good)
        app.action_launch_sweep()
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=30)
        d = next((tmp_path / "runs").iterdir())
        await wait_for(pilot, lambda: json.loads((d / "sweep.json").read_text()).get("status") == "completed",
                       timeout=120)
        rec = json.loads((d / "sweep.json").read_text())
        assert [t["status"] for t in rec["trials"]] == ["completed", "completed"]


@pytest.mark.slow
def test_a_sweep_runs_its_trials_on_an_ssh_host(ssh_env, fake_worker, launch_job, tmp_path):
    """The trials go through the normal launch path: on a real sshd on 127.0.0.1, each an ordinary remote run."""
    from engine import sweep as S
    from tests.fixtures_launch import PYTHON

    fake_worker(4, 0.05, 1)
    node = ssh_env.nodes[0]
    job = launch_job(**{"launch.host": node.target, "launch.remote_python": PYTHON,
                        "launch.remote_workdir": str(tmp_path / "remote")})
    job.sweep, probs = S.parse_table({"objective": "loss", "parameters": {"general.learning_rate": [1e-3, 2e-3]}})
    assert not probs
    d = S.start(job, cwd=str(tmp_path))
    deadline = time.monotonic() + 180
    while S.read(d).get("status") == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    rec = S.read(d)
    assert rec["status"] == "completed", (d / "sweep.log").read_text()
    assert [t["status"] for t in rec["trials"]] == ["completed", "completed"]
    for t in rec["trials"]:
        remote = json.loads((tmp_path / "runs" / t["run"] / "remote.json").read_text())
        assert remote["host"] == node.target and Path(remote["run_dir"]).parent == tmp_path / "remote"
        assert isinstance(t["objective"], float)


def test_parallel_trials_take_gpu_sets_of_the_target():
    from engine.gpus import Gpu
    from engine.sweep import slots

    four = [Gpu(i, f"GPU-{i}", "H100", 81559.0, (9, 0)) for i in range(4)]
    res = {"launch.device": "cuda", "launch.host": "local", "launch.procs_per_node": 2}
    assert slots(res, None, probe=lambda h: four) == ([None], "")
    assert slots(res, "auto", probe=lambda h: four) == (["GPU-0,GPU-1", "GPU-2,GPU-3"], "")
    assert slots({**res, "launch.launcher": "deepspeed"}, "auto", probe=lambda h: four)[0] == ["0,1", "2,3"]
    assert slots(res, 3, probe=lambda h: four) == (
        ["GPU-0,GPU-1", "GPU-2,GPU-3"], "this machine has 4 GPUs: 2 trial(s) of 2 GPU(s) at a time, not 3")
    asked = []
    assert slots({**res, "launch.host": "gpu-box", "launch.procs_per_node": 1}, "auto",
                 probe=lambda h: asked.append(h) or four[:3])[0] == ["GPU-0", "GPU-1", "GPU-2"]
    assert asked == ["gpu-box"]  # the target's GPUs, over SSH for a remote one
    assert slots(res, "auto", probe=lambda h: None) == ([None], "this machine shows no GPUs (nvidia-smi): one "
                                                               "trial at a time")
    assert slots({**res, "launch.device": "cpu"}, 2) == ([None, None], "")
    assert slots({**res, "launch.hosts": ["a", "b"]}, 2) == ([None], "a multi-node job runs one trial at a time")
    from engine.sweep import parse_table

    assert [str(p) for p in parse_table({"parallel": 0, "parameters": {"general.learning_rate": [1]}})[1]] == [
        "sweep.parallel: 0 is not a number of trials at a time (allowed: 1 or more, \"auto\")"]


def test_two_trials_at_a_time_then_the_third(tmp_path):
    from tests.fixtures_launch import fake_worker_argv

    p = preset(tmp_path, '[sweep]\nobjective = "loss"\nparallel = 2\n[sweep.parameters]\n'
                         '"general.learning_rate" = [1e-3, 2e-3, 3e-3]\n')
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(p), "--runs-dir", str(runs)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**train_env(), "FINETUI_WORKER_ARGV": fake_worker_argv(20, 0.1, 1)})
    assert r.returncode == 0, r.stdout + r.stderr
    d = next(x for x in runs.iterdir() if (x / "sweep.json").exists())
    rec = json.loads((d / "sweep.json").read_text())
    assert [t["status"] for t in rec["trials"]] == ["completed"] * 3
    t1, t2, t3 = rec["trials"]
    assert t2["started"] < t1["ended"] and t1["started"] < t2["ended"]  # 1 and 2 ran together
    assert t3["started"] >= min(t1["ended"], t2["ended"]) - 1.5  # 3 waited for a free place (the driver polls 1 s)


def test_a_job_array_sweep_without_its_driver_is_brought_up_to_date_from_its_runs(tmp_path):
    """Slurm runs a job array's trials whether the sweep's driver lives or not: `sweep show` / `--attach` then
    read the trials' runs, and close the sweep once they are all over (trial 1 stopped, trial 2 completed)."""
    from engine import sweep as S
    from tests.fake_run import write_fake_run

    runs = tmp_path / "runs"
    d = runs / "sw"
    d.mkdir(parents=True)
    write_fake_run(runs / "sw-t02", steps=20)
    (runs / "sw-t01").mkdir()
    (runs / "sw-t01" / "events.jsonl").write_text(json.dumps(
        {"t": 1.0, "kind": "end", "step": 0, "outcome": "stopped"}) + "\n")
    (runs / "sw-t01" / "launch.json").write_text("{}")
    (d / "sweep.json").write_text(json.dumps({
        "name": "sw", "runs_dir": str(runs), "objective": "eval_loss", "goal": "minimize", "status": "running",
        "slurm_array": "7", "driver": {}, "spec": {"parameters": {"general.learning_rate": [1e-3, 1e-2]}},
        "trials": [{"index": 1, "values": {"general.learning_rate": 1e-3}, "run": "sw-t01", "status": "pending"},
                   {"index": 2, "values": {"general.learning_rate": 1e-2}, "run": "sw-t02", "status": "running"}]}))
    assert S.status(S.read(d)) == "running"  # (not lost: Slurm runs the trials)
    rec = S.refresh(d)
    assert rec["status"] == "completed" and rec["best"] == 2
    assert [t["status"] for t in rec["trials"]] == ["stopped", "completed"]
    assert isinstance(rec["trials"][1]["objective"], float)
    show = cli("sweep", "show", "sw", "--runs-dir", str(runs))
    assert show.returncode == 0 and "sweep sw: completed" in show.stdout, show.stdout + show.stderr

"""Tracking: a tiny real training run writes TensorBoard event files and an MLflow run.

One process, the demo preset cut to a few steps, a local MLflow file store in tmp.
TensorBoard files are read back with tensorboard's own EventAccumulator; the MLflow run
must carry the training metrics, the hyperparameters and the final artifact path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import presets

ROOT = Path(__file__).resolve().parent.parent
STEPS = 4


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tracking")
    run_dir = base / "runs" / "ft_tracking"
    run_dir.mkdir(parents=True)
    uri = (base / "mlruns").as_uri()  # a local file store: no database migrations to wait for
    job = presets.load(presets.PRESETS_DIR / "demo.toml")
    job.values.update({
        "general.max_steps": STEPS, "launch.procs_per_node": 1, "eval.logging_steps": 1,
        "eval.evaluation_strategy": "steps", "eval.eval_steps": 2,
        "data.max_samples": 80, "general.batch_size": 4, "eval.checkpoint_steps": STEPS,
        "tracking.tensorboard": True, "tracking.mlflow_tracking_uri": uri,
        "tracking.mlflow_experiment": "finetui-tracking-test", "launch.run_name": "ft_tracking",
        "launch.runs_dir": str(base / "runs"),
    })
    assert job.problems() == [], job.problems()
    presets.save(job, run_dir / "config.toml", resolved=True)
    # MLflow 3 keeps the file store behind an opt-out; it saves the ~15 s of sqlite migrations
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", MLFLOW_ALLOW_FILE_STORE="true")
    for k in ("MLFLOW_TRACKING_URI", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "engine.train.worker", "--run-dir", str(run_dir)], cwd=base,
                       env=env, capture_output=True, text=True, timeout=300)
    log = p.stdout[-3000:] + p.stderr[-3000:]
    return {"run_dir": run_dir, "uri": uri, "rc": p.returncode, "log": log, "job": job}


def test_worker_run_completes(tracked_run):
    assert tracked_run["rc"] == 0, tracked_run["log"]
    assert (tracked_run["run_dir"] / "final").is_dir()


def test_tensorboard_event_files_are_readable(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tracked_run["run_dir"] / "tensorboard"
    files = list(tb.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event files under {tb}\n{tracked_run['log']}"
    scalars: dict[str, list] = {}
    for d in sorted({f.parent for f in files}):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(acc.Scalars(tag))
    loss_tags = [t for t in scalars if t.endswith("loss") and "eval" not in t]
    assert loss_tags, f"no training loss scalar; tags: {sorted(scalars)}"
    steps = sorted({e.step for e in scalars[loss_tags[0]]})
    assert len(steps) >= STEPS - 1 and max(steps) <= STEPS
    assert all(e.value == e.value for e in scalars[loss_tags[0]])  # not NaN
    assert any("eval" in t and t.endswith("loss") for t in scalars), sorted(scalars)
    assert any(t.endswith("learning_rate") for t in scalars), sorted(scalars)


def test_mlflow_run_has_metrics_params_and_final_path(tracked_run):
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=tracked_run["uri"])
    exp = client.get_experiment_by_name("finetui-tracking-test")
    assert exp is not None, tracked_run["log"]
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert "loss" in metrics or "train_loss" in metrics, sorted(metrics)
    assert "eval_loss" in metrics, sorted(metrics)
    hist = client.get_metric_history(run.info.run_id, "loss" if "loss" in metrics else "train_loss")
    assert len(hist) >= STEPS - 1
    params = run.data.params
    assert float(params["learning_rate"]) == pytest.approx(0.003)
    assert int(params["per_device_train_batch_size"]) == 4
    final = tracked_run["run_dir"] / "final"
    assert params.get("final_path") == str(final), sorted(params)
    assert Path(params["final_path"]).is_dir()
    # finetui's own parameters (profile, adapter values) and the job's config as an artifact
    assert params["finetui.profile"] == "native"
    assert float(params["finetui.general.learning_rate"]) == pytest.approx(0.003)
    assert any(k.startswith("finetui.adapter.") for k in params), sorted(params)
    arts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "config.toml" in arts, arts

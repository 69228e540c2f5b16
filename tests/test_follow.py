"""The lighter one-process run: ``finetui train`` follows a local run from a small standard-library process
(tui/follow.py, exec'd in its place), and the worker leaves out what the job does not use (tracking and storage
clients, SciPy). Fake worker (no torch) for the follower; a subprocess for the worker's imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures_launch import ROOT
from tests.test_launch_local import FINETUI, _preset, wait_for


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    # (Ctrl-C's SIGINT as a terminal delivers it: a suite started in the background by a non-interactive shell
    # hands its children SIGINT ignored, and a program keeps an ignored SIGINT ignored, as it should)
    p = subprocess.Popen(FINETUI + ["train", str(_preset(tmp_path))], cwd=tmp_path, env=dict(os.environ),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "runs"
    run = wait_for(lambda: next(iter(runs.iterdir()), None) if runs.is_dir() else None)
    return p, run


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def test_train_follows_from_a_small_process(fake_worker, tmp_path):
    fake_worker(30, 0.1)
    p, run = _start(tmp_path)
    cmd = wait_for(lambda: (c := Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")) and
                   any(a.endswith(b"tui/follow.py") for a in c) and c, 30)
    assert b"-I" in cmd and b"-S" in cmd  # isolated: no working directory, no site
    wait_for(lambda: b'"log"' in (run / "events.jsonl").read_bytes() if (run / "events.jsonl").exists() else False)
    peak_kib = int(_status(p.pid)["VmHWM"].split()[0])
    assert peak_kib < 24 * 1024, peak_kib  # (the CLI that started the run: about 38 MiB; the follower: ~14)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert f"run {run.name}: completed" in out and "30/30" in out
    assert "Ctrl-C to stop or detach" in err


def test_follower_ctrl_c_without_a_terminal_stops_the_run(fake_worker, tmp_path):
    fake_worker(1000, 0.05)
    p, run = _start(tmp_path)
    wait_for(lambda: any(a.endswith(b"tui/follow.py") for a in Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")))
    wait_for(lambda: b'"log"' in (run / "events.jsonl").read_bytes() if (run / "events.jsonl").exists() else False)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    assert f"stopping {run.name}" in out and f"run {run.name}: stopped" in out, (out, err)


def test_follower_says_lost_when_the_run_dies_without_an_end(fake_worker, tmp_path):
    fake_worker(1000, 0.05)
    p, run = _start(tmp_path)
    wait_for(lambda: b'"log"' in (run / "events.jsonl").read_bytes() if (run / "events.jsonl").exists() else False)
    info = json.loads((run / "launch.json").read_text())
    os.killpg(info["pgid"], signal.SIGKILL)  # supervisor and worker at once: nobody writes the end record
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and f"run {run.name}: lost" in out, (out, err)


def test_worker_leaves_out_unused_clients_and_scipy(tmp_path):
    from engine.train.worker import unused_clients

    assert unused_clients({}) == ["wandb", "mlflow", "boto3", "botocore"]
    assert unused_clients({"tracking.wandb": True, "tracking.mlflow_tracking_uri": "http://x",
                           "data.train_path": "s3://b/k.jsonl"}) == []
    # (transformers' loss modules only: what imports SciPy; importing the trainers takes seconds more)
    code = ("import importlib.util, sys; from engine.train.worker import defer_scipy, skip_unused_clients; "
            "skip_unused_clients({}); defer_scipy(); import transformers.loss.loss_utils; "
            "from transformers.utils import is_scipy_available; "
            "print([importlib.util.find_spec(m) is None for m in ('wandb', 'boto3')], 'scipy' in sys.modules, "
            "is_scipy_available()); import scipy.optimize; print('scipy importable')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    first, second = r.stdout.strip().splitlines()[-2:]
    assert first == "[True, True] False True", r.stdout
    assert second == "scipy importable"

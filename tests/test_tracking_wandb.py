"""Weights & Biases: a real short training run with tracking.wandb on a host that cannot reach the service
logs offline into the run directory (W&B's own offline run files) and says how to sync; the API key is
never in a preset; LLaMA-Factory's ``report_to: wandb`` is kept both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import presets

pytest.importorskip("wandb")

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3
CLOSED = "http://127.0.0.1:9"  # nothing listens: "the service cannot be reached"


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("wandb")
    run_dir = base / "runs" / "ft_wandb"
    run_dir.mkdir(parents=True)
    job = presets.load(presets.PRESETS_DIR / "demo.toml")
    job.values.update({
        "general.max_steps": STEPS, "launch.procs_per_node": 1, "eval.logging_steps": 1,
        "eval.evaluation_strategy": "no", "data.max_samples": 40, "general.batch_size": 4,
        "eval.checkpoint_strategy": "no", "tracking.tensorboard": False,
        "tracking.wandb": True, "tracking.wandb_project": "finetui-test", "tracking.wandb_entity": "team-x",
        "tracking.wandb_run_name": "lora-rank8", "launch.run_name": "ft_wandb", "launch.runs_dir": str(base / "runs"),
    })
    assert job.problems() == [], job.problems()
    presets.save(job, run_dir / "config.toml", resolved=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", WANDB_BASE_URL=CLOSED,
               WANDB_API_KEY="k" * 40, HOME=str(base))
    for k in ("WANDB_MODE", "WANDB_DIR", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "engine.train.worker", "--run-dir", str(run_dir)], cwd=base,
                       env=env, capture_output=True, text=True, timeout=400)
    return {"run_dir": run_dir, "rc": p.returncode, "log": p.stdout[-3000:] + p.stderr[-3000:]}


def test_offline_run_files_and_the_sync_line(wandb_run):
    assert wandb_run["rc"] == 0, wandb_run["log"]
    d = wandb_run["run_dir"]
    runs = list((d / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, sorted(p.name for p in (d / "wandb").iterdir())
    assert list(runs[0].glob("run-*.wandb")), "no W&B transaction log"
    events = [json.loads(ln) for ln in (d / "events.jsonl").read_text().splitlines()]
    said = [e.get("text", "") for e in events if e.get("phase") == "warning" and "W&B" in e.get("text", "")]
    assert said and f"wandb sync {runs[0]}" in said[0] and "127.0.0.1 cannot be reached" in said[0]
    assert any(e["kind"] == "end" and e["outcome"] == "completed" for e in events)


def _wandb_records(path: Path):
    """The protobuf records of a W&B transaction log (``run-*.wandb``): a 7-byte header (``:W&B``, magic,
    version) then LevelDB-log framing in 32 KiB blocks (crc32, little-endian length, type; full/first/middle/last)."""
    import struct

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:
            break
        chunk = data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind == 1:
            yield chunk
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            yield buf + chunk
            buf = b""


def test_offline_run_holds_the_metrics_project_and_name(wandb_run):
    from wandb.proto import wandb_internal_pb2 as pb

    f = next(next((wandb_run["run_dir"] / "wandb").glob("offline-run-*")).glob("run-*.wandb"))
    run_rec, losses = None, []
    for data in _wandb_records(f):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_rec = rec.run
        elif kind == "history":
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                if key == "train/loss":
                    losses.append(float(json.loads(item.value_json)))
    assert run_rec is not None
    assert (run_rec.project, run_rec.entity, run_rec.display_name) == ("finetui-test", "team-x", "lora-rank8")
    assert len(losses) == STEPS and all(x == x for x in losses)


def test_mode_choice(monkeypatch):
    from engine.train.wandb_tracking import choose_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", CLOSED)
    assert choose_mode({"tracking.wandb_mode": "auto"}) == ("offline", choose_mode({})[1])
    assert "127.0.0.1 cannot be reached" in choose_mode({})[1]
    assert choose_mode({"tracking.wandb_mode": "online"}) == ("online", None)
    assert choose_mode({"tracking.wandb_mode": "offline"})[0] == "offline"
    # reachable, but no key: offline (a login prompt would hang a detached run)
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.delenv("NETRC", raising=False)
    assert choose_mode({}, check=lambda _u: True) == (
        "offline", "no WANDB_API_KEY in the run's environment (and no `wandb login` on this host)")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert choose_mode({}, check=lambda _u: True) == ("online", None)


def test_api_key_never_in_a_preset(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[tracking]\nwandb = true\nwandb_api_key = "abc"\n')
    with pytest.raises(Exception) as e:
        presets.load(p)
    assert "tracking.wandb_api_key: secrets are never stored in a preset; the W&B API key is read from the " \
           "WANDB_API_KEY environment variable only" in str(e.value)


def test_llamafactory_report_to_wandb_round_trip(tmp_path):
    from engine import interop

    y = tmp_path / "lf.yaml"
    y.write_text("model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\nstage: sft\nfinetuning_type: lora\n"
                 "dataset: alpaca_en_demo\ntemplate: qwen\noutput_dir: saves/q\nreport_to: wandb\n"
                 "run_name: qwen-lora\n")
    job, notes = interop.import_file(y)
    res = job.resolved()
    assert res["tracking.wandb"] is True and res["tracking.wandb_run_name"] == "qwen-lora"
    assert not any("report_to wandb: not supported" in str(n) for n in notes)
    text, warnings = interop.export_job(job, "llamafactory")
    assert "report_to: wandb" in text and "run_name: qwen-lora" in text
    assert any("WANDB_PROJECT=finetui" in w for w in warnings)

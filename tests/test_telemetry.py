"""GPU telemetry: a fake ``nvidia-smi`` on PATH answers scripted samples; the real supervisor of a real local
run samples it into ``gpu`` records and warns once when the GPUs sit idle while training and once when a GPU's
memory is near its limit; the dashboard shows the panel and the warnings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import engine.launch as L
from engine.launch.rundir import read_records
from engine.telemetry import gpu_warnings, parse_sample, sample
from tests.fixtures_launch import ROOT  # noqa: F401 - (the launch fixtures' module)

# a shell nvidia-smi: the inventory query (the launch's GPU check) answers a fixed line; the telemetry query
# answers sample-<n>.csv for its n-th call, the last one once the script runs out
FAKE_SMI = """#!/bin/sh
case "$*" in
  *power.limit*) [ -n "$FAKE_SMI_NO_POWER" ] && { echo 'Field "power.limit" is not a valid field to query.'; exit 2; }
    ;;
esac
case "$*" in
  *utilization.gpu*)
    n=$(cat "$FAKE_SMI_DIR/count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$FAKE_SMI_DIR/count"
    f="$FAKE_SMI_DIR/sample-$n.csv"
    [ -f "$f" ] || f=$(ls "$FAKE_SMI_DIR"/sample-*.csv | sort -t- -k2 -n | tail -1)
    cat "$f" ;;
  *) printf '0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 9.0\\n1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 9.0\\n' ;;
esac
"""

IDLE = ("0, GPU-aaaa, NVIDIA H100 80GB HBM3, 5, 10240, 81559, 41, 90.5, 700.00\n"
        "1, GPU-bbbb, NVIDIA H100 80GB HBM3, 3, 10112, 81559, 40, 88.1, 700.00\n")
BUSY = ("0, GPU-aaaa, NVIDIA H100 80GB HBM3, 97, 60000, 81559, 66, 612.3, 700.00\n"
        "1, GPU-bbbb, NVIDIA H100 80GB HBM3, 99, 80100, 81559, 71, 655.0, [N/A]\n")


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    d = tmp_path / "smi"
    (d / "bin").mkdir(parents=True)
    smi = d / "bin" / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{d / 'bin'}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_SMI_DIR", str(d))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def script(*samples: str) -> Path:
        for i, s in enumerate(samples, 1):
            (d / f"sample-{i}.csv").write_text(s)
        return d

    return script


def test_parse_with_unsupported_fields_and_visible_devices():
    rows = parse_sample(BUSY)
    assert rows[1] == {"index": 1, "name": "NVIDIA H100 80GB HBM3", "util": 99.0, "mem_used": 80100.0,
                       "mem_total": 81559.0, "temp": 71.0, "power": 655.0, "power_limit": None}
    assert [r["index"] for r in parse_sample(BUSY, "1")] == [1]
    assert [r["index"] for r in parse_sample(BUSY, "GPU-bbbb,0")] == [1, 0]
    assert parse_sample(BUSY, "") == [] and parse_sample("garbage\n") == []


def test_sample_reads_the_scripted_nvidia_smi(fake_smi):
    fake_smi(IDLE, BUSY)
    assert [g["util"] for g in sample()] == [5.0, 3.0]
    assert [g["util"] for g in sample()] == [97.0, 99.0]
    assert [g["util"] for g in sample()] == [97.0, 99.0]  # the script's last sample from then on


def test_a_driver_without_the_power_fields(fake_smi, monkeypatch):
    d = fake_smi(BUSY)
    monkeypatch.setenv("FAKE_SMI_NO_POWER", "1")
    (d / "sample-1.csv").write_text("".join(",".join(ln.split(",")[:7]) + "\n" for ln in BUSY.splitlines()))
    g = sample()
    assert [x["util"] for x in g] == [97.0, 99.0] and g[0]["power"] is None and g[0]["mem_used"] == 60000.0


def test_attach_prints_a_gpu_record_as_one_line():
    from tui.commands.launch import format_event

    line = format_event({"t": 0, "kind": "gpu", "step": 7, "gpus": parse_sample(BUSY)})
    assert line.endswith("gpu        step      7  GPU0 97% 58.6/79.6 GiB 66°C 612 W · "
                         "GPU1 99% 78.2/79.6 GiB 71°C 655 W")


def test_warnings():
    idle, busy = parse_sample(IDLE), parse_sample(BUSY)
    assert gpu_warnings([idle, idle], True) == {}  # not yet three samples
    w = gpu_warnings([idle, idle, idle], True)
    assert list(w) == ["idle"] and "4% mean utilization" in w["idle"] and "data-loading" in w["idle"]
    assert gpu_warnings([idle, idle, idle], False) == {}  # loading the model, saving: idle is expected
    w = gpu_warnings([busy], True)
    assert list(w) == ["mem1"] and "GPU 1 memory near its limit: 78.2 of 79.6 GiB (98%)" in w["mem1"]


def _wait(pred, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_supervisor_samples_a_local_run(fake_smi, fake_worker, launch_job, monkeypatch):
    fake_smi(IDLE, IDLE, IDLE, IDLE, BUSY)
    monkeypatch.setenv("FINETUI_GPU_SAMPLE_S", "0.25")
    fake_worker(30, 0.15)
    ref = L.start_run(launch_job())
    recs = _wait(lambda: (lambda r: r if any(x["kind"] == "end" for x in r) else None)(
        read_records(ref.run_dir / "events.jsonl")))
    gpu = [r for r in recs if r["kind"] == "gpu"]
    assert len(gpu) >= 6, [r["kind"] for r in recs]
    assert [g["util"] for g in gpu[0]["gpus"]] == [5.0, 3.0]
    assert gpu[0]["gpus"][0]["mem_total"] == 81559.0 and gpu[0]["gpus"][0]["power_limit"] == 700.0
    assert [g["util"] for g in gpu[-1]["gpus"]] == [97.0, 99.0]
    steps = [r["step"] for r in gpu]
    assert steps == sorted(steps) and steps[-1] > 0
    warns = [r["text"] for r in recs if r["kind"] == "status" and r.get("by") == "telemetry"]
    assert len(warns) == 2, warns  # each said once, however many samples repeat it
    assert warns[0].startswith("GPUs idle while training") and warns[1].startswith("GPU 1 memory near its limit")
    # the sampler is the supervisor's: it stops with the run
    n = len(gpu)
    time.sleep(1.0)
    assert len([r for r in read_records(ref.run_dir / "events.jsonl") if r["kind"] == "gpu"]) == n


def test_nvidia_smi_that_does_not_answer_gives_no_gpu_records(fake_worker, launch_job, monkeypatch, tmp_path):
    # (a CPU machine has no nvidia-smi at all; one that fails, as a broken driver's does, says nothing either)
    b = tmp_path / "broken-smi"
    b.mkdir()
    (b / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the "
                                  "NVIDIA driver.'\nexit 9\n")
    (b / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{b}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FINETUI_GPU_SAMPLE_S", "0.1")
    fake_worker(8, 0.05)
    ref = L.start_run(launch_job())
    recs = _wait(lambda: (lambda r: r if any(x["kind"] == "end" for x in r) else None)(
        read_records(ref.run_dir / "events.jsonl")))
    assert recs[-1]["outcome"] == "completed" and not [r for r in recs if r["kind"] == "gpu"]


def test_the_real_nvidia_smi():
    import shutil

    if not shutil.which("nvidia-smi"):
        pytest.skip("needs a CUDA GPU (nvidia-smi): the real query fields are checked where one is present")
    gpus = sample()
    assert gpus, "nvidia-smi answered no GPU"
    for g in gpus:
        assert g["util"] is not None and 0 <= g["util"] <= 100
        assert g["mem_total"] and 0 <= g["mem_used"] <= g["mem_total"] and g["temp"] is not None


async def test_dashboard_gpu_panel_and_warnings(tmp_path):
    from rich.console import Console

    from tests.fake_run import fake_records, harness_app, wait_for
    from tui.screens.monitor import MonitorScreen

    run = tmp_path / "runs" / "ft_gpus"
    run.mkdir(parents=True)
    recs = list(fake_records(steps=20, end=False))
    t = recs[-1]["t"]
    for i, s in enumerate((IDLE, IDLE, IDLE)):
        recs.append({"t": t + i, "kind": "gpu", "step": 20, "gpus": parse_sample(s)})
    (run / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "launch.json").write_text(json.dumps({"host": "local", "command": ["x"]}))
    app = harness_app(lambda: MonitorScreen(str(run), clock=lambda: t + 5))
    async with app.run_test(size=(120, 40)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.state.gpu_version == 3)
        await pilot.pause(0.3)
        panel = scr.query_one("#mon-gpus")
        assert panel.display
        con = Console(width=118, record=True, color_system=None)
        con.print(panel.content)
        text = con.export_text()
        assert "GPU0" in text and "GPU1" in text and "10.0/79.6 GiB" in text and "41°C" in text
        assert "90/700 W" in text and "GPUs idle while training" in text


@pytest.mark.slow
def test_supervisor_samples_an_ssh_run(ssh_env, fake_smi, fake_worker, launch_job, tmp_path, monkeypatch):
    """The remote node's own supervisor samples its nvidia-smi; the gpu records reach the local mirror."""
    from tests.fixtures_launch import PYTHON

    fake_smi(IDLE, BUSY)
    monkeypatch.setenv("FINETUI_GPU_SAMPLE_S", "0.25")
    # the remote side gets the fake nvidia-smi's PATH and script (forwarded like any named variable)
    monkeypatch.setenv("FINETUI_REMOTE_ENV", "FINETUI_CACHE_DIR,FINETUI_STATE_DIR,PATH,FAKE_SMI_DIR,"
                                             "FINETUI_GPU_SAMPLE_S")
    fake_worker(16, 0.15)
    node = ssh_env.nodes[0]
    job = launch_job(**{"launch.host": node.target, "launch.remote_python": PYTHON,
                        "launch.remote_workdir": str(tmp_path / "remote")})
    ref = L.start_run(job)
    src = L.event_source(ref)
    got: list = []
    _wait(lambda: got.extend(src.read()) or src.done, 90)
    gpu = [r for r in got if r["kind"] == "gpu"]
    assert gpu and [g["util"] for g in gpu[0]["gpus"]] == [5.0, 3.0]
    assert [g["util"] for g in gpu[-1]["gpus"]] == [97.0, 99.0]
    assert any(r.get("by") == "telemetry" and "GPU 1 memory near its limit" in r.get("text", "") for r in got)

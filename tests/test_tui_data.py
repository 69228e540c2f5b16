"""The Data step's check: the command carries the S3 connection, typed keys go through the
environment only, and the real ``finetui data check --json`` report renders (moto S3 on loopback)."""

from __future__ import annotations

import json

from rich.console import Console

from engine.schema import JobConfig
from tui.app import _data_check, data_check_command
from tui.screens.data import render_report

ROWS = [{"instruction": f"say {i}", "input": "", "output": str(i)} for i in range(6)] + [{"instruction": "x"}]


def _s3_job(url: str) -> JobConfig:
    job = JobConfig()
    job.values.update({"model.name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "data.format": "alpaca",
                       "data.train_path": "s3://finetui-data/tui/train.jsonl", "data.s3_endpoint_url": url,
                       "data.s3_region": "us-east-1", "data.s3_access_key_env": "FT_TUI_AK",
                       "data.s3_secret_key_env": "FT_TUI_SK", "data.allow_percentage_invalid_samples": 20.0})
    return job


def _text(renderable) -> str:
    c = Console(width=100, record=True, color_system=None)
    c.print(renderable)
    return c.export_text()


def test_command_carries_the_s3_connection_never_the_keys():
    job = _s3_job("http://127.0.0.1:9")
    job.secrets = {"FT_TUI_AK": "AKIA-TYPED", "FT_TUI_SK": "typed-secret"}
    cmd = data_check_command(job)
    flags = dict(zip(cmd, cmd[1:]))
    assert flags["--endpoint-url"] == "http://127.0.0.1:9"
    assert flags["--region"] == "us-east-1"
    assert flags["--access-key-env"] == "FT_TUI_AK" and flags["--secret-key-env"] == "FT_TUI_SK"
    assert flags["--allow-invalid"] == "20.0" and flags["--format"] == "alpaca" and "--json" in cmd
    assert "--tokenizer" not in cmd  # a hub id: no download from the interface
    assert not any("typed" in a or "AKIA" in a for a in cmd)


def test_real_check_of_s3_data_with_typed_keys(moto_s3, monkeypatch):
    monkeypatch.delenv("FT_TUI_AK", raising=False)
    monkeypatch.delenv("FT_TUI_SK", raising=False)
    body = "\n".join(json.dumps(r) for r in ROWS) + "\n"
    moto_s3["client"].put_object(Bucket=moto_s3["bucket"], Key="tui/train.jsonl", Body=body.encode())
    job = _s3_job(moto_s3["url"])
    job.secrets = {"FT_TUI_AK": moto_s3["access_key"], "FT_TUI_SK": moto_s3["secret_key"]}  # typed, masked
    rep = _data_check(job)
    assert rep["rows"]["total"] == 7 and rep["rows"]["invalid"] == 1 and rep["ok"] is True
    text = _text(render_report(rep))
    assert "✓ the data is valid" in text
    assert "train.jsonl:7" in text and "Invalid rows (1)" in text
    assert "user │ say 0" in text and "assistant │ 0" in text
    # wrong keys: one clear line, no traceback
    job.secrets = {"FT_TUI_AK": moto_s3["access_key"], "FT_TUI_SK": "wrong"}
    try:
        rep = _data_check(job)
        text = _text(render_report(rep))
        assert rep["ok"] is False and "Traceback" not in text
    except RuntimeError as e:
        assert "Traceback" not in str(e) and str(e)


def test_the_check_says_its_progress_to_the_interface(tmp_path):
    """`finetui data check --progress lines` (what the data step runs) prints progress lines on stderr — rows,
    bytes read, bytes in all, seconds — that `_data_check` hands on, the last at the end of the file; a wrong
    --progress is one line and exit code 2."""
    import subprocess
    import sys

    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps({"instruction": f"say {i}", "output": str(i)}) + "\n" for i in range(5000)))
    job = JobConfig()
    job.values.update({"data.train_path": str(p), "data.format": "alpaca"})
    seen = []
    rep = _data_check(job, progress=seen.append)
    assert rep["rows"]["valid"] == 5000 and seen
    assert seen[-1]["rows"] == 5000 and seen[-1]["bytes"] == seen[-1]["total"] == p.stat().st_size
    assert all(s["seconds"] >= 0 for s in seen)
    r = subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", str(p), "--progress", "loud"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "--progress: `loud` is not one of auto, lines, none"


async def test_the_data_step_shows_the_check_going_and_stops_it(make_app, tmp_path, monkeypatch):
    """While a check runs the data step shows a bar by the bytes read, rows, rows/s and the time left, and a Stop
    that interrupts the check's process (as Ctrl-C the CLI's): "Check stopped.", the step as before."""
    import sys

    from textual.widgets import Button, ProgressBar, Static

    import tui.app as A
    from tests.fake_run import assert_gone, wait_for

    pid_file = tmp_path / "pid"
    script = tmp_path / "slow_check.py"
    script.write_text(f"""
import json, os, sys, time
for i in (1, 2, 3):
    sys.stderr.write("finetui-progress " + json.dumps({{"rows": i * 1000, "bytes": i * 10, "total": 100,
                                                        "seconds": i * 0.5}}) + "\\n")
    sys.stderr.flush()
with open({str(pid_file)!r}, "a") as f:
    f.write(str(os.getpid()) + "\\n")
time.sleep(120)
""")
    monkeypatch.setattr(A, "data_check_command", lambda job: [sys.executable, str(script)])
    app = make_app()
    app.services.data_check = A._data_check
    async with app.run_test(size=(100, 40)) as pilot:
        app.goto("data")
        await pilot.pause()
        app.screen.query_one("#data-check").scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click("#data-check")
        status = app.query_one("#data-check-status", Static)
        await wait_for(pilot, lambda: "3,000 rows" in str(status.render()) and pid_file.exists()
                       and pid_file.read_text().endswith("\n"))
        assert str(status.render()) == "3,000 rows · 2,000 rows/s · about 4 s left"
        bar = app.query_one("#data-check-bar", ProgressBar)
        assert bar.display and bar.total == 100 and bar.progress == 30
        assert app.query_one("#data-check", Button).disabled
        # a check started again (the data changed) stops the one running: its process ends, its end is not shown
        app.screen.query_one("DataPane").run_check()
        await wait_for(pilot, lambda: len(pid_file.read_text().split()) == 2)
        first, second = (int(x) for x in pid_file.read_text().split())
        assert_gone(first, "the replaced check's process")
        await pilot.pause(0.3)
        assert app.query_one("#data-check", Button).disabled and bar.display
        await pilot.click("#data-check-stop")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert str(status.render()) == "Check stopped."
        assert not bar.display and not app.query_one("#data-check-stop").display
        assert not app.query_one("#data-check", Button).disabled
    assert_gone(second, "the stopped check's process")

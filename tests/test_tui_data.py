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

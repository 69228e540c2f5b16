"""Credentials in a URI are kept in the run's environment only; a LLaMA-Factory import that trusts remote code
says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import interop, presets
from engine.redact import has_credentials, redact, strip, uri_credentials
from tests.fixtures_launch import ROOT

SECRET = "s3cr3t-Pa55"
URI = f"https://alice:{SECRET}@mlflow.example.org:5000/base"
CLEAN = "https://mlflow.example.org:5000/base"


def _job(**values):
    job = presets.load(ROOT / "presets" / "demo.toml")
    job.values["tracking.mlflow_tracking_uri"] = URI
    job.values.update({k.replace("__", "."): v for k, v in values.items()})
    return job


def cli(*args):
    from tui.cli import app

    return CliRunner().invoke(app, list(args))


def test_redaction_helpers():
    assert uri_credentials(URI) == (CLEAN, {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": SECRET})
    assert uri_credentials("https://a%40b:p%3Aw@h/x") == ("https://h/x", {"MLFLOW_TRACKING_USERNAME": "a@b",
                                                                         "MLFLOW_TRACKING_PASSWORD": "p:w"})
    assert uri_credentials("https://user@h/x") == ("https://user@h/x", {})  # a user name alone is no secret
    assert uri_credentials("sqlite:///mlflow.db") == ("sqlite:///mlflow.db", {})
    assert strip(URI) == CLEAN and redact(f"at {URI} and http://x:y@[::1]:9/") == \
        "at https://***@mlflow.example.org:5000/base and http://***@[::1]:9/"
    assert not has_credentials(42) and strip(42) == 42


def test_preset_save_show_and_validate_never_hold_the_password(tmp_path):
    p = presets.save(_job(), tmp_path / "p.toml")
    text = p.read_text()
    assert SECRET not in text and f'mlflow_tracking_uri = "{CLEAN}"' in text
    job = _job()
    r = cli("show", str(presets.save(job, tmp_path / "q.toml")))
    assert SECRET not in r.output
    # a preset written by hand with the password: validate and show name neither
    hand = tmp_path / "hand.toml"
    hand.write_text((ROOT / "presets" / "demo.toml").read_text() + f'\n[tracking]\nmlflow_tracking_uri = "{URI}"\n')
    for cmd in ("validate", "show"):
        r = cli(cmd, str(hand))
        assert SECRET not in r.output, (cmd, r.output)
    assert "MLFLOW_TRACKING_PASSWORD" in cli("validate", str(hand)).output


@pytest.mark.parametrize("to", ["llamafactory", "nova", "fpt_studio", "oci", "watsonx"])
def test_exports_and_their_warnings_never_hold_the_password(tmp_path, to):
    from engine.schema import JobConfig

    if to == "nova":
        job = JobConfig("nova_lora", {"data.train_path": "s3://b/train.jsonl", "tracking.mlflow_tracking_uri": URI})
    elif to == "oci":
        job = JobConfig("oci_llama_lora", {"data.train_path": str(tmp_path / "t.jsonl"),
                                           "tracking.mlflow_tracking_uri": URI})
    else:
        job = _job()
    out = tmp_path / f"x.{'yaml' if to in ('llamafactory', 'nova') else 'json'}"
    written, warnings = interop.write_export(job, to, out)
    assert any("tracking.mlflow_tracking_uri" in w for w in warnings)
    assert all(SECRET not in w for w in warnings)
    for f in written:
        assert SECRET not in f.read_text()


def test_local_run_keeps_the_credentials_in_its_environment_only(tmp_path, fake_worker, launch_job):
    import engine.launch as L
    from tests.test_launch_local import wait_end

    fake_worker(2, 0.01, 1, "--env-report", "MLFLOW_TRACKING_PASSWORD")
    job = launch_job(**{"tracking.mlflow_tracking_uri": URI})
    ref = L.start_run(job)
    assert wait_end(ref, 60)["outcome"] == "completed"
    cfg = presets.load(ref.run_dir / "config.toml").resolved()
    assert cfg["tracking.mlflow_tracking_uri"] == CLEAN
    rep = json.loads((ref.run_dir / "env_report.json").read_text())
    assert rep["set"] and rep["len"] == len(SECRET)
    for f in ref.run_dir.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f
    assert job.values["tracking.mlflow_tracking_uri"] == URI  # the caller's job is left as it was


@pytest.mark.parametrize("value,warned", [("true", True), ("false", False), (None, False)])
def test_llamafactory_import_with_trust_remote_code_warns(tmp_path, value, warned):
    y = tmp_path / "lf.yaml"
    y.write_text("model_name_or_path: some-org/custom-arch\nstage: sft\nfinetuning_type: lora\n"
                 + (f"trust_remote_code: {value}\n" if value is not None else ""))
    job, warnings = interop.import_file(y)
    hits = [w for w in warnings if w.startswith("trust_remote_code = true")]
    assert bool(hits) is warned and job.resolved()["model.trust_remote_code"] is warned
    if warned:
        assert "some-org/custom-arch" in hits[0] and "runs on the training machine" in hits[0]
        r = cli("import", str(y))
        assert "warning: trust_remote_code = true" in r.output

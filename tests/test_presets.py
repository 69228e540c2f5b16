"""TOML presets and the validate / show commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import presets
from engine.schema import JobConfig

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=120)


def test_round_trip_exact(tmp_path):
    text = (ROOT / "presets" / "demo.toml").read_text()
    job = presets.loads(text)
    assert presets.dumps(job) == text
    p = presets.save(job, tmp_path / "a.toml")
    assert presets.load(p).values == job.values


def test_round_trip_every_type(tmp_path):
    job = JobConfig("native", {"general.learning_rate": 1e-4, "general.batch_size": 3, "runtime.gradient_checkpointing": False,
                               "adapter.target_modules": ["q_proj", "v_proj"], "trainer.zero_stage": 3,
                               "trainer.distributed_backend": "deepspeed", "data.train_path": "d.jsonl",
                               "launch.start_at": "2026-12-01 02:00"}, name="all types")
    p = presets.save(job, tmp_path / "t.toml")
    back = presets.load(p)
    assert back.values == job.values and back.name == job.name and back.profile == job.profile
    assert presets.dumps(back) == p.read_text()


def test_unknown_key_suggests():
    with pytest.raises(presets.PresetError) as e:
        presets.loads('[general]\nlearnig_rate = 0.1\n', "x.toml")
    assert str(e.value) == "general.learnig_rate: unknown key in x.toml; did you mean `general.learning_rate`?"
    with pytest.raises(presets.PresetError) as e:
        presets.loads('learning_rate = 0.1\n', "x.toml")
    assert "did you mean `general.learning_rate`" in str(e.value)
    with pytest.raises(presets.PresetError) as e:
        presets.loads('[genral]\nbatch_size = 1\n', "x.toml")
    assert "did you mean `general`" in str(e.value)


def test_secret_is_refused_and_never_written(tmp_path):
    with pytest.raises(presets.PresetError) as e:
        presets.loads('[data]\ns3_secret_key = "abc"\n', "x.toml")
    assert "secrets are never stored in a preset" in str(e.value)
    job = JobConfig("native", {"data.train_path": "s3://b/k", "data.s3_secret_key_env": "MY_SECRET"})
    job.secrets["data.s3_secret_key"] = "supersecret"
    text = presets.dumps(job, resolved=True)
    assert "supersecret" not in text and 's3_secret_key_env = "MY_SECRET"' in text


def test_bad_toml_is_one_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[general\nbatch_size = 1\n")
    r = cli("validate", str(p))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and str(p) in r.stderr and "not valid TOML" in r.stderr
    assert "Traceback" not in r.stderr


def test_save_is_atomic_and_keeps_old_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "keep.toml"
    p.write_text("old")
    job = JobConfig("native", {"data.train_path": "x"})

    def boom(*a, **k):
        raise RuntimeError("disk full")

    real_dumps = presets.dumps
    monkeypatch.setattr(presets, "dumps", boom)
    with pytest.raises(RuntimeError):
        presets.save(job, p)
    assert p.read_text() == "old"
    monkeypatch.setattr(presets, "dumps", real_dumps)
    # a crash after the new text is written but before it replaces the old file (a direct write would have
    # destroyed "old" by then, and would not fail here at all)

    seen = []

    def crash(src, dst):
        seen.append((Path(src).parent, Path(src).read_text(), Path(dst)))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        presets.save(job, p)
    assert p.read_text() == "old" and seen and seen[0][0] == tmp_path and seen[0][2] == p
    assert 'train_path = "x"' in seen[0][1]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.toml"]  # no temporary file left


def test_validate_cli_exit_codes(tmp_path):
    r = cli("validate", "presets/demo.toml")
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('profile = "fpt_pipeline"\n[data]\ntrain_path = "x.jsonl"\n[general]\nlearning_rate = 0.5\n'
                   'batch_size = 0\n')
    r = cli("validate", str(bad))
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if not l.startswith("warning:")]
    assert "general.learning_rate: 0.5 is out of range in profile fpt_pipeline (allowed: 1e-05 ≤ x ≤ 0.001)" in lines
    assert any(l.startswith("general.batch_size: 0 is out of range") for l in lines)
    assert "Traceback" not in r.stderr
    r = cli("validate", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "no such preset file" in r.stderr
    # `finetui FILE.toml` opens FILE in the TUI; one that does not load gets the same one line
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[general]\nlearning_rat = 0.1\n")
    r = cli(str(unknown))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "general.learning_rat: unknown key" in r.stderr and "did you mean `general.learning_rate`" in r.stderr
    r = cli(str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and r.stderr.strip().endswith("missing.toml: no such preset file")


def test_attach_to_a_missing_run_is_one_line_exit_2(tmp_path):
    (tmp_path / "runs" / "ft_a").mkdir(parents=True)
    (tmp_path / "runs" / "ft_a" / "events.jsonl").write_text("")
    (tmp_path / "runs" / "ft_b").mkdir()
    (tmp_path / "runs" / "ft_b" / "events.jsonl").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "FINETUI_RUNS_DIR"}
    for argv, want in ((["--attach", "nope"], "--attach: no run 'nope' in runs"),
                       (["--attach=ft_", "--runs"], "--attach: 'ft_' names 2 runs in runs: ft_a, ft_b")):
        r = subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, cwd=tmp_path,
                           timeout=120, env={**env, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, r
        assert r.stderr.startswith(want) and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_show_prints_resolved_toml():
    r = cli("show", "presets/demo.toml")
    assert r.returncode == 0
    job = presets.loads(r.stdout)
    assert job.values["runtime.optimizer"] == "adamw"  # a default made explicit
    assert job.values["general.learning_rate"] == 0.003


def test_every_shipped_preset_validates():
    files = presets.shipped()
    assert files, "no shipped presets"
    for f in files:
        job = presets.load(f)
        assert job.problems() == [], (f.name, [str(p) for p in job.problems()])


def test_ui_does_not_import_torch():
    code = ("import sys, tui.app, tui.cli, engine.schema, engine.presets, engine.events;"
            "bad=[m for m in ('torch','transformers','deepspeed','trl','peft') if m in sys.modules];"
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_engine_config_does_not_import_textual():
    code = "import sys, engine.schema, engine.presets, engine.events; assert 'textual' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_data_paths_are_relative_to_the_preset_each_of_several(tmp_path, monkeypatch):
    d = tmp_path / "job"
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_text("{}\n")
    (d / "sub" / "b.jsonl").write_text("{}\n")
    p = d / "x.toml"
    p.write_text('[data]\ntrain_path = "a.jsonl, sub/b.jsonl#sharegpt,finetui:samples/alpaca_demo.jsonl"\n'
                 'validation_path = "sub/b.jsonl"\n')
    monkeypatch.chdir(tmp_path)
    job = presets.load(p)
    assert job.values["data.train_path"] == \
        f"{d / 'a.jsonl'},{d / 'sub' / 'b.jsonl'}#sharegpt,finetui:samples/alpaca_demo.jsonl"
    assert job.values["data.validation_path"] == str(d / "sub" / "b.jsonl")


def test_launch_sends_each_local_data_file_to_a_remote_host(tmp_path, monkeypatch):
    """A run on another host gets a copy of every local file of a data path; samples and S3 stay names."""
    import io
    import tarfile

    from engine.launch import _absolutize_data
    from engine.launch.remote import _data_files, _send_tar

    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "b.jsonl").write_text("{}\n{}\n")
    monkeypatch.chdir(tmp_path)
    job = JobConfig(values={"data.train_path": "a.jsonl,finetui:samples/alpaca_demo.jsonl, b.jsonl#sharegpt",
                            "data.validation_path": "b.jsonl"})
    _absolutize_data(job, job.resolved())
    assert job.values["data.train_path"] == \
        f"{tmp_path / 'a.jsonl'},finetui:samples/alpaca_demo.jsonl,{tmp_path / 'b.jsonl'}#sharegpt"
    files, rewrite = _data_files(job.resolved())
    buf = io.BytesIO()
    _send_tar(buf, files, lambda n: None)
    tar = buf.getvalue()
    assert rewrite == {"data.train_path": "data/0_0_a.jsonl,finetui:samples/alpaca_demo.jsonl,data/0_2_b.jsonl#sharegpt",
                       "data.validation_path": "data/1_b.jsonl"}
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert {m.name: tf.extractfile(m).read() for m in tf.getmembers()} == {
            "data/0_0_a.jsonl": b"{}\n", "data/0_2_b.jsonl": b"{}\n{}\n", "data/1_b.jsonl": b"{}\n{}\n"}
    job.values["data.train_path"] += f",{tmp_path / 'gone.jsonl'}"
    from engine.launch.rundir import LaunchError

    with pytest.raises(LaunchError, match=rf"^data.train_path: {tmp_path}/gone.jsonl does not exist on this machine$"):
        _data_files(job.resolved())


@pytest.mark.parametrize("profile", ["native", "fpt_studio", "oci_cohere_tfew", "watsonx_qlora", "nova_lora"])
def test_a_resolved_dump_loads_as_a_valid_preset(profile, tmp_path):
    """A run's config.toml (a resolved dump) opens as a job — `c` on the runs screen, `finetui resume` — so it
    holds no default of a field that does not apply (zero_stage without DeepSpeed, simpo_gamma without SimPO)."""
    from engine.schema.profiles import get

    prof = get(profile)
    job = JobConfig(profile, {"data.train_path": "finetui:samples/alpaca_demo.jsonl"})
    if prof.models:
        job.values["model.name_or_path"] = prof.models[0]
    assert job.problems() == [], job.problems()
    back = presets.loads(presets.dumps(job, resolved=True))
    assert [p for p in back.problems() if p.severity == "error"] == []
    assert back.resolved() == job.resolved()


def test_a_run_config_written_before_lists_inapplicable_defaults_and_still_opens(tmp_path):
    old = tmp_path / "config.toml"
    old.write_text('profile = "native"\n[data]\ntrain_path = "finetui:samples/alpaca_demo.jsonl"\n'
                   '[trainer]\ndistributed_backend = "ddp"\nzero_stage = 2\n[preference]\nsimpo_gamma = 0.5\n')
    assert presets.load(old).problems()  # as a preset it would not validate
    job = presets.load_run_config(old)
    assert job.problems() == [] and "trainer.zero_stage" not in job.values

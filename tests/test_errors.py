"""Every bad input ends in one line and exit 2 (issue 19 §3), and bad data is refused before a run exists
(issue 28 item 3).  Each test names the category it covers; each fails without its fix (a traceback, a hang,
exit 0, or a run directory created)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.fixtures_errors import assert_user_error, run_cli

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "presets" / "demo.toml"
ROW = {"instruction": "Say hi", "input": "", "output": "hi"}


def _preset(tmp_path: Path, name: str = "p.toml", **repl: str) -> Path:
    text = DEMO.read_text(encoding="utf-8")
    for old, new in repl.items():
        old = old.replace("__", " = ")
        assert old in text, old
        text = text.replace(old, new)
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _with_data(tmp_path: Path, data: Path, name: str = "p.toml", extra: str = "") -> Path:
    text = DEMO.read_text(encoding="utf-8").replace('"finetui:samples/alpaca_demo.jsonl"', json.dumps(str(data)))
    text = text.replace("[launch]\n", f"[launch]\n{extra}")
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# ------------------------------------------------------------------ one error type, one handler

def test_every_user_facing_error_is_a_finetui_error():
    from engine.schema import ConfigError
    from engine.data.errors import DataError, RowError
    from engine.errors import FinetuiError
    from engine.hub import NotCachedOffline
    from engine.interop import InteropError
    from engine.launch import LaunchError, SSHError
    from engine.modelinfo import ModelInfoError
    from engine.presets import PresetError
    from engine.train.checkpoints import ResumeError
    from engine.train.generate import GenerateError

    for cls in (ConfigError, DataError, RowError, NotCachedOffline, InteropError, LaunchError, SSHError,
                ModelInfoError, PresetError, ResumeError, GenerateError):
        assert issubclass(cls, FinetuiError), cls
    e = FinetuiError("not valid JSON\n(more)", path="a.jsonl", line=3)
    assert str(e) == "a.jsonl:3: not valid JSON (more)" and e.lines() == [str(e)]
    assert str(FinetuiError("unreachable", host="gpu1")) == "gpu1: unreachable"
    assert str(FinetuiError("x: bad", field="x")) == "x: bad"  # not prefixed twice


def test_a_bug_is_one_line_with_a_crash_log_never_a_traceback(tmp_path, monkeypatch):
    import engine.presets

    def broken(path):  # noqa: ANN001
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(engine.presets, "load", broken)
    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    r = run_cli("validate", str(DEMO))
    assert r.code == 70 and len(r.lines) == 1, r.out
    assert "Traceback" not in r.out and r.out.startswith("internal error: RuntimeError: something nobody foresaw")
    logs = list((tmp_path / "cache").glob("crash-*.log"))
    assert len(logs) == 1 and logs[0].name in r.out
    assert "Traceback" in logs[0].read_text() and "something nobody foresaw" in logs[0].read_text()


def test_a_user_error_reaching_the_top_is_its_lines_and_exit_2(monkeypatch):
    import engine.presets
    from engine.launch import LaunchError

    def refuse(path):  # noqa: ANN001
        raise LaunchError("gpu1: host key not trusted")

    monkeypatch.setattr(engine.presets, "load", refuse)
    assert_user_error(run_cli("validate", str(DEMO)), "gpu1: host key not trusted")


async def test_tui_user_error_in_a_worker_is_a_notification_and_the_app_goes_on():
    from engine.data.errors import DataError
    from tui.app import FinetuiApp

    app = FinetuiApp()
    async with app.run_test() as pilot:
        def user_error() -> None:
            raise DataError("x.jsonl:3: not valid JSON")

        await pilot.pause()
        app.run_worker(user_error, thread=True)
        for _ in range(20):
            await pilot.pause(0.05)
        assert app.is_running and app.return_code is None
        assert any("x.jsonl:3: not valid JSON" in str(n.message) for n in app._notifications)


@pytest.mark.parametrize("exc, line", [(KeyError("nobody foresaw this"), "internal error: KeyError"),
                                       (ValueError("a.jsonl:2: bad"), "internal error: ValueError"),
                                       ("user", "x.toml: not valid TOML")])
async def test_tui_exception_in_a_handler_ends_with_one_line(tmp_path, monkeypatch, exc, line):
    import asyncio

    from engine.presets import PresetError
    from engine.schema import Problem
    from tui.app import FinetuiApp

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    if exc == "user":
        exc = PresetError([Problem("x.toml", "not valid TOML")])
    app = FinetuiApp()
    printed: list = []
    monkeypatch.setattr(app, "_print_error_renderables", lambda: printed.extend(app._exit_renderables))

    def fail() -> None:
        raise exc

    with pytest.raises(type(exc)):  # (Pilot re-raises it for the test)
        async with app.run_test():
            app.call_later(fail)
            await asyncio.sleep(1.0)
    assert app.return_code == 1
    assert len(printed) == 1 and str(printed[0]).startswith(line) and "Traceback" not in str(printed[0])
    assert bool(list((tmp_path / "cache").glob("crash-*.log"))) == line.startswith("internal error")


# ------------------------------------------------------------------ encodings, gzip

def test_latin1_data_names_the_file_and_line(tmp_path):
    p = tmp_path / "latin.jsonl"
    p.write_bytes(_jsonl([ROW]) + '{"instruction": "café", "input": "", "output": "x"}\n'.encode("latin-1"))
    r = run_cli("data", "check", str(p), "-f", "alpaca")
    assert_user_error(r, f"{p}:2", "not UTF-8")
    arr = tmp_path / "latin.json"
    arr.write_bytes(b'[\n{"instruction": "x", "input": "", "output": "y"},\n{"instruction": "caf\xe9"}]')
    assert_user_error(run_cli("data", "check", str(arr), "-f", "alpaca"), f"{arr}:3", "not UTF-8")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_data_is_named(tmp_path, encoding):
    p = tmp_path / "wide.jsonl"
    p.write_bytes(_jsonl([ROW] * 3).decode().encode(encoding))
    assert_user_error(run_cli("data", "check", str(p), "-f", "alpaca"), str(p), encoding.upper())
    q = tmp_path / "wide.json"
    q.write_bytes(json.dumps([ROW]).encode(encoding))
    assert_user_error(run_cli("data", "check", str(q), "-f", "alpaca"), encoding.upper())


def test_gzip_data_is_read_everywhere(tmp_path):
    from engine.data.loader import load_rows
    from engine.data.sources import count_examples

    gz = tmp_path / "train.jsonl.gz"
    gz.write_bytes(gzip.compress(_jsonl([dict(ROW, output=f"hi {i}") for i in range(7)])))
    r = run_cli("data", "check", str(gz), "-f", "alpaca", "--json")
    assert r.code == 0, r.out
    assert json.loads(r.out.splitlines()[0])["rows"]["valid"] == 7
    assert count_examples(str(gz)) == 7
    assert len(load_rows({"data.train_path": str(gz), "data.format": "alpaca", "trainer.stage": "sft"}).train) == 7
    arr = tmp_path / "more.json.gz"
    arr.write_bytes(gzip.compress(json.dumps([ROW, ROW]).encode()))
    assert count_examples(str(arr)) == 2
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.jsonl.gz").write_bytes(gz.read_bytes())
    assert count_examples(str(folder)) == 7
    assert run_cli("data", "check", str(folder), "-f", "alpaca").code == 0
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.jsonl.gz", gz.read_bytes())
    assert run_cli("data", "check", str(z), "-f", "alpaca").code == 0
    bad = tmp_path / "cut.jsonl.gz"
    bad.write_bytes(gz.read_bytes()[:-12])
    assert_user_error(run_cli("data", "check", str(bad), "-f", "alpaca"), str(bad), "gzip")
    assert count_examples(str(bad)) is None


# ------------------------------------------------------------------ nesting, huge numbers

def test_deep_nesting_everywhere_is_one_line(tmp_path):
    deep = "[" * 50000 + "]" * 50000
    (tmp_path / "d.jsonl").write_text(json.dumps(ROW) + "\n" + deep + "\n")
    r = run_cli("data", "check", str(tmp_path / "d.jsonl"), "-f", "alpaca")
    assert_user_error(r, "d.jsonl:2", "nested too deeply")
    (tmp_path / "d.json").write_text(deep)
    assert_user_error(run_cli("data", "check", str(tmp_path / "d.json"), "-f", "alpaca"), "nested too deeply")
    (tmp_path / "d.toml").write_text("[general]\nbatch_size = " + "[" * 5000 + "]" * 5000 + "\n")
    assert_user_error(run_cli("validate", str(tmp_path / "d.toml")), "d.toml", "nested too deeply")
    (tmp_path / "t.toml").write_text("a = " + "{b=" * 3000 + "1" + "}" * 3000 + "\n")
    assert_user_error(run_cli("show", str(tmp_path / "t.toml")), "nested too deeply")
    (tmp_path / "lf.yaml").write_text("stage: sft\nmodel_name_or_path: " + "[" * 5000 + "]" * 5000 + "\n")
    t0 = time.monotonic()
    assert_user_error(run_cli("import", str(tmp_path / "lf.yaml")), "nested")
    assert time.monotonic() - t0 < 5  # (PyYAML alone spends minutes on 5000 levels)
    # a quote inside a plain scalar (it's) opens no string: the brackets after it are still counted
    (tmp_path / "q.yaml").write_text("stage: sft\nnote: it's odd\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    t0 = time.monotonic()
    assert_user_error(run_cli("import", str(tmp_path / "q.yaml")), "nested")
    assert time.monotonic() - t0 < 5
    (tmp_path / "wx.json").write_text('{"num_epochs": ' + deep + "}")
    assert_user_error(run_cli("import", str(tmp_path / "wx.json"), "-f", "watsonx"), "nested")
    (tmp_path / "mid.yaml").write_text("stage: sft\nfinetuning_type: lora\nx: " + "[" * 40 + "]" * 40 + "\n")
    assert_user_error(run_cli("import", str(tmp_path / "mid.yaml")), "nested more than")


def test_integers_with_thousands_of_digits(tmp_path):
    big = "9" * 5000
    (tmp_path / "b.jsonl").write_text('{"instruction": "x", "input": "", "output": ' + big + "}\n")
    assert_user_error(run_cli("data", "check", str(tmp_path / "b.jsonl"), "-f", "alpaca"), "b.jsonl:1", "digits")
    p = _preset(tmp_path, **{"batch_size__8": f"batch_size = {big}"})
    for cmd in ("validate", "show", "estimate"):
        assert_user_error(run_cli(cmd, str(p)), "digits")
    (tmp_path / "wx.json").write_text('{"num_epochs": ' + big + ', "learning_rate": 0.1}')
    assert_user_error(run_cli("import", str(tmp_path / "wx.json"), "-f", "watsonx"), "digits")


@pytest.mark.parametrize("value", ["1e300", "inf", "nan", "1e309", "100000000000000000000000000"])
def test_non_integers_and_huge_values_where_an_integer_is_expected(tmp_path, value):
    p = _preset(tmp_path, **{"epochs__2": f"epochs = {value}"})
    for cmd in ("validate", "estimate"):
        r = run_cli(cmd, str(p))
        assert_user_error(r, "general.epochs")
        assert "digits" in r.out or "not an integer" in r.out


def test_values_beyond_what_a_trainer_can_use_are_refused_with_the_range(tmp_path):
    cases = [("batch_size__8", "batch_size = 100000000000000000000000000", "general.batch_size", "≤ 65536"),
             ("epochs__2", "epochs = 1000000", "general.epochs", "≤ 10000"),
             ("max_sequence_length__128", "max_sequence_length = 1000000000", "general.max_sequence_length",
              "≤ 16777216"),
             ("lora_rank__8", "lora_rank = 100000000", "adapter.lora_rank", "≤ 1048576"),
             ("procs_per_node__2", "procs_per_node = 2\nmaster_port = 70000", "launch.master_port", "≤ 65535")]
    for old, new, field, allowed in cases:
        r = run_cli("validate", str(_preset(tmp_path, **{old: new})))
        assert_user_error(r, field, allowed)
    seed = _preset(tmp_path, **{"lr_warmup_steps__2": "lr_warmup_steps = 2\nseed = 4294967296"})
    assert_user_error(run_cli("validate", str(seed)), "runtime.seed", "4294967295")


def test_data_check_options_are_checked_as_their_fields():
    s = "finetui:samples/alpaca_demo.jsonl"
    assert_user_error(run_cli("data", "check", s, "-f", "alpaca", "--max-length", "0"), "--max-length", "1 ≤ x")
    assert_user_error(run_cli("data", "check", s, "-f", "alpaca", "--allow-invalid", "nan"), "--allow-invalid")
    assert_user_error(run_cli("data", "check", s, "-f", "alpaca", "--allow-invalid", "inf"), "--allow-invalid")
    assert_user_error(run_cli("data", "check", "s3://b/k", "-f", "alpaca", "--access-key-env", "A=B"),
                      "--access-key-env", "not an environment variable name")
    assert_user_error(run_cli("estimate", str(DEMO), "--gpu-memory", "nan"), "--gpu-memory")
    assert_user_error(run_cli("estimate", str(DEMO), "--tokens-per-s", "inf"), "--tokens-per-s")


def test_environment_variable_names_and_host_names_are_validated(tmp_path):
    p = _preset(tmp_path, **{"[data]\n": '[data]\ns3_access_key_env = "MY=KEY"\n'})
    assert_user_error(run_cli("validate", str(p)), "data.s3_access_key_env", "MY=KEY")
    for host in ("gpu1;rm -rf ~", "-oProxyCommand=touch x", "gpu 1", "a\u0000b", "user@gpu1:70000", "h$(id)",
                 "x" * 300):
        p = _preset(tmp_path, **{"[launch]\n": f"[launch]\nhost = {json.dumps(host)}\n"})
        assert_user_error(run_cli("validate", str(p)), "launch.host")
    p = _preset(tmp_path, **{"[launch]\n": '[launch]\nhosts = ["gpu1", "gpu2|x"]\nnodes = 2\n'})
    assert_user_error(run_cli("validate", str(p)), "launch.hosts", "gpu2|x")
    for ok in ("gpu1", "me@gpu1:2222", "my_alias", "10.0.0.1", "[::1]:22", "me@[fe80::1]"):
        from engine.schema import host_problem

        assert host_problem(ok) is None, ok
    r = run_cli("train", str(DEMO), "--host", "gpu1;id", "--detach", "--runs-dir", str(tmp_path / "runs"))
    assert_user_error(r, "launch.host")
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ wrong types in imported configs

def test_wrong_types_in_imported_configs(tmp_path):
    (tmp_path / "dsd").mkdir()
    (tmp_path / "dsd" / "dataset_info.json").write_text('{"foo": 5}')
    lf = "stage: sft\ndo_train: true\nfinetuning_type: lora\nmodel_name_or_path: m\ndataset_dir: dsd\n"
    (tmp_path / "a.yaml").write_text(lf + "dataset: foo\n")
    assert_user_error(run_cli("import", str(tmp_path / "a.yaml")), "dataset_info.json: foo", "found a number")
    (tmp_path / "dsd" / "dataset_info.json").write_text('{"foo": {"file_name": [1]}}')
    assert_user_error(run_cli("import", str(tmp_path / "a.yaml")), "foo.file_name")
    (tmp_path / "dsd" / "dataset_info.json").write_text('[1, 2]')
    r = run_cli("import", str(tmp_path / "a.yaml"))
    assert r.code in (0, 2) and "Traceback" not in r.out and "expected a table of datasets" in r.out
    (tmp_path / "b.yaml").write_text(lf + "dataset: " + ",".join(f"d{i}" for i in range(5000)) + "\n")
    assert_user_error(run_cli("import", str(tmp_path / "b.yaml")), "5000 datasets")
    (tmp_path / "c.yaml").write_text(lf + "dataset: x\nnum_train_epochs: .nan\n")
    assert_user_error(run_cli("import", str(tmp_path / "c.yaml")), "num_train_epochs")
    (tmp_path / "d.yaml").write_text(lf + "dataset: x\nper_device_train_batch_size: [1, 2]\nlearning_rate: {a: 1}\n")
    assert_user_error(run_cli("import", str(tmp_path / "d.yaml")))
    nova = "run:\n  name: x\n  model_type: amazon.nova-micro-v1:0:128k\ntraining_config:\n  model: 3\n"
    (tmp_path / "n.yaml").write_text(nova)
    assert_user_error(run_cli("import", str(tmp_path / "n.yaml")), "training_config.model", "found a number")
    (tmp_path / "n2.yaml").write_text(nova.replace("model: 3", "model:\n    optim: [1, 2]"))
    assert_user_error(run_cli("import", str(tmp_path / "n2.yaml")), "training_config.model.optim", "a list")
    for fmt, body in (("fpt_studio", {"batch_size": [1], "epochs": {"a": 1}, "learning_rate": "x"}),
                      ("oci", {"hyperparameters": {"trainingConfigType": 5, "totalTrainingEpochs": 1e308}}),
                      ("watsonx", {"num_epochs": None, "learning_rate": [0.1], "accumulate_steps": "x"})):
        (tmp_path / f"{fmt}.json").write_text(json.dumps(body))
        assert_user_error(run_cli("import", str(tmp_path / f"{fmt}.json"), "-f", fmt))


def test_a_path_part_longer_than_the_file_system_allows(tmp_path):
    long = str(tmp_path / ("a" * 300 + ".jsonl"))
    assert_user_error(run_cli("data", "check", long, "-f", "alpaca"), "longer than the file system allows")
    assert_user_error(run_cli("validate", str(_with_data(tmp_path, Path(long)))), "data.train_path",
                      "longer than the file system allows")
    assert_user_error(run_cli("validate", str(tmp_path / ("p" * 300 + ".toml"))), "longer than the file system")
    assert_user_error(run_cli("import", str(tmp_path / ("p" * 300 + ".yaml"))), "longer than the file system")


# ------------------------------------------------------------------ special files

@pytest.mark.timeout(60)
def test_fifo_and_devices_are_refused_at_once(tmp_path):
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    assert_user_error(run_cli("data", "check", str(fifo), "-f", "alpaca"), "named pipe")
    assert_user_error(run_cli("data", "check", "/dev/zero", "-f", "alpaca"), "character device")
    assert_user_error(run_cli("validate", str(_with_data(tmp_path, fifo))), "named pipe")
    pfifo = tmp_path / "preset.toml"
    os.mkfifo(pfifo)
    assert_user_error(run_cli("validate", str(pfifo)), "named pipe")
    yfifo = tmp_path / "lf.yaml"
    os.mkfifo(yfifo)
    assert_user_error(run_cli("import", str(yfifo)), "named pipe")
    from engine.data.sources import count_examples

    assert count_examples(str(fifo)) is None
    assert time.monotonic() - t0 < 20


# ------------------------------------------------------------------ runs: attach, damaged, launch errors

def _old(d: Path) -> None:
    for f in d.iterdir():
        os.utime(f, (time.time() - 120, time.time() - 120))


@pytest.mark.timeout(60)
def test_attach_on_a_run_with_no_process_and_no_end_returns(tmp_path):
    runs = tmp_path / "runs"
    for name, launch in (("nolaunch", None), ("nopgid", {"token": "x"}), ("damaged", "{not json")):
        d = runs / name
        d.mkdir(parents=True)
        (d / "events.jsonl").write_text('{"t": 1, "kind": "start", "step": 0}\n')
        if launch is not None:
            (d / "launch.json").write_text(launch if isinstance(launch, str) else json.dumps(launch))
        _old(d)
        t0 = time.monotonic()
        r = run_cli("attach", name, "--runs-dir", str(runs))
        assert r.code == 1 and "Traceback" not in r.out, r.out
        assert time.monotonic() - t0 < 15


def test_a_damaged_run_directory_is_listed_as_damaged(tmp_path):
    runs = tmp_path / "runs"
    files = {"good": {"events.jsonl": '{"t": 1700000000, "kind": "start", "step": 0}\n'
                                      '{"t": 1700000100, "kind": "end", "step": 5, "outcome": "completed"}\n'},
             "notjson": {"launch.json": "{cut", "events.jsonl": '{"t": 1, "kind": "start", "step": 0}\n'},
             "wrongtypes": {"launch.json": '{"pid": "x", "pgid": [1]}'},
             "badremote": {"remote.json": '{"host": 5, "hosts": "x"}'},
             "badevents": {"events.jsonl": '{"t": "x", "kind": "start", "step": "a", "total_steps": "zz"}\n'
                                           '\x00\xff{{{\n[1, 2]\n{"t": 1e300, "kind": "log", "step": [1], '
                                           '"loss": "abc"}\n{"kind": "end", "outcome": 5, "t": null}\n'}}
    for name, fs in files.items():
        (runs / name).mkdir(parents=True)
        for f, text in fs.items():
            (runs / name / f).write_text(text)
        _old(runs / name)
    r = run_cli("runs", "--runs-dir", str(runs), "--json")
    assert r.code == 0 and "Traceback" not in r.out, r.out
    got = {d["name"]: d for d in map(json.loads, r.out.splitlines())}
    assert set(got) == set(files)
    assert got["good"]["status"] == "completed"
    for name in ("notjson", "wrongtypes", "badremote"):
        assert got[name]["status"] == "damaged" and got[name]["error"], got[name]
    r = run_cli("runs", "--runs-dir", str(runs))
    assert r.code == 0 and "damaged" in r.out and "Traceback" not in r.out
    r = run_cli("logs", "badevents", "--runs-dir", str(runs))
    assert r.code in (0, 1) and "Traceback" not in r.out


async def test_runs_screen_lists_a_damaged_run(tmp_path, monkeypatch):
    from tui.app import FinetuiApp

    runs = tmp_path / "runs"
    for name, launch in (("fine", '{"token": "t"}'), ("broken", "[1, 2]")):
        (runs / name).mkdir(parents=True)
        (runs / name / "launch.json").write_text(launch)
        (runs / name / "events.jsonl").write_text('{"t": 1700000000, "kind": "end", "step": 1, "outcome": "failed"}\n'
                                                  if name == "fine" else "")
    monkeypatch.setenv("FINETUI_RUNS_DIR", str(runs))
    app = FinetuiApp(start="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause(0.5)
        from textual.widgets import DataTable

        table = app.screen.query_one(DataTable)
        cells = " ".join(str(c) for r in range(table.row_count) for c in table.get_row_at(r))
        assert "broken" in cells and "damaged" in cells and "fine" in cells


def test_launch_time_os_errors_are_one_line(tmp_path):
    f = tmp_path / "afile"
    f.write_text("mine")
    assert_user_error(run_cli("train", str(DEMO), "--run-dir", str(f), "--detach"), "existing file")
    assert f.read_text() == "mine"
    assert_user_error(run_cli("train", str(DEMO), "--runs-dir", str(f / "sub"), "--detach"),
                      "launch.runs_dir", "not a folder")


# ------------------------------------------------------------------ issue 28: data refused before a run exists

def test_validate_and_train_refuse_missing_or_broken_data_before_any_run_exists(tmp_path):
    runs = tmp_path / "runs"
    missing = _with_data(tmp_path, tmp_path / "nope.jsonl", "missing.toml")
    assert_user_error(run_cli("validate", str(missing)), "nope.jsonl", "no such file")
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(_jsonl([ROW] * 5) + b'{"instruction": "x", "inp')
    broken = _with_data(tmp_path, cut, "broken.toml")
    t0 = time.monotonic()
    r = run_cli("validate", str(broken))
    assert_user_error(r, f"{cut}:6: not valid JSON")
    assert r.lines[0].startswith(f"{cut}:6:") and time.monotonic() - t0 < 5
    for p in (missing, broken):
        r = run_cli("train", str(p), "--runs-dir", str(runs), "--detach")
        assert_user_error(r)
        assert not runs.exists() or not any(runs.iterdir()), "a run directory was created"


def test_data_only_on_the_remote_host_is_not_refused_for_a_remote_run(tmp_path):
    p = _with_data(tmp_path, Path("/data/on/the/gpu/box/train.jsonl"), extra='host = "me@gpu1"\n')
    r = run_cli("validate", str(p))
    assert r.code == 0, r.out
    assert "not on this machine" in r.out and "valid" in r.out
    local = _with_data(tmp_path, Path("/data/on/the/gpu/box/train.jsonl"), "local.toml")
    assert_user_error(run_cli("validate", str(local)), "no such file")
    s3 = _with_data(tmp_path, Path("x"), "s3.toml").read_text().replace('"x"', '"s3://bucket/train.jsonl"')
    (tmp_path / "s3.toml").write_text(s3)
    r = run_cli("validate", str(tmp_path / "s3.toml"))
    assert r.code == 0 and "on S3" in r.out, r.out


# ------------------------------------------------------------------ the real entry point

def _entry() -> list[str]:
    exe = Path(sys.executable).parent / "finetui"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]


@pytest.mark.timeout(60)
def test_real_entry_point_bad_inputs_are_one_line(tmp_path):
    (tmp_path / "d.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    for argv in (["validate", str(tmp_path / "d.toml")], ["data", "check", str(fifo), "-f", "alpaca"]):
        r = subprocess.run(_entry() + argv, capture_output=True, text=True, timeout=30,
                           env={**os.environ, "FINETUI_CACHE_DIR": str(tmp_path / "c")})
        assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr, r.stderr
        assert len((r.stdout + r.stderr).strip().splitlines()) >= 1


def test_outputs_never_replace_what_is_not_a_regular_file(tmp_path):
    """export / import -o onto a folder or a FIFO: one line, and the thing stays what it was."""
    folder = tmp_path / "out.yaml"
    folder.mkdir()
    fifo = tmp_path / "job.toml"
    os.mkfifo(fifo)
    r = run_cli("export", str(DEMO), "--to", "llamafactory", "-o", str(folder))
    assert_user_error(r, str(folder), "not a regular file")
    assert folder.is_dir() and not (tmp_path / "dataset_info.json").exists()
    (tmp_path / "a.json").write_text(json.dumps({"num_epochs": 2, "learning_rate": 0.0001}))
    r = run_cli("import", str(tmp_path / "a.json"), "-f", "watsonx", "-o", str(fifo))
    assert_user_error(r, str(fifo), "not a regular file")
    import stat

    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_model_config_nested_too_deeply_is_one_line(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", "hidden_size": ' + "[" * 5000 + "]" * 5000 + "}")
    p = _preset(tmp_path, **{'name_or_path__"finetui:tiny-llama"': f"name_or_path = {json.dumps(str(model))}"})
    assert_user_error(run_cli("estimate", str(p)), "config.json", "nested too deeply")


def test_event_records_are_type_checked_on_reading_and_writing_still_works(tmp_path):
    from engine.events import EventWriter, read_all, summarize

    p = tmp_path / "events.jsonl"
    w = EventWriter(p)
    w.emit("start", 0, total_steps=10, world_size=1)
    w.emit("log", 1, loss=float("nan"), lr=0.1)
    w.close()
    with open(p, "a") as fh:
        fh.write('{"t": "x", "kind": "log", "step": "a", "loss": "abc", "total_steps": [1]}\n\x00\xff{{\n[1]\n'
                 '{"kind": 5}\n{"t": 1e300, "kind": "end", "outcome": 7, "step": -3}\n')
    recs = read_all(p)
    assert [r["kind"] for r in recs] == ["start", "log", "log", "end"]
    assert recs[1]["loss"] is None and recs[2]["step"] == 0 and "loss" not in recs[2]
    assert recs[3]["t"] is None and recs[3]["outcome"] == "7" and recs[3]["step"] == 0
    s = summarize(recs)
    assert s.total_steps == 10 and s.status == "7"

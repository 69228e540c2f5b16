"""Nothing a user had is lost: export merges into an existing dataset_info.json, every write is atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import interop, presets
from engine.schema import JobConfig
from engine.safeio import atomic_write
from tests.fixtures_launch import ROOT

DEMO = ROOT / "presets" / "demo.toml"


def export(*args: str):
    from tui.cli import app

    return CliRunner().invoke(app, ["export", str(DEMO), "--to", "llamafactory", *args])


def _demo_job(**values) -> JobConfig:
    job = presets.load(DEMO)
    job.values.update({k.replace("__", "."): v for k, v in values.items()})
    return job


USER_ENTRY = {"my_data": {"file_name": "/data/mine.json", "formatting": "sharegpt"}}


def test_export_merges_into_an_existing_dataset_info(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps(USER_ENTRY, indent=4))
    r = export("-o", str(tmp_path / "x.yaml"))
    assert r.exit_code == 0, r.output
    merged = json.loads(info.read_text())
    assert merged["my_data"] == USER_ENTRY["my_data"] and list(merged)[0] == "my_data"
    assert "finetui_train" in merged
    # the same export again: nothing changes, nothing is refused
    before = info.read_bytes()
    assert export("-o", str(tmp_path / "x.yaml")).exit_code == 0
    assert info.read_bytes() == before


@pytest.mark.parametrize("content", [json.dumps({"finetui_train": {"file_name": "/elsewhere.json"}}),
                                     "[1, 2, 3]", "{not json"])
def test_export_refuses_to_replace_a_users_dataset_info(tmp_path, content):
    info = tmp_path / "dataset_info.json"
    info.write_text(content)
    r = export("-o", str(tmp_path / "x.yaml"))
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and str(info) in lines[0] and "not overwritten" in lines[0], r.output
    assert "Traceback" not in r.output
    assert info.read_text() == content and not (tmp_path / "x.yaml").exists()


def test_export_refuses_to_replace_another_side_file(tmp_path):
    job = _demo_job(trainer__distributed_backend="deepspeed", trainer__zero_stage=2)
    _, side, _ = interop.export_files(job, "llamafactory", tmp_path / "x.yaml")
    ds = next(n for n in side if n.startswith("ds_z"))
    (tmp_path / ds).write_text('{"user": "own tuning"}')
    with pytest.raises(interop.InteropError, match="exists with other content; not overwritten"):
        interop.write_export(job, "llamafactory", tmp_path / "x.yaml")
    assert (tmp_path / ds).read_text() == '{"user": "own tuning"}'
    (tmp_path / ds).write_text(side[ds])  # the very same content: fine
    written, _ = interop.write_export(job, "llamafactory", tmp_path / "x.yaml")
    assert tmp_path / ds not in written and (tmp_path / "x.yaml") in written


# ------------------------------------------------------------------------------- atomic writes

class Spy:
    """Records every os.replace: the source's folder, name, content, whether it was fsynced, and what the
    destination held at that moment."""

    def __init__(self, monkeypatch):
        self.calls: list[dict] = []
        self.synced: set[str] = set()
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            try:
                self.synced.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
            return real_fsync(fd)

        def replace(src, dst):
            src, dst = Path(src), Path(dst)
            self.calls.append({"src": src, "dst": dst, "content": src.read_bytes(),
                               "synced": str(src.resolve()) in self.synced,
                               "dst_before": dst.read_bytes() if dst.exists() else None})
            return real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def check(self, target: Path, old: bytes | None) -> dict:
        got = [c for c in self.calls if c["dst"] == target]
        assert len(got) == 1, f"{target} was not written by a rename ({self.calls})"
        c = got[0]
        assert c["src"].parent == target.parent and c["src"] != target
        assert c["synced"], "the temporary file was renamed before it was fsynced"
        assert c["dst_before"] == old, "the old file was touched before the rename"
        assert c["content"] == target.read_bytes()
        return c


def _writers(tmp_path: Path):
    """(name, target, write()) for every kind of file finetui writes for a user."""
    from engine.launch.rundir import write_json
    from tui import state

    job = _demo_job()
    return [
        ("preset", tmp_path / "p.toml", lambda: presets.save(job, tmp_path / "p.toml")),
        ("export", tmp_path / "x.yaml", lambda: interop.write_export(job, "llamafactory", tmp_path / "x.yaml")),
        ("dataset_info", tmp_path / "dataset_info.json",
         lambda: interop.write_export(job, "llamafactory", tmp_path / "x.yaml")),
        ("run file", tmp_path / "launch.json", lambda: write_json(tmp_path / "launch.json", {"a": 1})),
        ("autosave", state.autosave_path(), lambda: state.write_autosave(job)),
    ]


@pytest.mark.parametrize("which", ["preset", "export", "dataset_info", "run file", "autosave"])
def test_every_write_is_temp_fsync_rename(tmp_path, monkeypatch, which):
    name, target, write = next(w for w in _writers(tmp_path) if w[0] == which)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = b"{}" if which == "dataset_info" else b"old content"
    target.write_bytes(old)
    spy = Spy(monkeypatch)
    write()
    first = spy.check(target, old)["src"].name
    spy.calls.clear()
    write()  # a second write: another temporary name (two writers never share one)
    if which == "dataset_info":  # (it already holds every entry: left as it is)
        assert not [c for c in spy.calls if c["dst"] == target]
    else:
        assert spy.check(target, target.read_bytes())["src"].name != first
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("which", ["preset", "export", "run file", "autosave"])
def test_a_crash_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch, which):
    name, target, write = next(w for w in _writers(tmp_path) if w[0] == which)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"old content")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    try:
        write()
    except OSError:
        pass
    assert target.read_bytes() == b"old content"
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    p = tmp_path / "f"
    p.write_text("a")
    p.chmod(0o640)
    atomic_write(p, "b")
    assert p.read_text() == "b" and (p.stat().st_mode & 0o777) == 0o640
    q = tmp_path / "new"
    atomic_write(q, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (q.stat().st_mode & 0o777) == 0o666 & ~umask

"""Nothing from outside writes outside its folder: zip members, S3 keys, the remote upload tar."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.data import DataError, load_rows
from engine.safeio import escape_reason, inside

ROWS = [{"conversations": [{"from": "human", "value": "<image>what?"}, {"from": "gpt", "value": "x"}],
         "image_path": "img/1.png"}]


def _image_zip(z: Path, member: str, *, link: bool = False) -> Path:
    rows = [dict(ROWS[0], image_path=member)]
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.json", json.dumps(rows))
        info = zipfile.ZipInfo(member)
        if link:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd" if link else b"\x89PNG evil")
    return z


def _escaping_member(target: Path) -> str:
    """A relative member name that, joined to any folder, lands on ``target`` (enough ``..`` to reach /)."""
    return "../" * 40 + str(target).lstrip("/")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_zip_member_that_escapes_is_refused(tmp_path, data_res, kind):
    outside = tmp_path / "outside" / "escaped.png"
    outside.parent.mkdir()
    member = {"dotdot": _escaping_member(outside), "absolute": str(outside), "symlink": "img/link.png"}[kind]
    z = _image_zip(tmp_path / "evil.zip", member, link=kind == "symlink")
    with pytest.raises(DataError) as ei:
        load_rows(data_res(data__train_path=str(z), data__format="sharegpt_image"))
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{z}: member `{member}` ")
    assert {"dotdot": "climbs out of its folder", "absolute": "is an absolute path",
            "symlink": "is a symbolic link"}[kind] in msg
    assert not outside.exists()
    assert not any(p.is_symlink() for p in Path(os.environ["FINETUI_CACHE_DIR"]).rglob("*"))


def test_zip_member_escape_in_cli_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from tui.cli import app

    outside = tmp_path / "escaped.png"
    z = _image_zip(tmp_path / "evil.zip", _escaping_member(outside))
    r = CliRunner().invoke(app, ["data", "check", str(z), "--format", "sharegpt_image"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "climbs out of its folder" in r.output and "evil.zip" in r.output
    assert not outside.exists()


def test_zip_with_ordinary_members_still_extracts(tmp_path, data_res):
    z = _image_zip(tmp_path / "ok.zip", "img/1.png")
    d = load_rows(data_res(data__train_path=str(z), data__format="sharegpt_image"))
    img = Path(d.train[0]["images"][0])
    assert img.read_bytes() == b"\x89PNG evil"
    assert Path(os.environ["FINETUI_CACHE_DIR"]).resolve() in img.resolve().parents


@pytest.mark.parametrize("name,bad", [("a/b.png", False), ("a/../b.png", False), ("./a", False), ("../a", True),
                                      ("a/../../b", True), ("/etc/x", True), ("..\\..\\x", True), ("C:/x", True), ("a:b.png", False),
                                      ("", True), ("..", True)])
def test_escape_reason(name, bad):
    assert (escape_reason(name) is not None) is bad


def test_inside_follows_links_already_there(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ln").symlink_to(tmp_path)
    assert inside(root, "ln/x")[0] is None
    assert inside(root, "a/b")[0] == (root / "a" / "b").resolve()


# ------------------------------------------------------------------------------- the remote upload tar

def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, linkname, mode
    return ti


def _agent_start(tmp_path: Path, name: str, tar: bytes, config_toml: str, env: dict | None = None):
    import subprocess
    import sys

    req = {"workdir": str(tmp_path / "work"), "name": name, "config_toml": config_toml, "tar": bool(tar),
           "rewrite": {"data.train_path": "data/0_x.jsonl"}, "env": {}}
    return subprocess.run([sys.executable, "-m", "engine.launch.remote_agent", "start"],
                          input=json.dumps(req).encode() + b"\n" + tar, capture_output=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "abs-symlink", "rel-symlink", "hardlink", "fifo"])
def test_upload_tar_member_that_escapes_is_refused_and_leaves_nothing(tmp_path, kind, launch_job):
    from engine import presets

    outside = tmp_path / "outside.txt"
    member = {"dotdot": _member("data/../../../outside.txt"), "absolute": _member(str(outside)),
              "abs-symlink": _member("data/ln", tarfile.SYMTYPE, str(outside)),
              "rel-symlink": _member("data/ln", tarfile.SYMTYPE, "../../.."),
              "hardlink": _member("data/hl", tarfile.LNKTYPE, str(outside)),
              "fifo": _member("data/fifo", tarfile.FIFOTYPE)}[kind]
    tar = _tar([(_member("data/0_x.jsonl"), b'{"text": "a"}\n'), (member, b"evil")])
    cfg = presets.dumps(launch_job(), resolved=True)
    p = _agent_start(tmp_path, "r1", tar, cfg)
    ans = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert p.returncode == 1 and "\n" not in ans["error"], p.stderr
    assert f"the uploaded data member `{member.name}`" in ans["error"]
    assert not outside.exists() and not (tmp_path / "work" / "r1").exists()
    assert b"Traceback" not in p.stderr


@pytest.mark.parametrize("data_filter", [True, False], ids=["tarfile-data-filter", "python-before-3.11.4"])
def test_upload_tar_keeps_the_data_filter(tmp_path, monkeypatch, data_filter):
    """Beyond the member checks, tarfile's ``data`` filter still applies: no set-uid bits, no write for others —
    also on a remote python3 whose tarfile has no filters (Python < 3.11.4: the agent applies it by hand)."""
    from engine.launch import remote_agent

    # (on a Python without the filter both cases take the by-hand path)
    monkeypatch.setattr(remote_agent, "DATA_FILTER", data_filter and remote_agent.DATA_FILTER)
    tar = _tar([(_member("data/x.sh", mode=0o6777), b"#!/bin/sh\n"), (_member("data/y.txt", mode=0o4666), b"y")])
    assert remote_agent._extract_upload(io.BytesIO(tar), tmp_path) is None
    for name in ("x.sh", "y.txt"):
        mode = (tmp_path / "data" / name).stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH | stat.S_IWGRP), (name, oct(mode))
        assert mode & stat.S_IRUSR and mode & stat.S_IWUSR
    assert (tmp_path / "data" / "x.sh").read_bytes() == b"#!/bin/sh\n"


def test_failed_remote_start_can_be_retried_under_the_same_name(tmp_path, launch_job, fake_worker):
    from engine import presets

    cfg = presets.dumps(launch_job(), resolved=True)
    bad = _tar([(_member("data/ln", tarfile.SYMTYPE, "/etc/passwd"), b"")])
    assert _agent_start(tmp_path, "same", bad, cfg).returncode == 1
    good = _tar([(_member("data/0_x.jsonl"), b'{"instruction": "a", "input": "", "output": "b"}\n')])
    p = _agent_start(tmp_path, "same", good, cfg)
    ans = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert p.returncode == 0, ans
    assert Path(ans["run_dir"]) == (tmp_path / "work" / "same").resolve()
    from engine.launch import core

    assert core.stop_dir(Path(ans["run_dir"]), grace=5) in ("stopped", "completed")


# ------------------------------------------------------------------------------- S3 prefixes

@pytest.fixture
def s3_prefix(moto_s3, data_res, monkeypatch):
    monkeypatch.setenv("FT_TEST_AK", moto_s3["access_key"])
    monkeypatch.setenv("FT_TEST_SK", moto_s3["secret_key"])

    def make(prefix: str, keys: dict[str, bytes]) -> dict:
        for k, body in keys.items():
            moto_s3["client"].put_object(Bucket=moto_s3["bucket"], Key=k, Body=body)
        return data_res(data__train_path=f"s3://{moto_s3['bucket']}/{prefix}", data__s3_endpoint_url=moto_s3["url"],
                        data__s3_region="us-east-1", data__s3_access_key_env="FT_TEST_AK",
                        data__s3_secret_key_env="FT_TEST_SK")

    return make


ROW = b'{"instruction": "a", "input": "", "output": "b"}\n'


@pytest.mark.parametrize("bad", ["dotdot", "slash", "slashes"])
def test_s3_prefix_keys_that_escape_are_refused(s3_prefix, tmp_path, bad):
    """Keys with ``..``, a leading ``/`` (after the prefix) or ``//`` would be written outside the cache."""
    cache = Path(os.environ["FINETUI_CACHE_DIR"])
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(b"the user's own file\n")
    prefix = f"esc-{bad}/"
    key = {"dotdot": prefix + _escaping_member(victim), "slash": prefix + "/" + str(victim).lstrip("/"),
           "slashes": prefix + "//" + str(victim).lstrip("/")}[bad]
    res = s3_prefix(prefix, {prefix + "train.jsonl": ROW, key: b"overwritten\n"})
    from engine.data import s3 as S3

    n0 = S3.DOWNLOADS["count"]
    with pytest.raises(DataError) as ei:
        load_rows(res)
    msg = str(ei.value)
    assert "\n" not in msg and f"object key `{key}`" in msg and "the prefix is refused" in msg
    assert victim.read_bytes() == b"the user's own file\n"
    assert S3.DOWNLOADS["count"] == n0  # refused before anything was downloaded
    assert not any(p.name == "victim.jsonl" for p in cache.rglob("*"))


def test_s3_prefix_with_harmless_dots_loads(s3_prefix):
    res = s3_prefix("dots/", {"dots/train.jsonl": ROW, "dots/img/a/../b.png": b"png", "dots/img//c.png": b"png"})
    assert len(load_rows(res).train) == 1


def test_s3_single_key_ending_in_dotdot_stays_in_its_folder(s3_prefix, moto_s3):
    from engine.data import s3 as S3

    res = s3_prefix("x", {"one/..": ROW})
    p = S3.fetch(f"s3://{moto_s3['bucket']}/one/..", res)
    assert p.name == "object" and p.read_bytes() == ROW

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
                                      ("a/../../b", True), ("/etc/x", True), ("..\\..\\x", True), ("C:/x", True),
                                      ("", True), ("..", True)])
def test_escape_reason(name, bad):
    assert (escape_reason(name) is not None) is bad


def test_inside_follows_links_already_there(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ln").symlink_to(tmp_path)
    assert inside(root, "ln/x")[0] is None
    assert inside(root, "a/b")[0] == (root / "a" / "b").resolve()

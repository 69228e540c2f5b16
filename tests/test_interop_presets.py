"""The shipped presets: one per profile, each valid, each in canonical (round-trip exact) form."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine import presets
from engine.schema import profiles
from engine.schema import FIELD_BY_NAME, SAMPLES_PREFIX

SHIPPED = presets.shipped()


def test_one_preset_per_profile():
    names = {p.stem for p in SHIPPED}
    missing = set(profiles.PROFILES) - names
    assert not missing, f"no preset for profiles {sorted(missing)}"
    for name in profiles.PROFILES:
        job = presets.load(presets.PRESETS_DIR / f"{name}.toml")
        assert job.profile == name


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_preset_is_valid(path):
    job = presets.load(path)
    assert job.problems() == []


def test_all_shipped_presets_pass_finetui_validate(repo_root):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom tui.cli import app\n"
            "bad = []\nfor p in sys.argv[1:]:\n    r = CliRunner().invoke(app, ['validate', p])\n"
            "    if r.exit_code: bad.append((p, r.exit_code, r.output))\nprint(bad)\nsys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, SHIPPED)], capture_output=True, text=True,
                       cwd=repo_root)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_preset_is_canonical(path):
    text = path.read_text(encoding="utf-8")
    assert presets.dumps(presets.loads(text, str(path))) == text


@pytest.mark.parametrize("name", [n for n in profiles.PROFILES])
def test_profile_preset_reproduces_documented_defaults(name):
    prof = profiles.get(name)
    job = presets.load(presets.PRESETS_DIR / f"{name}.toml")
    res = job.resolved()
    for field, ov in prof.fields.items():
        if ov.sets_default:
            assert res[field] == ov.default, field
            if FIELD_BY_NAME[field].is_visible(res):  # written out, so the file documents it
                assert job.values.get(field) == ov.default, field
    assert str(res["data.train_path"]).startswith(SAMPLES_PREFIX)
    if prof.models:
        assert res["model.name_or_path"] in prof.models

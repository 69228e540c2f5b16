"""docs/parameters.md is generated from the schema: it must be current and complete."""

from __future__ import annotations

import subprocess
import sys

from engine import docs
from engine.schema import FIELDS
from engine.schema.profiles import PROFILES


def test_committed_parameters_page_is_current():
    assert docs.DOC_PATH.is_file(), "docs/parameters.md is missing: run python scripts/gen_docs.py"
    assert not docs.is_stale(), "docs/parameters.md is stale: run python scripts/gen_docs.py"


def test_every_field_and_profile_is_documented():
    text = docs.render()
    for f in FIELDS:
        assert f"### `{f.name}` — {f.label}" in text
        assert f.help.replace("|", "\\|").replace("\n", " ") in text  # the same help the TUI shows
        for a in f.aliases:
            assert f"`{a}`" in text
        if f.visible_text:
            assert f"shown when: {f.visible_text}" in text
    for name in PROFILES:
        assert f"### `{name}`" in text


def test_profile_ranges_and_defaults_appear():
    text = docs.render()
    section = text.split("### `general.learning_rate`")[1].split("### ")[0]
    assert "| native | (0, 1) | 0.0002 |" in section
    assert "| fpt_pipeline | [1e-05, 0.001] | 1e-05 |" in section
    batch = text.split("### `general.batch_size`")[1].split("### ")[0]
    assert "oci_llama_lora" in batch and "[8, 16]" in batch


def test_gen_docs_check_mode(tmp_path, repo_root):
    r = subprocess.run([sys.executable, str(repo_root / "scripts" / "gen_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

"""Shared pytest configuration.

Each area keeps its fixtures in ``tests/fixtures_<area>.py``; they are all loaded
here, so any test can use any fixture.  ``require_tool`` turns a missing system
tool into a skip locally and into a failure in CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("fixtures_*.py"))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of a system tool; skip without it locally, fail without it in CI."""
    path = shutil.which(name) or (shutil.which(name, path="/usr/sbin:/sbin") if name.startswith("ssh") else None)
    if path:
        return path
    msg = f"{name} is not installed (run scripts/install-test-deps.sh)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep user-level state (autosave, recent presets, caches) out of the real home."""
    state = tmp_path_factory.getbasetemp() / "finetui-state"
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("FINETUI_STATE_DIR", str(state))
    # the tiny model is shared across tests (built once per session)
    cache = tmp_path_factory.getbasetemp() / "finetui-cache"
    monkeypatch.setenv("FINETUI_CACHE_DIR", os.environ.get("FINETUI_TEST_CACHE_DIR", str(cache)))
    yield

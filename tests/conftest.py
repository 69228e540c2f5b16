"""Shared pytest configuration.

Each area keeps its fixtures in ``tests/fixtures_<area>.py``; they are all loaded
here, so any test can use any fixture.

Under ``CI=true`` (``.ci/run`` sets it) every skip is a failure: a skipped test there is a
test that did not run, whatever the reason (a missing tool, package or corpus, an
``importorskip``, a ``skipif``, an empty parameter list).  The only exceptions are the
skips in ``CI_ALLOWED_SKIPS``, each impossible on a CI runner for the reason given.
Locally a skip stays a skip, with its reason (``pytest -rs`` lists them).
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

#: Skip reasons (their beginning) that stay skips under CI=true, each with why CI cannot run it.
#: Keep this short: anything a CI runner can install or build does not belong here.
CI_ALLOWED_SKIPS: dict[str, str] = {
    "needs a CUDA GPU": "CI runners have no GPU; the GPU paths run in bench/gpu_session on a GPU machine",
    "needs root": "CI runners run the suite as an unprivileged user (this project's machines run it as root)",
}


def ci_allows_skip(reason: str) -> bool:
    return any(reason.startswith(prefix) for prefix in CI_ALLOWED_SKIPS)


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(getattr(longrepr, "longrepr", longrepr) or "")


def _fail_skip_in_ci(rep) -> None:
    if not IN_CI or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = _skip_reason(rep.longrepr)
    if ci_allows_skip(reason):
        return
    rep.outcome = "failed"
    rep.longrepr = (f"skipped under CI=true, which counts as a failure (a test that did not run): {reason}\n"
                    "(install what it needs — scripts/install-test-deps.sh, pip install -e '.[test]' — "
                    "or, if CI can never run it, add its reason to tests/conftest.py CI_ALLOWED_SKIPS)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module-level skip (``pytest.importorskip`` at import, ``pytestmark = skip``) also fails in CI."""
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


#: fixtures that stand for one machine-wide thing: every test that uses one runs in the same pytest-xdist worker
#: (``scripts/test`` runs the suite in 2 workers, ``--dist loadgroup``), so there is one of it, not one per worker
ONE_WORKER_FIXTURES = {"slurm_cluster": "slurm"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, group in ONE_WORKER_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))


def require_tool(name: str) -> str:
    """Path of a system tool; without it the test skips (a failure in CI: see the module docstring)."""
    path = shutil.which(name) or (shutil.which(name, path="/usr/sbin:/sbin") if name.startswith("ssh") else None)
    if path:
        return path
    pytest.skip(f"{name} is not installed (run scripts/install-test-deps.sh)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep user-level state (autosave, recent presets, caches) out of the real home."""
    state = tmp_path_factory.getbasetemp() / "finetui-state"
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("FINETUI_STATE_DIR", str(state))
    monkeypatch.setenv("FINETUI_CONFIG_DIR", str(state / "no-user-config"))  # (a test's own [keys] sets it)
    # the tiny model is shared across tests (built once per session)
    cache = tmp_path_factory.getbasetemp() / "finetui-cache"
    monkeypatch.setenv("FINETUI_CACHE_DIR", os.environ.get("FINETUI_TEST_CACHE_DIR", str(cache)))
    yield

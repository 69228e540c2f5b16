"""Under CI=true every skip fails (tests/conftest.py): a test that did not run cannot pass for one that did."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import CI_ALLOWED_SKIPS, ROOT

CASES = '''
import pytest

def test_runs():
    pass

def test_skip():
    pytest.skip("moto_server not installed")

def test_importorskip():
    pytest.importorskip("no_such_module_finetui")

@pytest.mark.skipif(True, reason="corpus not present")
def test_skipif():
    pass

@pytest.mark.parametrize("x", [])
def test_empty_params(x):
    pass

def test_allowed():
    pytest.skip("{allowed} (this test)")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
'''


def _run(tmp_path, ci: str) -> str:
    (tmp_path / "test_cases.py").write_text(CASES.format(allowed=next(iter(CI_ALLOWED_SKIPS))))
    (tmp_path / "test_module_skip.py").write_text("import pytest\npytest.importorskip('no_such_module_finetui')\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
    """))
    env = dict(os.environ, CI=ci, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                        str(tmp_path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return r.stdout


def test_every_skip_fails_in_ci(tmp_path):
    out = _run(tmp_path, "true")
    # a skip in the call fails the test; one at setup (skipif, empty parameters) is an error
    for outcome, name in (("FAILED", "test_skip"), ("FAILED", "test_importorskip"), ("ERROR", "test_skipif"),
                          ("ERROR", "test_empty_params[NOTSET]")):
        assert f"{outcome} test_cases.py::{name}" in out, out
    assert "ERROR test_module_skip.py" in out, out
    assert "skipped under CI=true" in out and "moto_server not installed" in out
    assert "PASSED test_cases.py::test_runs" in out
    assert "SKIPPED [1] test_cases.py" in out and "FAILED test_cases.py::test_allowed" not in out, out
    assert "XFAIL test_cases.py::test_xfail" in out


def test_skips_stay_skips_locally(tmp_path):
    out = _run(tmp_path, "")
    assert "FAILED" not in out and "ERROR" not in out, out
    assert "1 passed, 6 skipped, 1 xfailed" in out, out

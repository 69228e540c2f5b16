"""Running the CLI in this process, as its entry point does (``tui.cli.main``: the one top-level handler)."""

from __future__ import annotations

import contextlib
import io
import sys
from typing import NamedTuple


class CliResult(NamedTuple):
    code: int
    out: str  # stdout and stderr together

    @property
    def lines(self) -> list[str]:
        return [x for x in self.out.splitlines() if x.strip()]


def run_cli(*argv: str) -> CliResult:
    """``finetui ARGV`` in this process through :func:`tui.cli.main`; exit code and output."""
    from tui.cli import main

    raw = io.BytesIO()
    buf = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", write_through=True)  # (.buffer, as sys.stdout)
    saved = sys.argv[:]
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                main(list(argv))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv[:] = saved
        buf.flush()
    return CliResult(code, raw.getvalue().decode("utf-8", "replace"))


def assert_user_error(r: CliResult, *needles: str) -> None:
    """Exit 2, at least one line, no traceback, no internal error; every needle in the output."""
    assert r.code == 2, r.out
    assert r.lines, "no line said what is wrong"
    assert "Traceback" not in r.out and "internal error" not in r.out, r.out
    for n in needles:
        assert n in r.out, (n, r.out)

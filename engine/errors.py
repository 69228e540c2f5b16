"""The one user-facing error type, and the crash log for everything else.

:class:`FinetuiError` is raised wherever a user's input is at fault (a value, a file, a line in it,
a host).  It names where the problem is and says what is wrong in one sentence; the CLI prints
:meth:`FinetuiError.lines` and exits 2, the TUI shows them in a notification.  Any other
exception that reaches the top is a bug: :func:`report_crash` writes its traceback to a crash log
and gives the one line that points to it.

This module imports nothing else of finetui (the schema and every layer may raise these).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path


class FinetuiError(Exception):
    """An error a user can cause and fix.  ``str(e)`` is one line: ``<where>: <what is wrong>``.

    ``where`` is the first of ``path[:line]``, ``field``, ``host`` that is given; a message that
    already starts with it is not prefixed twice.  Subclasses that carry several problems
    (:class:`engine.schema.ConfigError`) return one line per problem from :meth:`lines`.
    """

    #: the exit code of the CLI when this error ends a command (2 = bad input)
    code: int = 2

    def __init__(self, message: str = "", *, field: str | None = None, path: str | os.PathLike[str] | None = None,
                 line: int | None = None, host: str | None = None):
        self.message = message
        self.field = field
        self.path = None if path is None else str(path)
        self.line = line
        self.host = host
        super().__init__(message)

    @property
    def where(self) -> str:
        if self.path is not None:
            return f"{self.path}:{self.line}" if self.line is not None else self.path
        return self.field or self.host or ""

    def __str__(self) -> str:
        msg = " ".join(str(self.message or (self.args[0] if self.args else "")).split("\n"))
        w = self.where
        if w and not msg.startswith(w):
            return f"{w}: {msg}" if msg else w
        return msg

    def lines(self) -> list[str]:
        """What the user is shown: one line per problem."""
        return [str(self)]


def one_line(e: BaseException) -> str:
    """A user error's lines joined, or any exception as ``Type: first line`` (no traceback)."""
    if isinstance(e, FinetuiError):
        return "; ".join(e.lines())
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def crash_dir() -> Path:
    """Where crash logs go: ``$FINETUI_CACHE_DIR``, else ``$XDG_CACHE_HOME/finetui``, else ``~/.cache/finetui``."""
    if os.environ.get("FINETUI_CACHE_DIR"):
        return Path(os.environ["FINETUI_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache") / "finetui"


def report_crash(e: BaseException, context: str = "") -> str:
    """Write ``e``'s traceback to a new crash log; return the one line to show for it."""
    return f"internal error: {one_line(e)} (a bug in finetui; details in {crash_log(e, context)})"


def crash_log(e: BaseException, context: str = "") -> str:
    """Write ``e``'s traceback to a new crash log file; return its path (or why it could not be written)."""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    head = f"finetui crash {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\nargv: {sys.argv!r}\n"
    if context:
        head += f"context: {context}\n"
    where = "not written"
    for d in (crash_dir(), Path("/tmp")):  # the cache folder may itself be the problem
        try:
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            with open(p, "a", encoding="utf-8") as fh:
                fh.write(head + text + "\n")
            where = str(p)
            break
        except OSError:  # unwritable: try the next folder; the one line still goes out
            continue
    return where

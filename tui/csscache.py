"""Parsed Textual CSS kept between sessions (start-up time).

Textual parses ``app.tcss`` and every widget class's ``DEFAULT_CSS`` at each start: about
65 ms of the wizard's first screen on a 2-core machine, for text that changes only when
finetui or Textual is upgraded.  :func:`load` fills the stylesheet's own parse cache
(``Stylesheet._parse_cache``, keyed by the CSS text itself, its location and scope) from
a pickle written by :func:`save` at the end of the previous session; unpickling takes
about 8 ms.  A changed CSS text has a different key and is parsed as before, so a stale
entry is never used; the file's name carries Textual's installed file (path, size, mtime),
Python's version and the theme's variables, which the parsed rules depend on.

Everything here is best effort: a missing, unreadable or foreign file, or a Textual
without ``_parse_cache``, means the CSS is parsed as usual, never an error.  The file is
the user's own (``$FINETUI_STATE_DIR/cache``), like Python's ``__pycache__``.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

FORMAT = 1


def cache_path(stylesheet: Any) -> Path:
    """The cache file for this Textual, this Python and the stylesheet's current variables."""
    import textual

    from tui.state import state_dir

    variables = sorted((str(k), str(v)) for k, v in getattr(stylesheet, "_variables", {}).items())
    # Textual's installed files stand for its version: ``textual.__version__`` reads the package
    # metadata (importlib.metadata, about 25 ms at start-up); an upgrade rewrites the files
    try:
        st = os.stat(textual.__file__)
        textual_id: tuple[Any, ...] = (textual.__file__, st.st_mtime_ns, st.st_size)
    except (OSError, TypeError):
        textual_id = ("?",)
    key = repr((FORMAT, textual_id, sys.version_info[:2], variables))
    return state_dir() / "cache" / f"css-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"


def load(stylesheet: Any) -> set[tuple[Any, ...]]:
    """Put the cached parse results in the stylesheet's parse cache; the keys loaded (empty when none)."""
    cache = getattr(stylesheet, "_parse_cache", None)
    if cache is None:
        return set()
    try:
        path = cache_path(stylesheet)
        data = path.read_bytes()
        gc_on = gc.isenabled()
        gc.disable()  # unpickling builds thousands of objects: with the collector on, 45 ms instead of 10
        try:
            entries = pickle.loads(data)
        finally:
            if gc_on:
                gc.enable()
        if not isinstance(entries, dict):
            return set()
        for key, rules in entries.items():
            cache[key] = rules
        return set(entries)
    except Exception:  # noqa: BLE001 - absent, unreadable or from elsewhere: parse as usual
        return set()


def save(stylesheet: Any, loaded: set[tuple[Any, ...]] | frozenset[tuple[Any, ...]] = frozenset()
         ) -> set[tuple[Any, ...]] | None:
    """Write the parse results of the CSS this session used, and those loaded for CSS it did not
    use (a screen not opened this time), when they differ from ``loaded``.

    An entry whose location (file, or widget class's DEFAULT_CSS) is a source now with another
    text is stale (an upgrade changed it) and dropped, so the file holds one text per location.
    Written atomically; returns the keys written, None when nothing was written.
    """
    cache = getattr(stylesheet, "_parse_cache", None)
    sources = getattr(stylesheet, "source", None)
    if cache is None or sources is None:
        return None
    try:
        current = {location: src.content for location, src in sources.items()}

        def keep(key: tuple[Any, ...]) -> bool:
            css, location = key[0], key[1]
            return css == current[location] if location in current else key in loaded

        entries = {k: cache[k] for k in list(cache.keys()) if keep(k)}
        if not entries or set(entries) == set(loaded):
            return None
        path = cache_path(stylesheet)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
        return set(entries)
    except Exception:  # noqa: BLE001 - a cache: never fails the app
        return None

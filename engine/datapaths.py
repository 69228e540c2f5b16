"""What a data path field names: one source, or several separated by commas (``a.json,b.jsonl``), each
optionally in a format of its own (``b.json#sharegpt``; the others are in ``data.format``).

Kept apart from :mod:`engine.data` (the loaders, the formats) so that the schema's rules and the
interface can read a path without importing them: the wizard checks ``any_s3`` at its first screen.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable


def data_paths(value: Any) -> list[str]:
    """The sources a data path field names: one path, or several separated by commas, whose rows are read
    one after the other (LLaMA-Factory's ``dataset: identity,alpaca_en_demo``).  A local path that exists
    with a comma in its name is one path."""
    s = str(value or "").strip()
    if not s:
        return []
    if "," not in s or os.path.exists(os.path.expanduser(s)):  # (False, not an error, for a path too long)
        return [s]
    return [p.strip() for p in s.split(",") if p.strip()]


def join_paths(paths: list[str]) -> str:
    """:func:`data_paths`' inverse."""
    return ",".join(paths)


_FORMAT = re.compile(r"#([a-z_]+)$")


def split_format(part: str) -> tuple[str, str | None]:
    """One source → (its path, its own format or None): ``glaive.json#sharegpt`` → (glaive.json, sharegpt)."""
    m = _FORMAT.search(part)
    return (part[:m.start()], m.group(1)) if m else (part, None)


def map_paths(value: Any, fn: Callable[[str], str]) -> str:
    """A data path field with ``fn`` applied to the path of each of its sources (their formats kept)."""
    out = []
    for part in data_paths(value):
        path, fmt = split_format(part)
        out.append(fn(path) + (f"#{fmt}" if fmt else ""))
    return join_paths(out)


def sources(value: Any, default_format: str) -> list[tuple[str, str]]:
    """(path, format) of each source of a data path field, ``default_format`` where none is given."""
    return [(path, fmt or default_format) for path, fmt in map(split_format, data_paths(value))]


def any_s3(*values: Any) -> bool:
    """Whether a data path field (one or several sources) reads from S3."""
    return any(p.startswith("s3://") for v in values for p in data_paths(v))


#: the longest name of one path part (bytes) and the longest path most Linux file systems accept
NAME_MAX = 255
PATH_MAX = 4096


def path_problem(path: str) -> str | None:
    """Why ``path`` can never name a file on this system (a part longer than NAME_MAX bytes, the whole
    longer than PATH_MAX, a NUL byte); None when it can."""
    if "\0" in path:
        return "the path contains a NUL character"
    b = os.fsencode(path)
    if len(b) > PATH_MAX:
        return f"the path is longer than the file system allows ({len(b)} bytes; at most {PATH_MAX})"
    longest = max((len(p) for p in b.split(b"/")), default=0)
    if longest > NAME_MAX:
        return f"a part of the path is longer than the file system allows ({longest} bytes; at most {NAME_MAX})"
    return None

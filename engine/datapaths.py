"""What a data path field names: one source, or several separated by commas (``a.json,b.jsonl``).

Kept apart from :mod:`engine.data` (the loaders, the formats) so that the schema's rules and the
interface can read a path without importing them: the wizard checks ``any_s3`` at its first screen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


def data_paths(value: Any) -> list[str]:
    """The sources a data path field names: one path, or several separated by commas, whose rows are read
    one after the other (LLaMA-Factory's ``dataset: identity,alpaca_en_demo``).  A local path that exists
    with a comma in its name is one path."""
    s = str(value or "").strip()
    if not s:
        return []
    if "," not in s or Path(os.path.expanduser(s)).exists():
        return [s]
    return [p.strip() for p in s.split(",") if p.strip()]


def join_paths(paths: list[str]) -> str:
    """:func:`data_paths`' inverse."""
    return ",".join(paths)


def map_paths(value: Any, fn: Callable[[str], str]) -> str:
    """A data path field with ``fn`` applied to each of its sources."""
    return join_paths([fn(p) for p in data_paths(value)])


def any_s3(*values: Any) -> bool:
    """Whether a data path field (one or several sources) reads from S3."""
    return any(p.startswith("s3://") for v in values for p in data_paths(v))

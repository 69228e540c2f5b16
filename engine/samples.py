"""The sample data files shipped with finetui (``engine/assets/samples/``).

The schema refers to them as ``finetui:samples/<file>`` (:data:`engine.schema.SAMPLES_PREFIX`).
Standard library and the schema only.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.schema import SAMPLES_PREFIX

SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"


def is_sample(path: str | os.PathLike[str]) -> bool:
    return str(path).startswith(SAMPLES_PREFIX)


def resolve_sample(path: str | os.PathLike[str]) -> Path:
    """``finetui:samples/<file>`` → the bundled file; anything else → ``Path(path)`` unchanged."""
    s = str(path)
    if not s.startswith(SAMPLES_PREFIX):
        return Path(s)
    name = s[len(SAMPLES_PREFIX):].lstrip("/")
    p = (SAMPLES_DIR / name).resolve()
    if SAMPLES_DIR.resolve() not in p.parents and p != SAMPLES_DIR.resolve():
        raise FileNotFoundError(f"{s}: not a bundled sample file")
    if not p.exists():
        avail = ", ".join(list_samples())
        raise FileNotFoundError(f"{s}: no such bundled sample (available: {avail})")
    return p


def list_samples() -> list[str]:
    return sorted(p.name for p in SAMPLES_DIR.glob("*.jsonl")) if SAMPLES_DIR.is_dir() else []

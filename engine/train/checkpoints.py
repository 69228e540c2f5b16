"""Checkpoints of a run: complete only when ``trainer_state.json`` is present."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from engine.errors import FinetuiError
from engine.launch.rundir import CHECKPOINTS_DIR

STATE_FILE = "trainer_state.json"
_CK = re.compile(r"^checkpoint-(\d+)$")


class ResumeError(FinetuiError, ValueError):
    """A resume request that names no usable checkpoint; ``str()`` is one line."""


def is_complete(path: str | os.PathLike[str]) -> bool:
    """``trainer_state.json`` is written last; a kill while it is written leaves it empty or cut off."""
    p = Path(path) / STATE_FILE
    try:
        return p.is_file() and isinstance(json.loads(p.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def checkpoints(ck_dir: str | os.PathLike[str]) -> list[tuple[int, Path, bool]]:
    """(step, path, complete) of every ``checkpoint-<step>`` folder, oldest first."""
    d = Path(ck_dir)
    out = []
    if d.is_dir():
        for p in d.iterdir():
            m = _CK.match(p.name)
            if m and p.is_dir():
                out.append((int(m.group(1)), p, is_complete(p)))
    return sorted(out)


def newest_complete(ck_dir: str | os.PathLike[str]) -> Path | None:
    done = [p for _, p, ok in checkpoints(ck_dir) if ok]
    return done[-1] if done else None


def set_aside_incomplete(ck_dir: str | os.PathLike[str]) -> list[Path]:
    """Rename half-written checkpoints (e.g. after a SIGKILL) so nothing picks them up; nothing is deleted."""
    moved = []
    for step, p, ok in checkpoints(ck_dir):
        if not ok:
            dst = p.with_name(f"incomplete-{p.name}-{int(time.time())}")
            try:
                os.replace(p, dst)
                moved.append(dst)
            except OSError:
                pass
    return moved


_NODE = re.compile(r"^(?P<run>.+)\.node(?P<k>\d+)$")


def node_copy(path: Path, run_dir: Path) -> Path:
    """A multi-node run keeps a copy of every checkpoint on each node (``save_on_each_node``), node k's in the
    run directory ``<run>.node<k>`` beside the others (engine/launch/remote.py names them).  Resuming, every node
    is given node 0's path (``…/<old run>/checkpoints/checkpoint-N``, absolute on node 0's host): on node k
    (this run directory is ``<new run>.node<k>``) it means ``<workdir>/<old run>.node<k>/checkpoints/…``."""
    m = _NODE.match(run_dir.name)
    if not m or not path.is_absolute() or len(path.parts) < 3 or path.parent.name != CHECKPOINTS_DIR:
        return path
    mine = run_dir.parent / f"{path.parent.parent.name}.node{m.group('k')}" / CHECKPOINTS_DIR / path.name
    return mine if mine.is_dir() or not path.is_dir() else path


def resolve_resume(value: str, run_dir: Path, ck_dir: Path) -> Path | None:
    """``no`` → None; ``last`` → newest complete checkpoint (None when there is none); else a path."""
    v = (value or "no").strip()
    if v.lower() in ("no", "false", "none", ""):
        return None
    if v.lower() in ("last", "latest", "true", "yes"):
        return newest_complete(ck_dir)
    p = node_copy(Path(v).expanduser(), run_dir)
    if not p.is_absolute():
        p = (run_dir / p) if (run_dir / p).exists() else (ck_dir / p)
    if not p.is_dir():
        raise ResumeError(f"general.resume_from_checkpoint: {v} is not a checkpoint folder (looked in {run_dir})")
    if not is_complete(p):
        raise ResumeError(f"general.resume_from_checkpoint: {p} is incomplete (no {STATE_FILE}); "
                          f"use `last` for the newest complete checkpoint")
    return p

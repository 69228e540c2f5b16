"""Run directories: names, ``launch.json`` / ``remote.json`` / ``supervisor.json``, the end record.

Layout of ``runs/<name>/``: ``config.toml`` (resolved, secrets removed),
``events.jsonl``, ``launch.json`` (command, host, pid, pgid, start time),
``worker.log``, ``supervisor.json`` (phase and exit code, written by the
supervisor), and for remote runs ``remote.json`` (host(s), remote run
directories) with ``events.jsonl`` mirrored from the remote.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from engine.schema import LOCAL_HOST
from engine.errors import FinetuiError
from engine.events import EVENTS_FILE, parse_lines
from engine.safeio import atomic_write

LAUNCH_FILE = "launch.json"
REMOTE_FILE = "remote.json"
SUPERVISOR_FILE = "supervisor.json"
CONFIG_FILE = "config.toml"
LOG_FILE = "worker.log"
CHECKPOINTS_DIR = "checkpoints"  # checkpoint-<step>/ folders (the trainer's output_dir)
FINAL_DIR = "final"  # the trained model
LOCK_FILE = ".events.lock"


class LaunchError(FinetuiError):
    """A launch problem a user can cause or fix; ``str()`` is one clear sentence."""


@dataclass
class RunRef:
    """Where a run lives: its local directory (the mirror, for remote runs) and its host."""

    name: str
    run_dir: Path
    host: str = LOCAL_HOST
    remote: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    def __str__(self) -> str:
        return self.name


@dataclass
class RunInfo:
    name: str
    host: str
    status: str
    step: int = 0
    total_steps: int = 0
    last_loss: float | None = None
    started: float | None = None
    duration: float | None = None
    ref: RunRef | None = None
    phase: str = ""
    error: str | None = None
    start_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ names

def _slug(s: str) -> str:
    s = s.rstrip("/").split("/")[-1].split(":")[-1]
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.")
    return s or "model"


def default_name(res: dict[str, Any], now: float | None = None) -> str:
    """``ft_<model>_<stage>-<method>_<YYYYmmdd-HHMMSS>``: runs of one model told apart at a glance."""
    stamp = datetime.fromtimestamp(now or time.time()).strftime("%Y%m%d-%H%M%S")
    kind = "-".join(_slug(str(res[k])) for k in ("trainer.stage", "trainer.training_type") if res.get(k))
    return f"ft_{_slug(str(res.get('model.name_or_path') or 'model'))}_{kind + '_' if kind else ''}{stamp}"


def unique_dir(runs_dir: Path, name: str) -> Path:
    """Create and return ``runs_dir/name`` (``name-2``, ``name-3``… when taken)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    cand, n = runs_dir / name, 1
    while True:
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            n += 1
            cand = runs_dir / f"{name}-{n}"


def valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


# ------------------------------------------------------------------ json files

def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=1, default=str))


def read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


#: what the run files' fields must be for a reader to trust them (a damaged file is listed as such)
_RUN_FILE_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    LAUNCH_FILE: {"pid": (int,), "pgid": (int,), "token": (str,), "host": (str,), "started": (int, float),
                  "pids": (list,), "start_at": (int, float)},
    REMOTE_FILE: {"host": (str,), "hosts": (list,), "nodes": (list,), "node_errors": (dict,), "run_dir": (str,)},
}


def damaged(run_dir: Path) -> str | None:
    """Why a run directory's ``launch.json`` / ``remote.json`` cannot be trusted (not JSON, not an object, a
    field of the wrong type); None when they are sound or absent."""
    for name, types in _RUN_FILE_TYPES.items():
        p = Path(run_dir) / name
        try:
            text = p.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
        try:
            d = json.loads(text)
        except (ValueError, RecursionError):
            return f"{name} is not valid JSON (damaged)"
        if not isinstance(d, dict):
            return f"{name} is not a JSON object (damaged)"
        for k, ts in types.items():
            v = d.get(k)
            if v is not None and (not isinstance(v, ts) or isinstance(v, bool)):
                return f"{name}: {k} is not {'a number' if int in ts else ts[0].__name__} (damaged)"
    return None


def update_json(path: Path, **kv: Any) -> dict[str, Any]:
    d = read_json(path)
    d.update(kv)
    write_json(path, d)
    return d


# ------------------------------------------------------------------ events

@contextmanager
def events_lock(run_dir: Path) -> Iterator[None]:
    with open(run_dir / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tail_records(path: Path, nbytes: int = 1 << 16) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - nbytes))
            chunk = fh.read()
    except FileNotFoundError:
        return []
    if size > nbytes:
        nl = chunk.find(b"\n")
        chunk = chunk[nl + 1:] if nl >= 0 else b""
    return parse_lines(chunk)[0]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of an events file (``engine.events.read_all`` without its huge read buffer)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, IsADirectoryError):
        return []
    return parse_lines(data)[0]


def has_end(run_dir: Path) -> dict[str, Any] | None:
    for r in reversed(tail_records(run_dir / EVENTS_FILE)):
        if r.get("kind") == "end":
            return r
    return None


def append_end_if_missing(run_dir: Path, outcome: str, error: str | None = None, **extra: Any) -> bool:
    """Append an ``end`` record (and an ``error`` first when given) unless the run already has one."""
    path = run_dir / EVENTS_FILE
    with events_lock(run_dir):
        if has_end(run_dir):
            return False
        step = 0
        for r in tail_records(path):
            step = max(step, int(r.get("step") or 0))
        recs = []
        now = round(time.time(), 3)
        if error:
            recs.append({"t": now, "kind": "error", "step": step, "message": error, **extra, "by": "launcher"})
        recs.append({"t": now, "kind": "end", "step": step, "outcome": outcome, "final_path": None,
                     "by": "launcher"})
        with open(path, "ab") as fh:
            if fh.tell() > 0:
                with open(path, "rb") as rf:
                    rf.seek(-1, 2)
                    if rf.read(1) != b"\n":
                        fh.write(b"\n")  # a half-written line of a killed worker: close it (readers skip it)
            fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in recs))
            fh.flush()
            os.fsync(fh.fileno())
        return True


def log_tail(run_dir: Path, nbytes: int = 4000) -> str:
    try:
        with open(run_dir / LOG_FILE, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - nbytes))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""

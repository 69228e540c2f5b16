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
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Iterator, Union, get_args, get_origin, get_type_hints

from engine.schema import LOCAL_HOST, REMOTE_PYTHON, REMOTE_WORKDIR
from engine.errors import FinetuiError
from engine.events import EVENTS_FILE, parse_lines
from engine.safeio import atomic_write

LAUNCH_FILE = "launch.json"
REMOTE_FILE = "remote.json"
SUPERVISOR_FILE = "supervisor.json"
CONFIG_FILE = "config.toml"
LOG_FILE = "worker.log"
HOSTFILE = "hostfile"  # a multi-node DeepSpeed run's hostfile
#: the launch backend of a run directory that names none (engine.launch.backends.local: this machine)
DEFAULT_BACKEND = "local"
CHECKPOINTS_DIR = "checkpoints"  # checkpoint-<step>/ folders (the trainer's output_dir)
FINAL_DIR = "final"  # the trained model
LOCK_FILE = ".events.lock"


class LaunchError(FinetuiError):
    """A launch problem a user can cause or fix; ``str()`` is one clear sentence."""


@dataclass
class RunRef:
    """Where a run lives: its local directory (the mirror, for remote runs), its host, and the launch backend that
    owns it (``engine.launch.backends``: the kind ``launch.json`` records)."""

    name: str
    run_dir: Path
    host: str = LOCAL_HOST
    remote: RemoteRecord | None = None
    backend: str = DEFAULT_BACKEND

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    def __str__(self) -> str:
        return self.name


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


# ------------------------------------------------------------------ the run files: launch.json, remote.json

class _Record:
    """A run file's content: its fields declared once (name, type, default), read leniently (a key this finetui
    does not know — one a newer version wrote — is kept in ``extra`` and written back), checked by type
    (:func:`damaged`), written whole."""

    FILE: ClassVar[str]

    @classmethod
    def _types(cls) -> dict[str, tuple[type, ...]]:
        """Each field → the JSON types it takes (from its declaration)."""
        got = _TYPES.get(cls)
        if got is not None:
            return got
        hints = get_type_hints(cls)
        out: dict[str, tuple[type, ...]] = _TYPES.setdefault(cls, {})
        for f in fields(cls):
            if f.name != "extra":
                h = hints[f.name]
                parts = get_args(h) if get_origin(h) in (Union, UnionType) else (h,)
                kinds = tuple(_runtime(t) for t in parts if t is not type(None))
                out[f.name] = tuple(k for ks in kinds for k in ks)
        return out

    @classmethod
    def problem(cls, d: dict[str, Any]) -> str | None:
        """The first field of ``d`` of the wrong type, as ``<file>: <field> is not …``; None when sound."""
        for k, ts in cls._types().items():
            v = d.get(k)
            if v is not None and (not isinstance(v, ts) or isinstance(v, bool) and bool not in ts):
                return f"{cls.FILE}: {k} is not {'a number' if int in ts else ts[0].__name__} (damaged)"
        return None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   extra={k: v for k, v in d.items() if k not in names})

    @classmethod
    def read(cls, run_dir: Path) -> Any:
        """The file's record; an absent or unreadable file reads as an empty one (:func:`damaged` says which)."""
        d = read_json(Path(run_dir) / cls.FILE)
        return cls.from_dict(d if cls.problem(d) is None else {})

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}

    def write(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / self.FILE, self.as_dict())


_TYPES: dict[type, dict[str, tuple[type, ...]]] = {}


def _runtime(t: Any) -> tuple[type, ...]:
    t = get_origin(t) or t
    return (int, float) if t is float else (t,)


@dataclass
class LaunchRecord(_Record):
    """``launch.json``: how the run was started and what runs it.  Written by its backend (the local one on a
    node of a remote run too); a Slurm run adds its job (``slurm_*``, ``task_command``, ``script``)."""

    FILE: ClassVar[str] = LAUNCH_FILE
    name: str | None = None
    host: str | None = None
    backend: str | None = None  # the launch backend that owns the run (engine.launch.backends)
    command: list[str] | None = None
    cwd: str | None = None
    launcher: str | None = None
    python: str | None = None
    token: str | None = None  # every process of the run carries it (FINETUI_RUN_TOKEN)
    created: float | None = None
    started: float | None = None
    start_at: float | None = None  # a scheduled start
    nnodes: int | None = None
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None
    gloo_socket_ifname: str | None = None
    nccl_socket_ifname: str | None = None
    pid: int | None = None  # the supervisor (its start time: pid_start), the leader of the process group
    pgid: int | None = None
    pids: list[int] | None = None
    pid_start: int | None = None
    supervisor: list[str] | None = None
    remote: bool | None = None  # the local record of a run on other hosts (remote.json says where)
    slurm_job: str | None = None  # … whose node submitted a Slurm job
    slurm_job_id: str | None = None  # a Slurm run's job on this machine
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeRecord(_Record):
    """One node of a run on other hosts: where its part runs (``remote.json``'s ``nodes``)."""

    FILE: ClassVar[str] = REMOTE_FILE
    host: str = ""
    run_dir: str = ""  # on that host
    pid: int | None = None
    pgid: int | None = None
    hostname: str | None = None
    command: list[str] | None = None
    slurm_job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemoteRecord(_Record):
    """``remote.json``: a run on other hosts, which the local run directory mirrors (the ``ssh`` backend)."""

    FILE: ClassVar[str] = REMOTE_FILE
    host: str = ""  # the node whose run directory holds rank 0's events (the first, until known)
    run_dir: str = ""  # … and that directory
    hosts: list[str] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    python: str = REMOTE_PYTHON
    workdir: str = REMOTE_WORKDIR
    #: the local data files the uploaded copies came from (config.toml names the copies): a resume sends them again
    data_sources: dict[str, str] = field(default_factory=dict)
    events_node: int | None = None  # a multi-node run: the node of rank 0's events, once known
    node_errors: dict[str, str] | None = None  # a failed multi-node run: what the other nodes recorded (asked once)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes = [n if isinstance(n, NodeRecord) else NodeRecord.from_dict(n if isinstance(n, dict) else {})
                      for n in self.nodes or []]

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "nodes": [n.as_dict() for n in self.nodes]}


def damaged(run_dir: Path) -> str | None:
    """Why a run directory's ``launch.json`` / ``remote.json`` cannot be trusted (not JSON, not an object, a
    field of the wrong type); None when they are sound or absent."""
    for rec in (LaunchRecord, RemoteRecord):
        name = rec.FILE
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
        why = rec.problem(d) or next((NodeRecord.problem(n) if isinstance(n, dict) else f"{name}: a node is not a "
                                      f"JSON object (damaged)" for n in (d.get("nodes") or [])
                                      if not isinstance(n, dict) or NodeRecord.problem(n)), None)
        if why:
            return why
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

"""The one place the dashboard reaches the run engine (``engine.launch``).

The monitor and the runs screen talk only to this module.  When
``engine.launch`` provides ``list_runs`` / ``resolve_run`` / ``event_source`` /
``stop_run`` / ``delete_run`` they are used (local and SSH runs alike);
otherwise a local fallback reads run directories with :class:`engine.events.Tailer`.
Everything here may block (files, SSH): call it from a worker thread, never
from the event loop, except :func:`resolve` for local paths.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from engine.schema import LOCAL_HOST, is_local_host
from engine.events import EVENTS_FILE, Tailer, summarize
from engine.launch.rundir import CONFIG_FILE, LAUNCH_FILE, LOG_FILE
#: On attach, only this much of the end of a long worker.log is shown (toolong-style).
LOG_TAIL_BYTES = 256 * 1024


class EventSourceLike(Protocol):
    def read(self) -> list[dict[str, Any]]: ...


def _launch() -> Any:
    """``engine.launch`` (imported on first use: the interface starts without it)."""
    import engine.launch as L

    return L


def _fn(name: str) -> Callable[..., Any] | None:
    return getattr(_launch(), name, None)


@dataclass
class LocalRunRef:
    """A run directory on this machine (what the fallback hands around)."""

    run_dir: Path
    host: str = LOCAL_HOST

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def name(self) -> str:
        return self.run_dir.name

    def __str__(self) -> str:
        return str(self.run_dir)


@dataclass
class RunRow:
    """One line of the runs table (mirrors ``engine.launch.RunInfo``)."""

    name: str
    host: str = LOCAL_HOST
    status: str = "pending"
    step: int = 0
    total_steps: int = 0
    last_loss: float | None = None
    started: float | None = None
    duration: float | None = None
    ref: Any = None
    error: str | None = None
    kind: str = ""  # "<stage>-<method>" (sft-lora, dpo-qlora…), from the run's config.toml
    parent: str | None = None  # the run this one resumed, and the step it resumed at
    parent_step: int | None = None
    children: list[str] = field(default_factory=list)  # the runs that resumed this one
    note: str = ""  # what the scheduler says (a Slurm run: job id, state, a pending job's reason)
    sweep: str | None = None  # the sweep this run is a trial of, its trial number, whether it is the best
    trial: int | None = None
    best: bool = False

    @classmethod
    def from_info(cls, info: Any) -> "RunRow":
        g = lambda k, d=None: getattr(info, k, info.get(k, d) if isinstance(info, dict) else d)  # noqa: E731
        return cls(
            name=str(g("name", "?")),
            host=str(g("host", LOCAL_HOST) or LOCAL_HOST),
            status=str(g("status", "pending") or "pending"),
            step=int(g("step", 0) or 0),
            total_steps=int(g("total_steps", 0) or 0),
            last_loss=g("last_loss"),
            started=g("started"),
            duration=g("duration"),
            ref=g("ref"),
            error=g("error"),
            note=str(((g("extra") or {}).get("slurm") or {}).get("text") or ""),
        )


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------


def run_name(ref: Any) -> str:
    n = getattr(ref, "name", None)
    if n:
        return str(n)
    d = run_dir(ref)
    return d.name if d else str(ref)


def run_dir(ref: Any) -> Path | None:
    """The run's directory on this machine (for a remote run: its local mirror), if any."""
    d = getattr(ref, "run_dir", None)
    if d is None and isinstance(ref, (str, os.PathLike)):
        d = ref
    return Path(d) if d is not None else None


def is_remote(ref: Any) -> bool:
    r = getattr(ref, "is_remote", None)
    if r is not None:
        return bool(r)
    return not is_local_host(run_host(ref))


def run_host(ref: Any) -> str:
    return str(getattr(ref, "host", None) or LOCAL_HOST)


def resolve(ref: Any, runs_dir: str | os.PathLike[str] = "runs") -> Any:
    """A RunRef for ``ref`` (a RunRef, a run directory, or a run name).  Local files only: cheap."""
    if not isinstance(ref, (str, os.PathLike, LocalRunRef)):
        return ref
    f = _fn("resolve_run")
    if f is not None:
        try:
            return f(str(ref), runs_dir=runs_dir)
        except TypeError:
            return f(str(ref))
        except Exception:
            pass
    if isinstance(ref, LocalRunRef):
        return ref
    p = Path(ref)
    cand = Path(runs_dir) / str(ref)
    return LocalRunRef(p if p.exists() or not cand.exists() else cand)


# --------------------------------------------------------------------------
# reading a run
# --------------------------------------------------------------------------


class LocalEventSource:
    """New complete records of a local ``events.jsonl`` since the last call."""

    def __init__(self, run_dir: Path):
        self.tailer = Tailer(Path(run_dir) / EVENTS_FILE)

    def read(self) -> list[dict[str, Any]]:
        return self.tailer.read()


class LogTailer:
    """New complete lines of a growing text file, resuming at a byte offset.

    On the first read of a big file only its last ``LOG_TAIL_BYTES`` are read.
    """

    def __init__(self, path: Path, tail_bytes: int = LOG_TAIL_BYTES):
        self.path = Path(path)
        self.offset: int | None = None
        self.tail_bytes = tail_bytes

    def exists(self) -> bool:
        return self.path.exists()

    def read(self, max_bytes: int = 1 << 20) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                if self.offset is None:
                    size = fh.seek(0, os.SEEK_END)
                    self.offset = max(0, size - self.tail_bytes)
                    if self.offset:  # start at a line boundary
                        fh.seek(self.offset)
                        fh.readline()
                        self.offset = fh.tell()
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        text = chunk[: end + 1].decode("utf-8", errors="replace")
        return [ln.rstrip("\r") for ln in text.split("\n")[:-1]]


@dataclass
class RunFeed:
    """Everything the monitor polls: events plus (when there is one) the worker log."""

    ref: Any
    events: Any
    log: Any | None = None  # object with .read() -> list[str]
    extras: dict[str, Any] = field(default_factory=dict)

    def read(self) -> tuple[list[dict[str, Any]], list[str] | None]:
        recs = self.events.read()
        lines = self.log.read() if self.log is not None else None
        return recs, lines


def open_feed(ref: Any) -> RunFeed:
    """Open the event (and log) source of a run.  May block (SSH)."""
    d = run_dir(ref)
    f = _fn("event_source")
    if f is not None and not isinstance(ref, LocalRunRef):
        src = f(ref)
    elif d is not None and not is_remote(ref):
        if not d.is_dir():
            raise FileNotFoundError(f"no run directory at {d}")
        src = LocalEventSource(d)
    else:
        raise FileNotFoundError(f"{run_name(ref)}: cannot read a remote run without engine.launch")
    log: Any | None = None
    if hasattr(src, "read_log"):
        log = _Callable(src.read_log)
    elif d is not None and (not is_remote(ref) or (d / LOG_FILE).exists()):
        log = LogTailer(d / LOG_FILE)
    return RunFeed(ref, src, log)


def feed_lost(feed: "RunFeed") -> bool:
    """Whether the source found the run's processes gone without an ``end`` record."""
    return bool(getattr(feed.events, "lost", False))


class _Callable:
    def __init__(self, fn: Callable[[], list[str]]):
        self.fn = fn

    def read(self) -> list[str]:
        return list(self.fn() or [])


def read_history(ref: Any) -> list[dict[str, Any]]:
    """Every record of a run so far (for overlays).  May block."""
    feed = open_feed(ref)
    out: list[dict[str, Any]] = []
    for _ in range(10_000):
        recs = feed.events.read()
        if not recs:
            break
        out.extend(recs)
    return out


# --------------------------------------------------------------------------
# listing and acting on runs
# --------------------------------------------------------------------------


def list_runs(runs_dir: str | os.PathLike[str] = "runs") -> list[RunRow]:
    f = _fn("list_runs")
    if f is not None:
        return [RunRow.from_info(i) for i in f(str(runs_dir))]
    return _local_list(Path(runs_dir))


def list_runs_safe(runs_dir: str | os.PathLike[str] = "runs") -> tuple[list[RunRow], str | None]:
    """``list_runs``; when the engine's listing fails, the local runs and one line saying why.  Each row says
    its stage and method, and which run it resumed (or was resumed as)."""
    try:
        rows, problem = list_runs(runs_dir), None
    except Exception as e:
        why = str(e) or e.__class__.__name__
        try:
            rows = _local_list(Path(runs_dir))
        except Exception:
            rows = []
        problem = f"listing runs failed ({why}); showing local run directories only"
    from tui.screens.sweep import group_sweeps

    return group_sweeps(link_runs(rows), runs_dir), problem


_KIND_CACHE: dict[Path, tuple[float, tuple[str, str | None, int | None]]] = {}


def run_kind(ref: Any) -> tuple[str, str | None, int | None]:
    """("<stage>-<method>", the run it resumed, the step it resumed at) from the run's config.toml (read once per
    change of the file); ("", None, None) when there is none."""
    d = run_dir(ref)
    p = d / CONFIG_FILE if d is not None else None
    try:
        mtime = p.stat().st_mtime if p is not None else None
    except OSError:
        mtime = None
    if p is None or mtime is None:
        return "", None, None
    got = _KIND_CACHE.get(p)
    if got is not None and got[0] == mtime:
        return got[1]
    import tomllib

    try:
        cfg = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    tr = cfg.get("trainer") or {}
    kind = "-".join(str(x) for x in (tr.get("stage"), tr.get("training_type")) if x)
    parent, step = parent_of((cfg.get("general") or {}).get("resume_from_checkpoint"))
    _KIND_CACHE[p] = (mtime, (kind, parent, step))
    return kind, parent, step


def parent_of(checkpoint: Any) -> tuple[str | None, int | None]:
    """``…/runs/<parent>/checkpoints/checkpoint-<step>`` → (parent run name, step); (None, None) otherwise."""
    if not checkpoint:
        return None, None
    ck = Path(str(checkpoint))
    if ck.parent.name != "checkpoints":
        return None, None
    step = ck.name.removeprefix("checkpoint-")
    return ck.parent.parent.name, int(step) if step.isdigit() else None


def link_runs(rows: list[RunRow]) -> list[RunRow]:
    """Each row's kind and parent (run_kind), and each parent's children among the rows."""
    by_name = {r.name: r for r in rows}
    for r in rows:
        if r.ref is not None:
            r.kind, r.parent, r.parent_step = run_kind(r.ref)
    for r in rows:
        if r.parent in by_name:
            by_name[r.parent].children.append(r.name)
    return rows


def newest_checkpoint(ref: Any) -> dict[str, Any] | None:
    """The newest complete checkpoint record of a run's events (the one a resume starts from), if any."""
    d = run_dir(ref)
    if d is None or not (d / EVENTS_FILE).exists():
        return None
    cks = [r for r in _read_all(d / EVENTS_FILE) if r.get("kind") == "checkpoint" and r.get("complete", True)
           and r.get("path")]
    return cks[-1] if cks else None


def history_before(parent: str, step: int, runs_dir: Path) -> list[dict[str, Any]]:
    """The log and eval records of run ``parent`` (in ``runs_dir``) up to ``step``: a resumed run's curves start
    with its parent's."""
    ev = runs_dir / parent / EVENTS_FILE
    if not ev.exists():
        return []
    return [r for r in _read_all(ev) if r.get("kind") in ("log", "eval") and int(r.get("step") or 0) <= step]


def _local_list(runs_dir: Path) -> list[RunRow]:
    rows: list[RunRow] = []
    if not runs_dir.is_dir():
        return rows
    for d in sorted(runs_dir.iterdir()):
        if not d.is_dir() or not ((d / EVENTS_FILE).exists() or (d / LAUNCH_FILE).exists()):
            continue
        s = summarize(_read_all(d / EVENTS_FILE))
        status = s.status
        if status in ("running", "pending") and not _alive(d):
            status = "lost" if s.status == "running" else "pending"
        end = s.ended or (time.time() if status == "running" else None)
        dur = (end - s.started) if (end and s.started) else None
        rows.append(RunRow(d.name, LOCAL_HOST, status, s.step, s.total_steps, s.last_loss, s.started, dur,
                           LocalRunRef(d), s.error))
    rows.sort(key=lambda r: r.started or 0, reverse=True)
    return rows


def _read_all(path: Path) -> list[dict[str, Any]]:
    t = Tailer(path)
    out: list[dict[str, Any]] = []
    while True:
        recs = t.read()
        if not recs:
            return out
        out.extend(recs)


def _launch_info(d: Path) -> dict[str, Any]:
    try:
        return json.loads((d / LAUNCH_FILE).read_text())
    except Exception:
        return {}


def _alive(d: Path) -> bool:
    info = _launch_info(d)
    pids = [p for p in [info.get("pid"), *(info.get("pids") or [])] if isinstance(p, int)]
    if not pids:
        return (d / EVENTS_FILE).exists() and time.time() - (d / EVENTS_FILE).stat().st_mtime < 120
    for p in pids:
        try:
            os.kill(p, 0)
            return True
        except PermissionError:
            return True
        except OSError:
            continue
    return False


def stop_run(ref: Any, grace: float = 15.0) -> str:
    """Stop a run (SIGTERM to its processes, SIGKILL after ``grace``: engine.launch.stop_run).  Blocks."""
    f = _fn("stop_run")
    if f is not None:
        return str(f(ref, grace=grace))
    # a recorded pid or process group proves nothing (pids are reused): only engine.launch, which finds the run's
    # processes by its token, may signal them
    raise RuntimeError(f"{run_name(ref)}: cannot stop a run without engine.launch")


def resume_run(ref: Any, runs_dir: str | os.PathLike[str] = "runs") -> tuple[Any, dict[str, Any]]:
    """Start a stopped or failed run again from its newest complete checkpoint, as a new run beside it
    (``engine.launch.resume_job``); → (the new run, the checkpoint event).  Blocks."""
    import engine.launch as L

    job, ck = L.resume_job(ref, runs_dir)
    return L.start_run(job), ck


def delete_run(ref: Any) -> None:
    """Delete a run's directory (refuses a running one).  Blocks."""
    f = _fn("delete_run")
    if f is not None:
        f(ref)
        return
    d = run_dir(ref)
    if d is None or is_remote(ref):
        raise RuntimeError(f"{run_name(ref)}: cannot delete a remote run without engine.launch")
    if (d / EVENTS_FILE).exists():
        st = summarize(_read_all(d / EVENTS_FILE)).status
        if st == "running" and _alive(d):
            raise RuntimeError(f"{d.name} is still running: stop it first")
    shutil.rmtree(d)


def config_path(ref: Any) -> Path | None:
    d = run_dir(ref)
    if d is None:
        return None
    p = d / CONFIG_FILE
    return p if p.exists() else None


def load_config(ref: Any) -> Any:
    """The run's job (``config.toml`` via ``engine.presets.load``).  Raises with one clear line."""
    p = config_path(ref)
    if p is None:
        where = run_host(ref)
        raise FileNotFoundError(
            f"{run_name(ref)}: no config.toml here" + (f" (the run is on {where})" if not is_local_host(where) else ""))
    from engine import presets

    return presets.load_run_config(p)

"""The one place the dashboard reaches the run engine (``engine.launch``).

The monitor and the runs screen talk only to this module; it adds what the dashboard shows beside
``engine.launch``'s listing (each run's kind, the resume and sweep links) and goes through ``engine.launch``'s
public functions for everything else, so local, Slurm and SSH runs alike follow their launch backend.
Everything here may block (files, SSH): call it from a worker thread, never from the event loop, except
:func:`resolve` (local files only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.schema import LOCAL_HOST, is_local_host
from engine.events import EVENTS_FILE, RunSummary, read_all
from engine.launch.rundir import CHECKPOINTS_DIR, CONFIG_FILE

#: On attach, only this much of the end of a long worker.log is shown (toolong-style).
LOG_TAIL_BYTES = 256 * 1024


def _launch() -> Any:
    """``engine.launch`` (imported on first use: the interface starts without it)."""
    import engine.launch as L

    return L


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
    return bool(getattr(ref, "is_remote", False))


def run_host(ref: Any) -> str:
    return str(getattr(ref, "host", None) or LOCAL_HOST)


def resolve(ref: Any, runs_dir: str | os.PathLike[str] = "runs") -> Any:
    """A RunRef for ``ref`` (a RunRef, a run directory, or a run name).  Local files only: cheap.  A folder that
    holds no run still gets one (opening it then says there is no run there)."""
    if not isinstance(ref, (str, os.PathLike)):
        return ref
    L = _launch()
    try:
        return L.resolve_run(str(ref), runs_dir=runs_dir)
    except L.LaunchError:
        p, cand = Path(ref), Path(runs_dir) / str(ref)
        d = p if p.exists() or not cand.exists() else cand
        return L.RunRef(name=d.name, run_dir=d)


# --------------------------------------------------------------------------
# reading a run
# --------------------------------------------------------------------------


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
    L = _launch()
    src = L.event_source(ref)
    log = L.run_paths(ref).log  # (a run on another host: its events only)
    return RunFeed(ref, src, LogTailer(log) if log is not None else None)


def feed_lost(feed: "RunFeed") -> bool:
    """Whether the source found the run's processes gone without an ``end`` record."""
    return bool(getattr(feed.events, "lost", False))


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


def list_runs(runs_dir: str | os.PathLike[str] = "runs") -> list[RunSummary]:
    return _launch().list_runs(str(runs_dir))


def list_runs_safe(runs_dir: str | os.PathLike[str] = "runs") -> tuple[list[RunSummary], str | None]:
    """``list_runs``; when the engine's listing fails (a host does not answer), what this machine's files say of
    every run and one line saying why.  Each row says its stage and method, and which run it resumed (or was
    resumed as)."""
    try:
        rows, problem = list_runs(runs_dir), None
    except Exception as e:  # noqa: BLE001 - any failure of the listing is said in one line, the rows still shown
        why = str(e) or e.__class__.__name__
        try:
            rows = _launch().list_runs(str(runs_dir), refresh_remote=False)
        except Exception:  # noqa: BLE001 - (the same line says the listing failed)
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
    if ck.parent.name != CHECKPOINTS_DIR:
        return None, None
    step = ck.name.removeprefix("checkpoint-")
    return ck.parent.parent.name, int(step) if step.isdigit() else None


def link_runs(rows: list[RunSummary]) -> list[RunSummary]:
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
    cks = [r for r in read_all(d / EVENTS_FILE) if r.get("kind") == "checkpoint" and r.get("complete", True)
           and r.get("path")]
    return cks[-1] if cks else None


def history_before(parent: str, step: int, runs_dir: Path) -> list[dict[str, Any]]:
    """The log and eval records of run ``parent`` (in ``runs_dir``) up to ``step``: a resumed run's curves start
    with its parent's."""
    ev = runs_dir / parent / EVENTS_FILE
    if not ev.exists():
        return []
    return [r for r in read_all(ev) if r.get("kind") in ("log", "eval") and int(r.get("step") or 0) <= step]


def stop_run(ref: Any, grace: float = 15.0) -> str:
    """Stop a run (SIGTERM to its processes, SIGKILL after ``grace``: engine.launch.stop_run).  Blocks."""
    return str(_launch().stop_run(ref, grace=grace))


def resume_run(ref: Any, runs_dir: str | os.PathLike[str] = "runs") -> tuple[Any, dict[str, Any]]:
    """Start a stopped or failed run again from its newest complete checkpoint, as a new run beside it
    (``engine.launch.resume_job``); → (the new run, the checkpoint event).  Blocks."""
    L = _launch()
    job, ck = L.resume_job(ref, runs_dir)
    return L.start_run(job), ck


def delete_run(ref: Any) -> None:
    """Delete a run's directory, and what it left on its target (refuses a running one).  Blocks."""
    _launch().delete_run(ref)


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

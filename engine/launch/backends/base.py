"""The launch backend interface and its registry (see the package's docstring)."""

from __future__ import annotations

import importlib
import pkgutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Protocol

from engine.schema import LOCAL_HOST
from engine.events import EVENTS_FILE, RunSummary
from engine.launch.rundir import (CONFIG_FILE, DEFAULT_BACKEND, LOG_FILE, REMOTE_FILE, LaunchError, LaunchRecord,
                                  RemoteRecord, RunRef, damaged)


class EventStream(Protocol):
    """What :meth:`Backend.tail` returns: new complete event records from a byte offset, local or remote alike."""

    offset: int
    error: str | None  # the last connection problem (being retried), if any

    def read(self) -> list[dict[str, Any]]: ...

    @property
    def done(self) -> bool: ...  # an ``end`` was read, or the run's processes are gone without one (``lost``)

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunPaths:
    """Where a run's files are: here (its directory, for a run on another machine the local mirror) and on its
    target."""

    run_dir: Path
    events: Path
    config: Path
    log: Path | None  # worker.log here; None when it is on the target only (read it with Backend.log)
    target: str  # the run directory where the run runs: a path here, or ``host:path``


class Backend(ABC):
    """One place runs live.  Subclass, set ``kind`` (recorded in ``launch.json`` as ``backend``: the run's backend
    from then on) and ``priority``, implement the abstract methods, and :func:`register` an instance."""

    kind: ClassVar[str]
    #: :func:`for_job` asks backends in this order (lower first); ``local``, which takes every job, is last
    priority: ClassVar[int] = 50
    #: the run's directory here mirrors one on another machine (``RunRef.is_remote``): the node runs its own backend
    mirrored: ClassVar[bool] = False

    # ---- choosing

    @abstractmethod
    def claims(self, res: dict[str, Any]) -> bool:
        """Whether this backend starts the job (its resolved values)."""

    def recognizes(self, launch: LaunchRecord, remote: RemoteRecord | None) -> bool:
        """Whether a run directory whose ``launch.json`` names no backend (one written by an older finetui) is
        this backend's, from its ``launch.json`` / ``remote.json``."""
        return False

    def host(self, launch: LaunchRecord, remote: RemoteRecord | None) -> str:
        """The host a run is listed on."""
        return LOCAL_HOST

    def gpu_hosts(self, res: dict[str, Any]) -> list[str] | None:
        """The hosts whose GPUs the job will run on, checked against it before it starts (``LOCAL_HOST``: this
        machine); None when they are not known from here (a scheduler places the job)."""
        return [LOCAL_HOST]

    # ---- the run

    @abstractmethod
    def start(self, job: Any, res: dict[str, Any], run_dir: Path, *, secrets: dict[str, str],
              start_at: float | None, progress: Callable[[str, int, int], None] | None = None) -> None:
        """Start the run detached in ``run_dir`` (which holds its ``config.toml``) and write its ``launch.json``
        (with ``backend`` = :attr:`kind`).  Raises LaunchError with one sentence; the caller removes the run
        directory when no ``launch.json`` was written."""

    def refresh(self, refs: list[RunRef], ended: bool = False) -> dict[str, dict[str, Any]]:
        """Ask the target about several runs at once (one call per host) before :meth:`status` is asked for each,
        those with an ``end`` record too when ``ended``; → run name → what :meth:`status` takes as ``fresh``."""
        return {}

    @abstractmethod
    def status(self, ref: RunRef, fresh: dict[str, Any] | None = None) -> RunSummary:
        """The run's record (:func:`listing`); ``fresh``: what :meth:`refresh` found for it."""

    @abstractmethod
    def stop(self, ref: RunRef, grace: float) -> str:
        """SIGTERM the run's processes, SIGKILL after ``grace``, verify none is left; → the run's final status."""

    @abstractmethod
    def tail(self, ref: RunRef, offset: int = 0) -> EventStream:
        """The run's events from ``offset`` on, until it ends."""

    def log(self, ref: RunRef, follow: bool = False, node: int | None = None) -> Iterator[bytes]:
        """The run's ``worker.log`` as it grows (``follow``: until the run ends).  Called eagerly: a bad ``node``
        raises LaunchError here, a failing stream while it is read."""
        if node not in (None, 0):
            raise LaunchError(f"run {ref.name} is a local run on one node: --node takes only 0")
        return _follow_file(ref.run_dir / LOG_FILE, self.tail(ref) if follow else None)

    def paths(self, ref: RunRef) -> RunPaths:
        d = ref.run_dir
        return RunPaths(run_dir=d, events=d / EVENTS_FILE, config=d / CONFIG_FILE, log=d / LOG_FILE, target=str(d))

    def delete(self, ref: RunRef) -> None:
        """Remove what the run left on its target (the caller removes its directory here)."""


def _follow_file(path: Path, src: EventStream | None) -> Iterator[bytes]:
    pos = 0
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            yield chunk
            pos += len(chunk)
        if src is None:
            return
        while src.read():
            pass
        if src.done and not chunk:
            return
        if not chunk:
            time.sleep(0.2)


def listing(ref: RunRef, s: RunSummary, status: str, launch: LaunchRecord, error: str | None,
            scheduler: dict[str, Any] | None = None) -> RunSummary:
    """The run's record from what its events say (``s``), its status, ``launch.json`` and error, and what a
    scheduler says of its job (``scheduler``: a Slurm job's state, shown with its reason while pending)."""
    started = s.started or launch.started
    end = s.ended if s.ended else (time.time() if status == "running" else None)
    s.name, s.host, s.ref, s.status, s.error = ref.name, ref.host, ref, status, error
    s.started, s.start_at = started, launch.start_at
    s.duration = (end - started) if (started and end and status != "scheduled") else None
    if scheduler:
        from engine.launch.slurm import describe

        s.extra["slurm"] = {**scheduler, "text": describe(scheduler)}
        if status == "pending":
            s.phase = f"{scheduler.get('reason')}"
    return s


# ------------------------------------------------------------------ the registry

_REGISTRY: dict[str, Backend] = {}
_LOADED = False


def register(backend: Backend) -> Backend:
    """Add (or replace) the backend of ``backend.kind``."""
    _REGISTRY[backend.kind] = backend
    return backend


def unregister(kind: str) -> None:
    _REGISTRY.pop(kind, None)


def _all() -> list[Backend]:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import engine.launch.backends as pkg

        for m in pkgutil.iter_modules(pkg.__path__):
            if m.name not in ("base",) and not m.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{m.name}")
    return sorted(_REGISTRY.values(), key=lambda b: b.priority)


def kinds() -> list[str]:
    return [b.kind for b in _all()]


def get(kind: str) -> Backend:
    for b in _all():
        if b.kind == kind:
            return b
    raise LaunchError(f"the launch backend {kind!r} is not part of this finetui (it has {', '.join(kinds())})")


def for_job(res: dict[str, Any], *, here: bool = False) -> Backend:
    """The backend that starts a job: the first that claims it.  ``here``: the job as a node runs its own part
    (on that machine: the remote agent), which only a backend that is not ``mirrored`` does."""
    if here:
        res = {**res, "launch.host": LOCAL_HOST, "launch.hosts": []}
    for b in _all():
        if not (here and b.mirrored) and b.claims(res):
            return b
    raise LaunchError("no launch backend takes this job")  # (never: local takes every job)


def recorded_kind(run_dir: Path, launch: LaunchRecord | None = None, remote: RemoteRecord | None = None) -> str:
    """The kind of backend a run directory's ``launch.json`` records; for one that records none (written by an
    older finetui), the first backend that recognizes it."""
    ok = not damaged(run_dir)
    if launch is None:
        launch = LaunchRecord.read(run_dir) if ok else LaunchRecord()
    if launch.backend:
        return launch.backend
    if remote is None and ok and (Path(run_dir) / REMOTE_FILE).exists():
        remote = RemoteRecord.read(run_dir)
    return next((b.kind for b in _all() if b.recognizes(launch, remote)), DEFAULT_BACKEND)


def for_dir(run_dir: Path) -> Backend:
    """The backend of a run directory on this machine (the remote agent's runs; local ones)."""
    return get(recorded_kind(run_dir))


def for_run(ref: RunRef) -> Backend:
    return get(ref.backend)

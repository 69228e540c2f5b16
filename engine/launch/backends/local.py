"""The ``local`` backend: a detached process group under the supervisor on this machine (``engine.launch.core``,
``engine.launch.supervisor``).  It takes every job no other backend claims.

It is also the base of the backends that run on the machine they are asked on (``slurm``): those implement the
run directory operations the remote agent uses on a node (:meth:`LocalBackend.start_here`, :meth:`dir_state`,
:meth:`stop_dir`, :meth:`alive`, :meth:`pids`), and the public operations follow from them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engine.schema import LOCAL_HOST
from engine.events import EVENTS_FILE, RunSummary, Tailer
from engine.launch import core
from engine.launch.backends.base import Backend, listing, register
from engine.launch.rundir import (LAUNCH_FILE, SUPERVISOR_FILE, LaunchRecord, RemoteRecord, RunRef, damaged,
                                  read_json)

#: a run directory whose files have not changed for this long, with no process recorded, is not starting
STALE_S = 10.0


class LocalBackend(Backend):
    kind = core.KIND
    priority = 100

    def claims(self, res: dict[str, Any]) -> bool:
        return True

    def recognizes(self, launch: LaunchRecord, remote: RemoteRecord | None) -> bool:
        return remote is None

    # ---- the run directory on this machine (also what the remote agent does on a node)

    def start_here(self, run_dir: Path, res: dict[str, Any], *, env: dict[str, str] | None = None,
                   host: str = LOCAL_HOST, start_at: float | None = None, cwd: str | None = None,
                   **node: Any) -> dict[str, Any]:
        """Start the run in ``run_dir`` on this machine (``node``: nnodes, node_rank, master_addr, master_port,
        rdzv, rdzv_id, hosts of a multi-node run); → ``launch.json``'s content."""
        return core.start_in_dir(run_dir, res, env=env, host=host, start_at=start_at, cwd=cwd, **node)

    def dir_state(self, run_dir: Path) -> dict[str, Any]:
        """status, alive, summary (RunSummary), launch, supervisor, events_size (and a scheduler's ``slurm``)."""
        return core.dir_state(run_dir)

    def stop_dir(self, run_dir: Path, grace: float) -> str:
        return core.stop_dir(run_dir, grace)

    def alive(self, info: dict[str, Any]) -> bool:
        """Whether any process of the run ``launch.json`` (``info``) describes is alive."""
        return core.info_alive(info)

    def pids(self, info: dict[str, Any]) -> list[int]:
        return core.info_pids(info)

    def recorded(self, info: dict[str, Any]) -> bool:
        """Whether ``launch.json`` (``info``) records what runs the run (its process group)."""
        return bool(info.get("pgid"))

    # ---- the interface

    def start(self, job: Any, res: dict[str, Any], run_dir: Path, *, secrets: dict[str, str],
              start_at: float | None, progress: Any = None) -> None:
        self.start_here(run_dir, res, env=secrets, start_at=start_at, cwd=os.getcwd())

    def status(self, ref: RunRef, fresh: dict[str, Any] | None = None) -> RunSummary:
        d = self.dir_state(ref.run_dir)
        s = d["summary"]
        return listing(ref, s, d["status"], LaunchRecord.from_dict(d["launch"]), s.error, d.get("slurm"))

    def stop(self, ref: RunRef, grace: float) -> str:
        return self.stop_dir(ref.run_dir, grace)

    def tail(self, ref: RunRef, offset: int = 0) -> "EventSource":
        return EventSource(ref, offset, self)


class EventSource(Tailer):
    """Events of a run on this machine: a :class:`engine.events.Tailer` that also knows when the run is over.

    ``done`` is true after an ``end`` record, or when the run's processes are gone without one (``lost``).
    """

    def __init__(self, ref: RunRef, offset: int = 0, backend: LocalBackend | None = None):
        super().__init__(ref.run_dir / EVENTS_FILE, offset)
        self.ref = ref
        self.backend = backend or LOCAL
        self.ended = False
        self.lost = False
        self.error: str | None = None
        self._checked = 0.0

    @property
    def done(self) -> bool:
        return self.ended or self.lost

    def read(self, max_bytes: int = 4 << 20) -> list[dict[str, Any]]:
        recs = super().read(max_bytes)
        if any(r.get("kind") == "end" for r in recs):
            self.ended = True
        elif not recs and not self.done and time.monotonic() - self._checked > 1.0:
            self._checked = time.monotonic()
            info = read_json(self.ref.run_dir / LAUNCH_FILE) if not damaged(self.ref.run_dir) else {}
            if not self.backend.alive(info) and (self.backend.recorded(info) or self._stale()):
                recs = super().read(max_bytes)
                if any(r.get("kind") == "end" for r in recs):
                    self.ended = True
                else:
                    self.lost = True
        return recs

    def _stale(self) -> bool:
        """No process recorded and no run file written for a while: nothing is going to write events."""
        newest = 0.0
        for f in (LAUNCH_FILE, EVENTS_FILE, SUPERVISOR_FILE):
            try:
                newest = max(newest, (self.ref.run_dir / f).stat().st_mtime)
            except OSError:
                continue
        return time.time() - newest > STALE_S

    def close(self) -> None:
        pass


LOCAL = register(LocalBackend())

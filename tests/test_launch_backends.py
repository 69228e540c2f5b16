"""The launch backend seam: a new target is one Backend subclass, registered; engine.launch's public API (start,
list, status, tail, logs, stop, delete) reaches it by the job and by the run, with no change elsewhere.

The test backend below runs a real process (the launch tests' stand-in worker, no torch) for jobs whose
``launch.host`` is ``seam-box``, and keeps its own record of what it did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import engine.launch as L
from engine.events import EVENTS_FILE, Tailer, summarize
from engine.launch import backends
from engine.launch.rundir import LAUNCH_FILE, LOG_FILE, LaunchRecord, RemoteRecord, has_end, read_json, read_records
from tests.fixtures_launch import FAKE_WORKER
from tests.test_launch_local import wait_for

TARGET = "seam-box"


class SeamStream(Tailer):
    @property
    def done(self) -> bool:
        return has_end(self.path.parent) is not None and self.offset >= self.path.stat().st_size

    error = None

    def close(self) -> None:
        pass


class SeamBackend(backends.Backend):
    kind = "seam"
    priority = 0

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.calls: list[tuple[str, str]] = []

    def claims(self, res: dict[str, Any]) -> bool:
        return res.get("launch.host") == TARGET

    def host(self, launch: LaunchRecord, remote: RemoteRecord | None) -> str:
        return launch.host or "?"

    def start(self, job, res, run_dir: Path, *, secrets, start_at, progress=None) -> None:
        self.calls.append(("start", run_dir.name))
        with open(run_dir / LOG_FILE, "ab") as log:
            p = subprocess.Popen([sys.executable, str(FAKE_WORKER), "--run-dir", str(run_dir), "--steps", "100000",
                                  "--delay", "0.05"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        self.procs[run_dir.name] = p
        LaunchRecord(backend=self.kind, host=TARGET, pid=p.pid, started=time.time()).write(run_dir)

    def status(self, ref, fresh=None):
        self.calls.append(("status", ref.name))
        s = summarize(read_records(ref.run_dir / EVENTS_FILE))
        p = self.procs.get(ref.name)
        status = s.status if s.ended else ("running" if p is not None and p.poll() is None else "lost")
        return backends.listing(ref, s, status, LaunchRecord.read(ref.run_dir), s.error)

    def stop(self, ref, grace: float) -> str:
        self.calls.append(("stop", ref.name))
        p = self.procs[ref.name]
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=grace)
        return str((has_end(ref.run_dir) or {}).get("outcome", "stopped"))

    def tail(self, ref, offset: int = 0):
        return SeamStream(ref.run_dir / EVENTS_FILE, offset)

    def delete(self, ref) -> None:
        self.calls.append(("delete", ref.name))


@pytest.fixture
def seam():
    b = backends.register(SeamBackend())
    try:
        yield b
    finally:
        backends.unregister(b.kind)
        for p in b.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_registered_backend_runs_a_job_through_the_public_api(seam, launch_job, tmp_path):
    runs = tmp_path / "runs"
    ref = L.start_run(launch_job(launch__host=TARGET, launch__device="cpu"))
    assert (ref.backend, ref.host) == ("seam", TARGET) and seam.calls == [("start", ref.name)]
    assert ref.run_dir.parent == runs and (ref.run_dir / "config.toml").exists()  # engine.launch's part
    assert read_json(ref.run_dir / LAUNCH_FILE)["backend"] == "seam"
    # tail: the process's own events, through event_source
    src = L.event_source(ref.name, runs_dir=runs)
    got: list[dict] = []
    wait_for(lambda: got.extend(src.read()) or any(r["kind"] == "log" for r in got))
    assert got[0]["kind"] == "start"
    # status and list: by the run (launch.json's backend), not by the job
    rows = L.list_runs(runs)
    assert [(r.name, r.host, r.status) for r in rows] == [(ref.name, TARGET, "running")]
    assert rows[0].ref.backend == "seam" and rows[0].step >= 1 and rows[0].duration is not None
    assert ("status", ref.name) in seam.calls
    # logs: the default follows the run's worker.log here
    (ref.run_dir / LOG_FILE).write_bytes(b"a line of the log\n")
    assert b"".join(L.log_stream(ref.name, runs_dir=runs)) == b"a line of the log\n"
    # a running run is not deleted
    with pytest.raises(L.LaunchError, match="stop it first"):
        L.delete_run(ref.name, runs)
    # stop: the backend's, the process gone, its end recorded
    assert L.stop_run(ref.name, grace=10, runs_dir=runs) == "stopped"
    assert seam.procs[ref.name].poll() is not None
    wait_for(lambda: src.read() is not None and src.done)
    assert L.run_info(ref.name, runs).status == "stopped"
    # delete: the backend cleans its target, engine.launch the run directory
    L.delete_run(ref.name, runs)
    assert seam.calls[-1] == ("delete", ref.name) and not ref.run_dir.exists()


def test_a_run_of_a_backend_this_finetui_lacks_is_listed_not_fatal(seam, launch_job, tmp_path):
    runs = tmp_path / "runs"
    ref = L.start_run(launch_job(launch__host=TARGET, launch__device="cpu"))
    L.stop_run(ref, grace=10)
    backends.unregister("seam")
    rows = L.list_runs(runs)
    assert [(r.name, r.status) for r in rows] == [(ref.name, "unknown")]
    assert "'seam' is not part of this finetui" in rows[0].error
    with pytest.raises(L.LaunchError, match="'seam' is not part of this finetui"):
        L.stop_run(ref.name, runs_dir=runs)


def test_every_launch_target_is_a_backend_of_the_registry():
    """The built-in targets, in the order jobs are offered to them; the node's own part of a remote job never goes
    to the mirroring backend."""
    assert backends.kinds() == ["ssh", "slurm", "local"]
    res = {"launch.host": "gpu1", "launch.hosts": [], "launch.launcher": "slurm"}
    assert backends.for_job(res).kind == "ssh"
    assert backends.for_job(res, here=True).kind == "slurm"
    assert backends.for_job({**res, "launch.launcher": "torchrun"}, here=True).kind == "local"
    assert backends.for_job({"launch.host": "local", "launch.hosts": ["a", "b"]}).kind == "ssh"
    # the GPUs a job is checked against before it starts: the nodes', unless a scheduler places it
    assert backends.for_job(res).gpu_hosts(res) is None
    assert backends.get("ssh").gpu_hosts({**res, "launch.launcher": "torchrun"}) == ["gpu1"]
    assert backends.get("local").gpu_hosts({}) == ["local"]

"""The ``ssh`` backend: a run on one or several other hosts (``launch.host`` names one, ``launch.hosts`` lists
nodes).  ``engine.launch.remote`` starts each node's part through ``engine.launch.remote_agent`` over the system
``ssh`` client — the agent runs the node's own backend (``local`` or ``slurm``) — and mirrors rank 0's events into
the local run directory, which holds ``remote.json``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterator

from engine.schema import is_remote_job
from engine.events import EVENTS_FILE, RunSummary, summarize
from engine.launch import remote as R
from engine.launch.backends.base import Backend, RunPaths, for_job, listing, register
from engine.launch.rundir import (CONFIG_FILE, LaunchError, LaunchRecord, RemoteRecord, RunRef, has_end,
                                  read_records)


class SshBackend(Backend):
    kind = "ssh"
    priority = 10
    mirrored = True

    def claims(self, res: dict[str, Any]) -> bool:
        return is_remote_job(res)

    def recognizes(self, launch: LaunchRecord, remote: RemoteRecord | None) -> bool:
        return remote is not None

    def host(self, launch: LaunchRecord, remote: RemoteRecord | None) -> str:
        if remote is None:
            return "?"
        # several nodes: all of them ("host" follows the node where rank 0 writes its events)
        return ",".join(remote.hosts) if len(remote.hosts) > 1 else (remote.host or "?")

    def gpu_hosts(self, res: dict[str, Any]) -> list[str] | None:
        if for_job(res, here=True).gpu_hosts(res) is None:  # the nodes' own backend places the job
            return None
        return list(res.get("launch.hosts") or []) or [res["launch.host"]]

    def start(self, job: Any, res: dict[str, Any], run_dir: Path, *, secrets: dict[str, str],
              start_at: float | None, progress: Any = None) -> None:
        R.start(job, res, run_dir, secrets=secrets, start_at=start_at, progress=progress, backend=self.kind)

    def refresh(self, refs: list[RunRef], ended: bool = False) -> dict[str, dict[str, Any]]:
        """Runs without an end (``ended``: every run): their status from the hosts (one call per host), new events
        mirrored; failed multi-node runs: the other nodes' errors, asked once."""
        pending = [r for r in refs if ended or not has_end(r.run_dir)]
        states = R.sync(pending) if pending else {}
        for r in refs:
            if r not in pending and len(r.remote.nodes) > 1 and r.remote.node_errors is None:
                try:
                    R.collect_node_errors(r)
                except LaunchError:
                    pass
        return states

    def status(self, ref: RunRef, fresh: dict[str, Any] | None = None) -> RunSummary:
        recs = read_records(ref.run_dir / EVENTS_FILE)
        s = summarize(recs)
        st = fresh or {}
        status = s.status if any(r.get("kind") == "end" for r in recs) else (st.get("status") or "unknown")
        err = s.error or st.get("error")
        node_errors = (ref.remote.node_errors if ref.remote else None) or {}
        if status == "failed" and node_errors:  # the cause is often on another node than rank 0's
            err = "; ".join([f"{h}: {m}" for h, m in node_errors.items()] + ([f"rank 0: {err}"] if err else []))
        return listing(ref, s, status, LaunchRecord.read(ref.run_dir), err, st.get("slurm"))

    def stop(self, ref: RunRef, grace: float) -> str:
        return R.stop(ref, grace)

    def tail(self, ref: RunRef, offset: int = 0) -> R.RemoteEventSource:
        return R.RemoteEventSource(ref, offset)

    def log(self, ref: RunRef, follow: bool = False, node: int | None = None) -> Iterator[bytes]:
        return _stream(R.log_stream(ref, follow, node=node))

    def paths(self, ref: RunRef) -> RunPaths:
        d, r = ref.run_dir, ref.remote or RemoteRecord()
        return RunPaths(run_dir=d, events=d / EVENTS_FILE, config=d / CONFIG_FILE, log=None,
                        target=f"{r.host}:{r.run_dir}")

    def delete(self, ref: RunRef) -> None:
        R.delete(ref)


def _stream(p: subprocess.Popen) -> Iterator[bytes]:
    """The bytes a remote ``log`` prints; a stream that fails (not: ended, lost, stopped here) raises LaunchError."""
    try:
        while True:
            b = p.stdout.read1(1 << 16) if hasattr(p.stdout, "read1") else p.stdout.read(1 << 16)
            if not b:
                break
            yield b
        rc = p.wait()
        if rc not in (0, 3, -15):
            raise LaunchError(p.stderr.read().decode(errors="replace").strip() or f"log stream failed ({rc})")
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait()


register(SshBackend())

"""Launching runs: local and SSH, detached, observable, stoppable.

Public API (the TUI and the CLI use only these)::

    start_run(job, run_dir=None, secrets=None) -> RunRef
    resume_job(ref) -> (JobConfig, checkpoint)  # a stopped / failed run from its last checkpoint
    list_runs(runs_dir="runs") -> list[RunSummary]
    run_info(ref, runs_dir="runs") -> RunSummary
    resolve_run(ref, runs_dir="runs") -> RunRef
    event_source(ref) -> EventStream          # .read() -> new records, .offset, .done
    log_stream(ref, follow=False, node=None)  # -> the worker.log's bytes as they come
    run_paths(ref) -> RunPaths                # where its files are, here and on its target
    upload_meter(show) -> progress            # start_run's progress=: each host's upload as one line
    stop_run(ref, grace=15.0) -> str          # the run's final status
    delete_run(ref)

Each operation goes to the run's launch backend (``engine.launch.backends``: local, slurm, ssh), chosen by the
job when it starts and recorded in its ``launch.json``; this module holds what is the same for every backend
(checking the job, the run directory, resolving names, the listing).  A local run is started detached (its own
session, stdin from /dev/null, output to ``worker.log``) under a small supervisor process
(``engine.launch.supervisor``) that waits for a scheduled start, starts the worker command and records an ``end``
when the worker could not.  Remote runs are started by the same code on the remote host
(``engine.launch.remote_agent``) over the system ``ssh`` client; they are recorded locally in ``runs/<name>/``
with a ``remote.json`` and an events mirror.  No torch import here.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from engine import userfiles
from engine.schema import RUNS_DIR, JobConfig, is_local_host, is_remote_job
from engine.events import EVENTS_FILE, RunSummary
from engine.launch import backends
from engine.launch.backends import EventStream, RunPaths
from engine.launch.backends.local import EventSource
from engine.launch.rundir import (CONFIG_FILE, LAUNCH_FILE, REMOTE_FILE, LaunchError, LaunchRecord, RemoteRecord,
                                  RunRef, damaged, default_name, has_end, read_records, unique_dir, valid_name)
from engine.launch.ssh import SSHError

__all__ = ["start_run", "resume_job", "list_runs", "run_info", "resolve_run", "event_source", "log_stream",
           "run_paths", "stop_run", "delete_run", "RunRef", "RunSummary", "RunPaths", "LaunchError", "SSHError",
           "EventSource", "EventStream", "is_remote_job", "parse_start_at"]

def parse_start_at(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M").timestamp()
    except ValueError:
        raise LaunchError(f"launch.start_at: {text!r} is not a time (allowed: YYYY-mm-dd HH:MM)") from None


def _absolutize_data(job: JobConfig, res: dict[str, Any]) -> None:
    from engine.datapaths import map_paths

    remote = is_remote_job(res)

    def absolute(v: str) -> str:
        if v.startswith(("s3://", "finetui:")):
            return v
        p = Path(v).expanduser()
        if remote and not p.exists():
            return v  # a file on the remote host, ~ its home there (engine.launch.remote looks for it)
        return str(p if p.is_absolute() else p.resolve())

    for name in ("data.train_path", "data.validation_path"):
        v = res.get(name)
        if isinstance(v, str) and v and map_paths(v, absolute) != v:
            job.values[name] = map_paths(v, absolute)


# ------------------------------------------------------------------ start

def fit_to_gpus(job: JobConfig) -> list[str]:
    """The job against the GPUs of the hosts it will run on (``nvidia-smi``, no torch; a host without it is not
    checked here — the worker checks on the node).  Unset ``launch.procs_per_node`` on a host with several GPUs
    becomes one rank per visible GPU (→ a note saying so); what the GPUs cannot do raises ConfigError, one line
    per problem.  CPU jobs are not looked at."""
    from engine import gpus as G
    from engine.schema import ConfigError, Problem

    res = job.resolved()
    hosts = backends.for_job(res).gpu_hosts(res) if res.get("launch.device") != "cpu" else None
    if not hosts:
        return []
    found = [G.probe(None if is_local_host(h) else h) for h in hosts[:1]]
    notes = []
    n = G.default_procs(job, found[0])
    if n:
        job.values["launch.procs_per_node"] = n
        where = "this machine" if is_local_host(hosts[0]) else hosts[0]
        notes.append(f"launch.procs_per_node is unset and {where} has {G.describe(found[0] or [])} visible: "
                     f"{n} ranks, one per GPU (set launch.procs_per_node to choose)")
        res = job.resolved()
    found += [G.probe(h) for h in hosts[1:]]
    probs = []
    for h, gpus in zip(hosts, found):
        if gpus is not None:
            where = "this machine" if is_local_host(h) else str(h)
            probs += [Problem(f, m, a) for f, m, a in G.problems(res, gpus, where)]
    if probs:
        raise ConfigError(probs)
    return notes


def start_run(job: JobConfig, *, run_dir: Path | None = None, secrets: dict | None = None,
              progress: Any = None) -> RunRef:
    """Validate, create the run directory and start the run detached (locally or over SSH).

    ``progress(host, bytes_sent, bytes_total)`` is called while local data is uploaded to a remote host."""
    from engine import presets

    from engine.data.loader import check_data_before_launch

    job = job.copy()
    notes = fit_to_gpus(job)
    res = job.validate()
    _absolutize_data(job, res)
    res = job.resolved()
    check_data_before_launch(res)  # before anything of the run exists: a missing or broken file is one line
    start_at = parse_start_at(res.get("launch.start_at"))
    if start_at is not None and start_at < time.time() - 60:
        raise LaunchError(f"launch.start_at: {res.get('launch.start_at')} is in the past (allowed: a time from now on, "
                          f"YYYY-mm-dd HH:MM local time; leave it unset to start now)")
    secrets = {**(job.secrets or {}), **(secrets or {})}
    uri = res.get("tracking.mlflow_tracking_uri")
    if uri:  # user:password@ in the URI: kept in the run's process environment only, never in its files
        from engine.redact import uri_credentials

        clean, creds = uri_credentials(str(uri))
        if creds:
            job.values["tracking.mlflow_tracking_uri"] = clean
            res = job.resolved()
            secrets = {**creds, **secrets}
    backend = backends.for_job(res)
    try:
        if run_dir is not None:
            run_dir = Path(run_dir).expanduser().resolve()
            if run_dir.exists() and not run_dir.is_dir():
                raise LaunchError(f"--run-dir: {run_dir} is an existing file, not a folder; choose another run "
                                  "directory")
            if run_dir.exists() and any(run_dir.iterdir()):
                raise LaunchError(f"{run_dir} already exists and is not empty; choose another run directory")
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            name = res.get("launch.run_name") or default_name(res)
            if not valid_name(name):
                raise LaunchError(f"launch.run_name: {name!r} cannot name a folder")
            runs_dir = Path(res.get("launch.runs_dir") or RUNS_DIR).expanduser().resolve()
            try:
                run_dir = unique_dir(runs_dir, name)
            except OSError as e:
                raise LaunchError(f"launch.runs_dir: cannot create a run directory in {runs_dir} "
                                  f"({userfiles.os_reason(e)})") from None
    except OSError as e:  # the run directory given: a part of it is a file, not writable, too long
        raise LaunchError(f"--run-dir: cannot create {run_dir} ({userfiles.os_reason(e)})") from None
    try:
        presets.save(job, run_dir / CONFIG_FILE, resolved=True)
        if notes:
            from engine.events import EventWriter

            with EventWriter(run_dir / EVENTS_FILE) as ev:
                for n in notes:
                    ev.emit("status", 0, phase="launching", text=n, level="info")
        backend.start(job, res, run_dir, secrets={str(k): str(v) for k, v in secrets.items()}, start_at=start_at,
                      progress=progress)
    except BaseException:
        if not (run_dir / LAUNCH_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return resolve_run(str(run_dir))


def resume_job(ref: str | RunRef, runs_dir: str | os.PathLike[str] = RUNS_DIR) -> tuple[JobConfig, dict[str, Any]]:
    """The job that resumes a stopped, failed or lost run from its newest complete checkpoint: the run's own
    configuration, on the same host, into a new run directory beside it (the old one is left as it is) with
    ``general.resume_from_checkpoint`` set — the trainer restores the weights, optimizer, scheduler and step.
    → (job, the checkpoint event resumed from).  Raises LaunchError with one sentence."""
    from engine import presets
    from engine.train.checkpoints import is_complete

    ref = resolve_run(ref, runs_dir)
    info = run_info(ref, runs_dir, refresh_remote=not has_end(ref.run_dir))  # (an ended remote run: no SSH)
    if info.status in ("running", "scheduled", "pending"):
        raise LaunchError(f"run {ref.name} is {info.status}; stop it first (finetui stop {ref.name})")
    if info.status == "completed":
        raise LaunchError(f"run {ref.name} completed; there is nothing to resume (open its config as a new job to "
                          f"train it again: c on the runs screen)")
    cks = [r for r in read_records(ref.run_dir / EVENTS_FILE)
           if r.get("kind") == "checkpoint" and r.get("complete", True) and r.get("path")]
    if not ref.is_remote:  # (a remote run's checkpoints are looked at by its worker)
        cks = [r for r in cks if is_complete(Path(r["path"]))]
    if not cks:
        raise LaunchError(f"run {ref.name} has no complete checkpoint to resume from (eval.checkpoint_strategy "
                          f"saves them); open its config as a new job to train it again")
    ck = cks[-1]
    try:
        job = presets.load_run_config(ref.run_dir / CONFIG_FILE)
    except Exception as e:  # noqa: BLE001 - one sentence
        raise LaunchError(f"run {ref.name}: its {CONFIG_FILE} does not load ({e})") from None
    for name, value in (ref.remote.data_sources if ref.remote else {}).items():
        job.values[name] = value  # the local files it was started from (the config holds the uploaded copies)
    for name in ("launch.run_name", "launch.start_at"):
        job.values.pop(name, None)
    job.values["launch.runs_dir"] = str(ref.run_dir.parent)
    job.values["general.resume_from_checkpoint"] = str(ck["path"])
    job.name = f"{ref.name}, resumed from step {ck.get('step')}"
    return job, ck


# ------------------------------------------------------------------ find

def _ref_for_dir(d: Path) -> RunRef:
    ok = not damaged(d)
    remote = RemoteRecord.read(d) if ok and (d / REMOTE_FILE).exists() else None
    launch = LaunchRecord.read(d) if ok else LaunchRecord()
    kind = backends.recorded_kind(d, launch, remote)
    try:
        host = backends.get(kind).host(launch, remote)
    except LaunchError:  # (a backend this finetui does not have: its run is listed as damaged)
        host = "?"
    return RunRef(name=d.name, run_dir=d.resolve(), host=host, remote=remote, backend=kind)


def resolve_run(ref: str | RunRef | os.PathLike[str], runs_dir: str | os.PathLike[str] = RUNS_DIR) -> RunRef:
    """A run by name (in ``runs_dir``) or by path."""
    if isinstance(ref, RunRef):
        return ref
    s = str(ref)
    cands = [Path(runs_dir).expanduser() / s, Path(s).expanduser()]
    for d in cands:
        if d.is_dir() and any((d / f).exists() for f in (LAUNCH_FILE, REMOTE_FILE, EVENTS_FILE, CONFIG_FILE)):
            return _ref_for_dir(d)
    # a unique prefix of a run name
    base = Path(runs_dir).expanduser()
    if base.is_dir() and s and "/" not in s:
        hits = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(s))
        if len(hits) == 1:
            return _ref_for_dir(hits[0])
        if len(hits) > 1:
            raise LaunchError(f"{s!r} names {len(hits)} runs in {base}: {', '.join(h.name for h in hits[:5])}")
    raise LaunchError(f"no run {s!r} in {base} (give a run name from `finetui runs` or a run directory)")


def _info_isolated(ref: RunRef, fresh: dict[str, Any] | None = None) -> RunSummary:
    """:func:`_info`, but a run directory damaged in a way nobody foresaw is listed as damaged (its traceback in a
    crash log) instead of breaking the listing of every other run."""
    try:
        return _info(ref, fresh)
    except Exception as e:  # noqa: BLE001 - one run's files must not break the list (see the docstring)
        from engine.errors import crash_log

        return RunSummary(name=ref.name, host=ref.host, status="damaged", ref=ref,
                          error=f"cannot read the run's files ({type(e).__name__}; details in {crash_log(e)})")


def _info(ref: RunRef, fresh: dict[str, Any] | None = None) -> RunSummary:
    why = damaged(ref.run_dir)
    if why and not has_end(ref.run_dir):
        return RunSummary(name=ref.name, host=ref.host, status="damaged", ref=ref, error=why)
    try:
        backend = backends.for_run(ref)
    except LaunchError as e:  # a run of a backend this finetui does not have: listed, with why it is not known
        return RunSummary(name=ref.name, host=ref.host, status="unknown", ref=ref, error=str(e))
    return backend.status(ref, fresh)


def run_info(ref: str | RunRef, runs_dir: str | os.PathLike[str] = RUNS_DIR, refresh_remote: bool = True) -> RunSummary:
    """One run's record (a run on other hosts: asked there unless ``refresh_remote`` is false)."""
    ref = resolve_run(ref, runs_dir)
    fresh = backends.for_run(ref).refresh([ref], ended=True) if refresh_remote else {}
    return _info(ref, fresh.get(ref.name))


def list_runs(runs_dir: str | os.PathLike[str] = RUNS_DIR, *, refresh_remote: bool = True) -> list[RunSummary]:
    """Every run in ``runs_dir``, newest first (remote runs: status asked over SSH, events mirrored)."""
    base = Path(runs_dir).expanduser()
    if not base.is_dir():
        return []
    refs = []
    for d in base.iterdir():
        if d.is_dir() and any((d / f).exists() for f in (LAUNCH_FILE, REMOTE_FILE, EVENTS_FILE)):
            refs.append(_ref_for_dir(d))
    fresh: dict[str, dict[str, Any]] = {}
    if refresh_remote:
        by_kind: dict[str, list[RunRef]] = {}
        for r in refs:
            by_kind.setdefault(r.backend, []).append(r)
        for kind, rs in by_kind.items():
            try:
                fresh.update(backends.get(kind).refresh(rs))
            except LaunchError:  # (a backend this finetui does not have: _info lists its runs as unknown)
                continue
    out = [_info_isolated(r, fresh.get(r.name)) for r in refs]
    out.sort(key=lambda i: (i.started or i.start_at or 0), reverse=True)
    return out


# ------------------------------------------------------------------ events, logs, paths

def event_source(ref: str | RunRef, offset: int = 0, runs_dir: str | os.PathLike[str] = RUNS_DIR) -> EventStream:
    """New complete event records since the last call, from a byte offset (local or remote alike)."""
    ref = resolve_run(ref, runs_dir)
    if not ref.run_dir.is_dir():
        raise LaunchError(f"no run directory at {ref.run_dir}")
    return backends.for_run(ref).tail(ref, offset)


def log_stream(ref: str | RunRef, follow: bool = False, node: int | None = None,
               runs_dir: str | os.PathLike[str] = RUNS_DIR) -> Iterator[bytes]:
    """The run's ``worker.log`` (of node ``node`` of a multi-node run; default: where rank 0 runs), as it grows
    until the run ends when ``follow``.  A bad ``node`` raises LaunchError at once, a failing stream while read."""
    ref = resolve_run(ref, runs_dir)
    return backends.for_run(ref).log(ref, follow, node)


def run_paths(ref: str | RunRef, runs_dir: str | os.PathLike[str] = RUNS_DIR) -> RunPaths:
    """Where the run's files are: here (for a run on another host: the mirror) and on its target."""
    ref = resolve_run(ref, runs_dir)
    return backends.for_run(ref).paths(ref)


def upload_meter(show: Callable[[str, int, int, str], None]) -> Callable[[str, int, int], None]:
    """A ``progress`` for :func:`start_run` that passes ``show(host, sent, total, text)`` each host's upload line
    (percent, MB, MB/s, time left): what the CLI and the TUI both say (``engine.launch.remote.upload_meter``)."""
    from engine.launch.remote import upload_meter as meter

    return meter(show)


# ------------------------------------------------------------------ stop / delete

def stop_run(ref: str | RunRef, grace: float = 15.0, runs_dir: str | os.PathLike[str] = RUNS_DIR) -> str:
    """SIGTERM every rank's process group, SIGKILL after ``grace``, verify none is left; → final status."""
    ref = resolve_run(ref, runs_dir)
    return backends.for_run(ref).stop(ref, grace)


def delete_run(ref: str | RunRef, runs_dir: str | os.PathLike[str] = RUNS_DIR) -> None:
    """Remove a finished run (what it left on its target too). A running run must be stopped first."""
    ref = resolve_run(ref, runs_dir)
    info = run_info(ref, runs_dir)
    if info.status in ("running", "scheduled", "pending"):
        raise LaunchError(f"run {ref.name} is {info.status}; stop it first (finetui stop {ref.name})")
    backends.for_run(ref).delete(ref)
    shutil.rmtree(ref.run_dir, ignore_errors=True)

"""Launch backends: one interface for every place a run can live.

A backend starts a run, says its status, stops it, tails its events and its log, knows where its files are, and
deletes what the run left on its target (:class:`Backend`).  ``engine.launch`` (start_run, list_runs,
event_source, stop_run, delete_run, resume_job, log_stream) picks the backend by the job (:func:`for_job`: the
first, in ``priority`` order, that claims it) or by the run (:func:`for_run`: the kind its ``launch.json``
records) and never switches on a host or a launcher itself; the remote agent does the same on the node
(:func:`for_job` with ``here=True``, :func:`for_dir`).

Built in, in the order they are asked:

- ``ssh`` (``ssh.py``): a run on one or several other hosts, started there by ``engine.launch.remote_agent`` over
  the system ``ssh`` client (which runs the node's own backend), its events mirrored into the local run directory;
- ``slurm`` (``slurm.py``): a batch job submitted with ``sbatch`` where it runs (``engine.launch.slurm``);
- ``local`` (``local.py``): a detached process group under the supervisor on this machine (``engine.launch.core``).

A new target is one module in this folder: a :class:`Backend` subclass and a call to :func:`register`.  Every
module here is imported on first use.  No torch import.
"""

from __future__ import annotations

from engine.launch.backends.base import (Backend, EventStream, RunPaths, for_dir, for_job, for_run, get, kinds,
                                         listing, recorded_kind, register, unregister)

__all__ = ["Backend", "EventStream", "RunPaths", "for_dir", "for_job", "for_run", "get", "kinds", "listing",
           "recorded_kind", "register", "unregister"]

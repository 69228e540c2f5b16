"""The detached keeper of one run: ``python -m engine.launch.supervisor RUN_DIR``.

Started in its own session (setsid) with output going to ``worker.log``.  It
waits for ``start_at`` when the run is scheduled, starts the worker command from
``launch.json`` (same process group, so a stop reaches every rank), waits for
it, and when the worker ended without an ``end`` record appends one (``stopped``
after a SIGTERM, else ``failed`` with the tail of worker.log).  ``supervisor.json``
holds its phase: waiting, running, exited.  Standard library only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.events import EVENTS_FILE
from engine.launch.rundir import (LAUNCH_FILE, SUPERVISOR_FILE, append_end_if_missing, has_end, log_tail,
                                  read_json, update_json)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0]).resolve()
    info = read_json(run_dir / LAUNCH_FILE)
    state = run_dir / SUPERVISOR_FILE
    stop = {"requested": False}
    child: dict[str, subprocess.Popen | None] = {"p": None}

    def on_term(signum, frame):  # noqa: ANN001
        stop["requested"] = True
        p = child["p"]
        if p is not None and p.poll() is None:
            try:  # the group got it too; make sure the worker's own group (if it made one) does
                os.kill(p.pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    update_json(state, pid=os.getpid(), pgid=os.getpgrp(), phase="waiting" if info.get("start_at") else "starting",
                t=time.time())

    start_at = info.get("start_at")
    if start_at:
        print(f"finetui: run scheduled for {time.strftime('%Y-%m-%d %H:%M', time.localtime(start_at))}", flush=True)
        while time.time() < float(start_at):
            if stop["requested"]:
                append_end_if_missing(run_dir, "stopped", None)
                update_json(state, phase="exited", exit_code=None, cancelled=True, t=time.time())
                return 0
            time.sleep(min(0.5, max(0.01, float(start_at) - time.time())))
    if stop["requested"]:
        append_end_if_missing(run_dir, "stopped", None)
        update_json(state, phase="exited", exit_code=None, cancelled=True, t=time.time())
        return 0

    cmd = [str(a) for a in info.get("command") or []]
    if start_at and int(info.get("nnodes") or 1) == 1 and info.get("master_port") is None and "--master_port" in cmd:
        # a single-node port was picked free when the run was scheduled; pick it again now that it starts
        i = cmd.index("--master_port") + 1
        if i < len(cmd) and cmd[i].isdigit():
            cmd[i] = str(_free_port())
            update_json(run_dir / LAUNCH_FILE, command=cmd)
    cwd = info.get("cwd") or str(run_dir)
    try:
        p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL)
    except OSError as e:
        append_end_if_missing(run_dir, "failed", f"cannot start the worker: {e}")
        update_json(state, phase="exited", exit_code=None, t=time.time())
        return 1
    child["p"] = p
    update_json(state, phase="running", worker_pid=p.pid, started=time.time())
    from engine.telemetry import Sampler

    sampler = Sampler(run_dir)  # GPU telemetry into the events, from here, not from the training loop
    sampler.start()
    while True:
        try:
            code = p.wait()
            break
        except InterruptedError:
            continue
    sampler.stop()
    # A launcher may exit before its ranks (DeepSpeed's returns at once on SIGTERM while the ranks
    # still save): wait for every process of the run, or the worker's own end, before judging.
    _wait_for_ranks(run_dir, info.get("token"), RANKS_GRACE)
    # multi-node: rank 0 (and so the events) ran on another node; this node finished its part.
    # Written with the phase, in one update: a reader that sees "exited" sees node_done with it
    node_done = code == 0 and int(info.get("nnodes") or 1) > 1 and not stop["requested"] and not _has_events(run_dir)
    update_json(state, phase="exited", exit_code=code, ended=time.time(), **({"node_done": True} if node_done else {}))
    if node_done:
        return 0
    if not has_end(run_dir):
        if stop["requested"] or code in (-signal.SIGTERM, 128 + signal.SIGTERM, -signal.SIGINT):
            append_end_if_missing(run_dir, "stopped", None)
        else:
            tail = log_tail(run_dir, 8000).strip().splitlines()
            last = _reason(tail)
            append_end_if_missing(run_dir, "failed",
                                  f"the worker exited with code {code} without finishing"
                                  + (f": {last.strip()[:300]}" if last else ""),
                                  traceback="\n".join(tail[-20:]))
    return 0


RANKS_GRACE = 60.0  # DeepSpeed's launcher SIGKILLs its ranks 30 s after a SIGTERM


def _wait_for_ranks(run_dir: Path, token: str | None, limit: float) -> None:
    from engine.launch.procs import token_pids

    deadline = time.monotonic() + limit
    while token and token_pids(token) and not has_end(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reason(lines: list[str]) -> str:
    """The line of a worker.log tail that says why: the worker's own ``error: …`` line, else the last line that
    names an error, else the last line that is not torchrun's decoration (``=====``, tracebacks' carets)."""
    text = [ln.strip() for ln in lines if ln.strip()]
    for ln in reversed(text):
        if ln.startswith("error: "):
            return ln[len("error: "):]
    plain = [ln for ln in text if ln.strip("=-^~*# ") and not ln.startswith(("File \"", "[rank", "time ", "host ",
                                                                              "rank ", "exitcode ", "error_file",
                                                                              "traceback "))]
    for ln in reversed(plain):
        if "Error" in ln or "error" in ln:
            return ln
    return plain[-1] if plain else ""


def _has_events(run_dir: Path) -> bool:
    try:
        return (run_dir / EVENTS_FILE).stat().st_size > 0
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())

"""Process helpers: detached spawn, process-group liveness, stop.

Liveness reads ``/proc`` (a zombie does not count: in containers PID 1 often
never reaps); other systems fall back to ``killpg(pgid, 0)``.  Standard library
only.

A run is more than its process group: torchrun starts every rank in a session of
its own (``start_new_session=True`` in torch.distributed.elastic), so a SIGKILL
to the supervisor's group would orphan the ranks.  Every process of a run
therefore carries ``FINETUI_RUN_TOKEN=<token>`` in its environment (inherited,
whatever sessions it makes), and :func:`run_pids` finds them by it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, starttime) of a process, or None when it does not exist."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    # rest[0] = state (field 3), rest[2] = pgrp (field 5), rest[19] = starttime (field 22)
    try:
        return rest[0], int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if _PROC.is_dir():
        st = _stat(pid)
        return st is not None and st[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_pids(pgid: int | None) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    if not pgid or pgid <= 1:
        return []
    if _PROC.is_dir():
        out = []
        for d in _PROC.iterdir():
            if not d.name.isdigit():
                continue
            st = _stat(int(d.name))
            if st and st[1] == pgid and st[0] not in ("Z", "X"):
                out.append(int(d.name))
        return sorted(out)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        return [pgid]
    return [pgid]


def group_alive(pgid: int | None) -> bool:
    return bool(group_pids(pgid))


#: The environment variable that marks every process of one run (see the module doc).
TOKEN_ENV = "FINETUI_RUN_TOKEN"


_tokens: tuple[float, dict[int, str]] = (-1e9, {})


def _token_table(max_age: float) -> dict[int, str]:
    """pid → run token of every live process of this user that has one (one pass over /proc, cached
    ``max_age`` seconds so that listing many runs costs one scan)."""
    global _tokens
    now = time.monotonic()
    if 0.0 <= now - _tokens[0] <= max_age:  # (a stamp ahead of the clock is no scan of now: scan again)
        return _tokens[1]
    prefix = f"{TOKEN_ENV}=".encode()
    me = os.getpid()
    table: dict[int, str] = {}
    for d in _PROC.iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        i = env.find(prefix)
        if i < 0 or (i > 0 and env[i - 1] != 0):
            continue
        val = env[i + len(prefix):].split(b"\0", 1)[0].decode("ascii", "replace")
        st = _stat(int(d.name))
        if st and st[0] not in ("Z", "X"):
            table[int(d.name)] = val
    _tokens = (now, table)
    return table


def token_pids(token: str | None, max_age: float = 0.0) -> list[int]:
    """Live processes of this user whose environment holds ``FINETUI_RUN_TOKEN=<token>``."""
    if not token or not _PROC.is_dir():
        return []
    return sorted(pid for pid, t in _token_table(max_age).items() if t == token)


def process_token(pid: int) -> str | None:
    """The run token in a process's environment (None: none, not ours to read, or gone)."""
    try:
        env = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = f"{TOKEN_ENV}=".encode()
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode("ascii", "replace")
    return None


def start_time(pid: int | None) -> int | None:
    """A process's start time (clock ticks after boot, field 22 of ``/proc/PID/stat``): with the pid, it names
    one process for good — a reused pid has another start time.  None when unknown."""
    st = _stat(pid) if pid and _PROC.is_dir() else None
    return st[2] if st else None


def run_pids(pgid: int | None, token: str | None = None, max_age: float = 0.0,
             started: int | None = None) -> list[int]:
    """Every live process of a run: those carrying its token.  A recorded pid or process group alone proves
    nothing (pids are reused); without a token (a run recorded before tokens), the group counts only while its
    leader is the very process recorded (``started``: its start time).  Without ``/proc``: the group."""
    if not _PROC.is_dir():
        return [pgid] if pgid and pgid > 1 and _killpg_alive(pgid) else []
    if token:
        pids = token_pids(token, max_age)
        if not pids and max_age > 0 and pgid and process_token(pgid) == token and pid_alive(pgid):
            pids = token_pids(token, 0.0)  # a scan from before the run started: look again
        return pids
    if started is not None and pgid and start_time(pgid) == started:
        return group_pids(pgid)
    return []


def run_alive(pgid: int | None, token: str | None = None, max_age: float = 0.0, started: int | None = None) -> bool:
    """Whether a process of the run is alive; ``max_age`` > 0 accepts a token scan that recent (status
    listings), 0 scans now (stop and its verification)."""
    return bool(run_pids(pgid, token, max_age, started))


def _killpg_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(p: subprocess.Popen) -> None:
    threading.Thread(target=p.wait, daemon=True, name=f"reap-{p.pid}").start()


def spawn_detached(argv: list[str], *, cwd: str | os.PathLike[str], log_path: str | os.PathLike[str],
                   env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start ``argv`` in a new session (setsid), stdin /dev/null, output appended to ``log_path``.

    Returns (pid, pgid).  The child is reaped by a daemon thread, so a long-lived
    caller (the TUI) never keeps a zombie that would look alive.
    """
    with open(log_path, "ab") as log:
        p = subprocess.Popen(argv, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True, close_fds=True)
    _reap(p)
    return p.pid, p.pid


def signal_run(pids: list[int], sig: int, token: str | None) -> None:
    """Send ``sig`` to each of ``pids`` that still carries the run's ``token`` (checked through a pidfd, so a pid
    reused between the check and the signal is never hit); without a token, to each as it is."""
    for pid in pids:
        fd = None
        if token and hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except OSError:  # (a kernel without pidfds: the check below, then kill)
                fd = None
        try:
            if token and _PROC.is_dir() and process_token(pid) != token:
                continue  # not (or no longer) a process of this run
            if fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        finally:
            if fd is not None:
                os.close(fd)


def stop_group(pgid: int | None, grace: float = 15.0, poll: float = 0.1, token: str | None = None,
               started: int | None = None) -> bool:
    """SIGTERM the run's processes, SIGKILL what is left after ``grace`` seconds; True when none is left.

    Only processes that carry the run's token are signalled (see :func:`run_pids`).  SIGTERM goes first to those
    in the run's process group (the supervisor and the launcher, which pass it on to the ranks in their own
    sessions), to every one of them when none of the group is left; SIGKILL to all.
    """
    pids = run_pids(pgid, token, 0.0, started)
    if not pids:
        return True
    if not _PROC.is_dir():  # nothing to verify with: the group, as recorded
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(int(pgid or 0), sig)
            except (ProcessLookupError, PermissionError, OSError):
                pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and run_alive(pgid):
                time.sleep(poll)
        return not run_alive(pgid)
    group = [p for p in pids if (_stat(p) or ("", 0, 0))[1] == pgid]
    signal_run(group or pids, signal.SIGTERM, token)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        left = run_pids(pgid, token, 0.0, started)
        if not left:
            return True
        if group and not [p for p in left if p in group]:  # nobody left to pass it on: tell the ranks directly
            signal_run(left, signal.SIGTERM, token)
            group = []
        time.sleep(poll)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = run_pids(pgid, token, 0.0, started)
        if not left:
            return True
        signal_run(left, signal.SIGKILL, token)
        time.sleep(poll)
    return not run_alive(pgid, token, 0.0, started)


def python_exe() -> str:
    return sys.executable or "python3"


#: Python ≥ 3.11 leaves the working directory off ``sys.path`` with ``-P`` / ``PYTHONSAFEPATH=1``
SAFE_PATH = sys.version_info >= (3, 11)
#: the same on any Python 3: drop the working directory from sys.path, then run the module (``-c`` imports
#: nothing from there before this line runs)
_STRIP_CWD = "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]"
_RUN_MODULE = (_STRIP_CWD + "; sys.argv = sys.argv[1:]; import runpy; "
               "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def module_argv(python: str, module: str, *args: str, safe_path: bool | None = None) -> list[str]:
    """``python -m module args`` that never imports from the working directory (a folder named ``engine/``
    there must not run instead of finetui): ``-P`` where the Python is known to have it (this one, when it is
    3.11 or newer), else a ``-c`` line that removes the directory from ``sys.path`` first (any Python 3)."""
    if safe_path is None:
        safe_path = SAFE_PATH and python == sys.executable
    if safe_path:
        return [python, "-P", "-m", module, *args]
    return [python, "-c", _RUN_MODULE, module, *args]


def code_argv(python: str, code: str) -> list[str]:
    """``python -c code`` without the working directory on ``sys.path`` (see :func:`module_argv`)."""
    if SAFE_PATH and python == sys.executable:
        return [python, "-P", "-c", code]
    return [python, "-c", f"{_STRIP_CWD}; {code}"]

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
    if now - _tokens[0] <= max_age:
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


def run_pids(pgid: int | None, token: str | None = None, max_age: float = 0.0) -> list[int]:
    """Every live process of a run: its process group and every process carrying its token."""
    return sorted(set(group_pids(pgid)) | set(token_pids(token, max_age)))


def run_alive(pgid: int | None, token: str | None = None, max_age: float = 0.0) -> bool:
    """Whether a process of the run is alive; ``max_age`` > 0 accepts a token scan that recent (status
    listings), 0 scans now (stop and its verification)."""
    return bool(group_pids(pgid)) or bool(token_pids(token, max_age))


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


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_group(pgid: int | None, grace: float = 15.0, poll: float = 0.1, token: str | None = None) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``grace`` seconds; True when none is left.

    With ``token``, processes of the run outside the group (torchrun's ranks) count too: they get
    SIGTERM from torchrun (and from here when torchrun is gone) and SIGKILL with the group.
    """
    if not run_alive(pgid, token):
        return True
    if pgid and pgid > 1:
        signal_group(pgid, signal.SIGTERM)
    if not group_alive(pgid):  # nobody left to forward the signal: tell the ranks directly
        _signal_pids(token_pids(token), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not run_alive(pgid, token):
            return True
        time.sleep(poll)
    left = run_pids(pgid, token)
    if pgid and pgid > 1:
        signal_group(pgid, signal.SIGKILL)
    _signal_pids(left, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not run_alive(pgid, token):
            return True
        _signal_pids(token_pids(token), signal.SIGKILL)
        time.sleep(poll)
    return not run_alive(pgid, token)


def python_exe() -> str:
    return sys.executable or "python3"

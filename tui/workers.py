"""The app's thread workers: quitting waits for the work that must finish, not for the work that may not.

Textual runs a thread worker (``@work(thread=True)``) in the event loop's default executor, and
``asyncio.run`` joins that executor's threads before ``App.run()`` returns: quitting while the runs
screen waits on an unreachable SSH host, or while a data check reads a million rows, waited for
them (a 6 s worker held the exit 6 s).  :class:`ExitExecutor` replaces the default executor: a
worker of a :data:`DISPOSABLE` group (it only reads something to show it) runs in a daemon thread
that the exit leaves behind; every other one — launching a run, stopping one, deleting one — is
waited for as before, so quitting never cuts a launch or a stop in half.  Which kind a worker is
is read from the submitting worker's group before its thread starts, so there is no window in
which a critical worker could be left behind.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from textual.worker import active_worker

#: worker groups whose work only reads something to show it: nothing is lost when the app exits first
DISPOSABLE = frozenset({"runs-list", "monitor-tail", "model-info", "data-check", "overlay-load", "try-model"})


class ExitExecutor(ThreadPoolExecutor):
    """A thread per worker; at shutdown it joins the critical ones only (see the module's text)."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="finetui-worker")  # no thread is started by the base class
        self._critical: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        worker = active_worker.get(None)
        disposable = worker is not None and worker.group in DISPOSABLE
        fut: Future = Future()

        def run() -> None:
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args, **kwargs))
                    except BaseException as e:  # noqa: BLE001 - handed to the awaiting worker
                        fut.set_exception(e)
            finally:
                with self._lock:
                    self._critical.discard(threading.current_thread())

        name = f"finetui-worker-{worker.group if worker is not None else 'call'}"
        t = threading.Thread(target=run, name=name, daemon=disposable)
        if not disposable:
            with self._lock:
                self._critical.add(t)
        t.start()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if wait:
            with self._lock:
                pending = list(self._critical)
            for t in pending:
                t.join()


# ---------------------------------------------------------------- child processes of disposable work

_CHILDREN: set[subprocess.Popen] = set()
_CHILDREN_LOCK = threading.Lock()


def child(cmd: list[str], **kw: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, text=True, **kw)`` for disposable work: still running when the app's process
    exits, it is terminated then (:func:`release` when it ended before)."""
    p = subprocess.Popen(cmd, text=True, **kw)
    with _CHILDREN_LOCK:
        _CHILDREN.add(p)
    return p


def release(p: subprocess.Popen) -> None:
    with _CHILDREN_LOCK:
        _CHILDREN.discard(p)


def engine_env(**extra: str) -> dict[str, str]:
    """The environment of a child process of the interface (a data check, the model of a run): this one,
    with this checkout importable."""
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, **extra,
            "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}


class Stopped(Exception):
    """The child was stopped: what it was doing was asked to stop (:func:`run_child`'s ``cancel``)."""


def run_child(cmd: list[str], *, timeout: float, on_err_line: Callable[[str], bool] | None = None,
              cancel: threading.Event | None = None, **kw: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` as a :func:`child` (a data check left behind
    would read on for nothing).  Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds, the child
    killed. ``on_err_line(line)`` sees each line of its stderr as it comes (those it returns true for are not kept
    in the result's); when ``cancel`` is set the child is interrupted (SIGINT, as Ctrl-C; killed if it has not
    ended 3 s later) and :class:`Stopped` raised."""
    import signal
    import time

    p = child(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    out: list[str] = []
    err: list[str] = []

    def read_out() -> None:
        out.append(p.stdout.read())

    def read_err() -> None:
        for line in p.stderr:
            if on_err_line is None or not on_err_line(line):
                err.append(line)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                p.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    p.send_signal(signal.SIGINT)
                    try:
                        p.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                    raise Stopped() from None
                if time.monotonic() > deadline:
                    p.kill()
                    p.wait()
                    raise
        for t in readers:
            t.join()
    finally:
        release(p)
    return subprocess.CompletedProcess(cmd, p.returncode, "".join(out), "".join(err))


@atexit.register
def _end_children() -> None:
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for p in children:
        if p.poll() is None:
            p.terminate()

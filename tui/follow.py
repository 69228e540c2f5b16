"""The foreground follower of ``finetui train``: a progress line for a run on this machine, in a small process.

``finetui train`` validates the job and starts the run (supervisor and worker, detached: they survive the
terminal), then replaces itself (``exec``) with this script, run as ``python -I -S tui/follow.py RUN_DIR NAME``:
the standard library, ``engine/events.py`` (the event record) and ``engine/launch/procs.py`` (which processes
carry the run's token) — no typer, rich, pydantic or schema, so that the terminal's process holds about 10 MB
while the run trains instead of the 40 MB of the CLI that started it (one-process runs are measured against
LLaMA-Factory, whose whole run is one process: bench/peer_llamafactory.py).

What it prints is what the CLI printed: a progress bar on a terminal (redrawn in place: steps, loss, phase,
elapsed, ETA), evaluation / checkpoint / error lines as they come, and ``run NAME: OUTCOME → final`` at the end;
the exit code is the run's outcome (0 completed, 1 otherwise). Ctrl-C asks whether to stop the run (on a
terminal; elsewhere it stops it): no detaches and exits 130, leaving the run going; yes runs ``finetui stop``
and follows the run to its end. A second Ctrl-C leaves at once (130).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the folder that holds engine/ and tui/ (source tree or site-packages)
POLL_S = 0.2
ALIVE_EVERY_S = 1.0
#: no record, no recorded process and no run file written for this long: nothing is going to write events
STALE_S = 10.0


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_event(r: dict[str, Any]) -> str:
    t = datetime.fromtimestamp(float(r.get("t") or 0)).strftime("%H:%M:%S")
    k = r.get("kind", "?")
    skip = {"t", "kind", "step", "traceback"}
    fields = " ".join(f"{key}={_fmt_num(v)}" for key, v in r.items() if key not in skip and v is not None)
    if k == "gpu" and isinstance(r.get("gpus"), list):  # GPU telemetry (engine/telemetry.py), one readable line
        from engine.telemetry import describe

        fields = describe(r["gpus"])
    return f"{t} {k:<10} step {r.get('step', 0):>6}  {fields}".rstrip()


def exec_argv(run_dir: Path, name: str) -> list[str]:
    """The command ``finetui train`` execs into: this file by path, isolated (``-I``: no working directory, no
    user site, no PYTHON* variables) and without ``site`` (``-S``)."""
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(run_dir), name]


def _procs() -> Any:
    """engine/launch/procs.py by its path (standard library only): importing it as ``engine.launch.procs`` would
    run ``engine/launch/__init__.py`` and the schema it imports."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_finetui_procs", ROOT / "engine" / "launch" / "procs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _hms(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Follower:
    def __init__(self, run_dir: Path, name: str, out: Any = None) -> None:
        from engine.events import EVENTS_FILE, Tailer

        self.run_dir, self.name = run_dir, name
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.tail = Tailer(run_dir / EVENTS_FILE)
        self.procs = _procs()
        self.t0 = time.monotonic()
        self.total: int | None = None
        self.step = 0
        self.loss = "-"
        self.phase = ""
        self.first: tuple[float, int] | None = None  # (time, step) of the first step seen, for the ETA
        self.end: dict | None = None
        self.lost = False
        self.stopping = False
        self._checked = 0.0
        self._drawn = False

    # ------------------------------------------------------------------ output

    def bar(self) -> str:
        el = time.monotonic() - self.t0
        eta = "-:--:--"
        if self.total and self.first is not None and self.step > self.first[1]:
            rate = (self.step - self.first[1]) / max(1e-9, time.monotonic() - self.first[0])
            eta = _hms((self.total - self.step) / rate)
        count = f"{self.step}/{self.total}" if self.total else f"{self.step}/?"
        right = f" {count} loss {self.loss} {self.phase} {_hms(el)} ETA {eta}"
        try:
            cols = os.get_terminal_size(self.out.fileno()).columns
        except (AttributeError, OSError, ValueError):
            cols = 100
        width = max(10, min(40, cols - len(self.name) - len(right) - 2))
        done = int(width * min(1.0, self.step / self.total)) if self.total else 0
        full, head = ("━", "╺") if "utf" in (getattr(self.out, "encoding", "") or "").lower() else ("#", ">")
        return f"{self.name} {full * done}{head if done < width else ''}{' ' * max(0, width - done - 1)}{right}"

    def redraw(self) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + self.bar())
            self.out.flush()
            self._drawn = True

    def say(self, line: str) -> None:
        """A line above the progress bar."""
        if self._drawn:
            self.out.write("\r\x1b[2K")
        self.out.write(line + "\n")
        self.redraw()

    # ------------------------------------------------------------------ records

    def take(self, r: dict[str, Any]) -> None:
        k = r.get("kind")
        if k == "start":
            self.total = int(r.get("total_steps") or 0) or None
            self.phase = "training"
        elif k == "status":
            self.phase = str(r.get("phase", ""))
        elif k == "log" and r.get("loss") is not None:
            self.loss = f"{float(r['loss']):.4f}"
        elif k == "eval":
            self.say(format_event(r))
        elif k == "checkpoint":
            self.say(f"checkpoint {r.get('path', '')} (step {r.get('step')})")
        elif k == "error":
            self.say(f"error: {r.get('message', '')}")
        elif k == "end":
            self.end = r
        if r.get("step") is not None:
            self.step = int(r.get("step") or 0)
            if self.first is None and self.step > 0:
                self.first = (time.monotonic(), self.step)

    def _gone(self) -> bool:
        """The run's processes are gone (none carries its token), or none was recorded and nothing has been
        written for a while — the local half of engine.launch.EventSource's ``lost``."""
        import json

        try:
            info = json.loads((self.run_dir / "launch.json").read_text())
        except (OSError, ValueError):
            info = {}
        if self.procs.run_alive(info.get("pgid"), info.get("token"), 0.0, info.get("pid_start")):
            return False
        if info.get("pgid"):
            return True
        newest = 0.0
        for f in ("launch.json", "events.jsonl", "supervisor.json"):
            try:
                newest = max(newest, (self.run_dir / f).stat().st_mtime)
            except OSError:
                continue
        return time.time() - newest > STALE_S

    def poll(self) -> bool:
        """Read what is new; → True once the run is over (an end record, or its processes gone)."""
        recs = self.tail.read()
        for r in recs:
            self.take(r)
        if self.end is not None:
            return True
        if not recs and time.monotonic() - self._checked > ALIVE_EVERY_S:
            self._checked = time.monotonic()
            if self._gone():
                for r in self.tail.read():  # (an end written just before the last process left)
                    self.take(r)
                self.lost = self.end is None
                return True
        if recs:
            self.redraw()
        return False

    # ------------------------------------------------------------------ Ctrl-C

    def interrupt(self) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        if sys.stdin.isatty():
            self.say("")
            try:
                ans = input(f"Stop the run {self.name}? [y/N]: ").strip().lower()
            except (KeyboardInterrupt, EOFError):
                ans = ""
            if ans not in ("y", "yes"):
                self.say(f"detached; the run goes on — reattach with: finetui attach {self.name}")
                raise SystemExit(130)
        self.say(f"stopping {self.name} …")
        self.stopping = True
        # finetui stop (the run's processes by token, SIGKILL after a grace period, `stopped` recorded), apart
        subprocess.Popen(self.procs.module_argv(sys.executable, "tui.cli", "stop", str(self.run_dir)),
                         stdin=subprocess.DEVNULL)

    def run(self) -> int:
        self.redraw()
        while True:
            try:
                if self.poll():
                    break
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                self.interrupt()
        self.redraw()
        if self.tty:
            self.out.write("\n")
        elif self.total or self.step:
            self.out.write(self.bar() + "\n")
        if self.end is not None:
            extra = f" → {self.end['final_path']}" if self.end.get("final_path") else ""
            self.out.write(f"run {self.name}: {self.end.get('outcome', '?')}{extra}\n")
        elif self.lost:
            self.out.write(f"run {self.name}: lost (its processes are gone without an end record; see finetui "
                           f"logs {self.name})\n")
        self.out.flush()
        return 0 if self.end is not None and self.end.get("outcome") == "completed" else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # (| head: end quietly)
    try:
        return Follower(Path(argv[0]), argv[1]).run()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())

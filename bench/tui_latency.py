"""TUI latency benchmark (issue 8 #4), measured in a real pseudo-terminal.

1. Start-up: time from process start to the first screen painted with its content (a
   text from the widgets it shows last: the model step's "Dropout overrides" line, a run's
   name on the runs screen, the last step on a run's dashboard), for ``finetui`` (the wizard),
   ``finetui --runs`` (the runs screen) and ``finetui --attach RUN`` (a finished run's dashboard), against
   ``python -c "import textual"`` (the floor any Textual app pays).  Target: ratio ≤ 2×.
   The wizard is timed twice: its very first start (no parsed CSS saved yet, each run with
   the cache removed) and a usual start (the CSS parsed by an earlier session, tui/csscache.py).
   Then the bytes the wizard writes to the terminal (what an SSH link carries): its first
   screen, the three seconds after it, and each Tab.  And switching steps: the time from Ctrl+N /
   Ctrl+B to the end of the repaint, for each step's first visit and on the way back.
2. Event-to-screen latency while a fake run appends 100 events/s: the dashboard
   (``finetui --attach RUN``) runs in a pty; the bench writes ``log`` records (step N) and reads the
   terminal output; the latency of step N is the time from its write (flushed)
   until the screen first shows a step ≥ N.  Target: p95 < 50 ms.

Usage: python bench/tui_latency.py [--rate 100] [--seconds 10] [--repeat 5] [--size 80x24]
Prints the figures and their ratios; exits 0 (figures, not a test).
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import fcntl
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ANSI = re.compile(rb"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78MDEc]")
STEP = re.compile(rb"step (\d+)/")


# ---------------------------------------------------------------- the pty runner


class PtyProc:
    """A child process on a pseudo-terminal of a given size; collects its output with timestamps."""

    def __init__(self, argv: list[str], size: tuple[int, int], env: dict[str, str], cwd: str | None = None,
                 marker: bytes | None = None):
        self.t0 = time.perf_counter()
        self.marker = marker  # the first screen is complete when this text is on it (None: 150 characters)
        pid, fd = pty.fork()
        if pid == 0:  # child
            try:
                if cwd:
                    os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        cols, rows = size
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.chunks: list[tuple[float, bytes]] = []
        self.visible = bytearray()
        self.first_paint: float | None = None
        self.lock = threading.Lock()
        self.on_text = None  # callback(t, stripped_bytes)
        self._stop = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self) -> None:
        pending = b""
        while not self._stop:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.perf_counter()
            # answer a cursor-position query so nothing waits on it
            if b"\x1b[6n" in data:
                try:
                    os.write(self.fd, b"\x1b[1;1R")
                except OSError:
                    pass
            buf = pending + data
            # keep an incomplete escape sequence for the next read
            cut = buf.rfind(b"\x1b")
            if cut >= 0 and len(buf) - cut < 32 and not ANSI.match(buf, cut):
                buf, pending = buf[:cut], buf[cut:]
            else:
                pending = b""
            text = ANSI.sub(b"", buf)
            with self.lock:
                self.chunks.append((now, data))
                self.visible += text
                if self.first_paint is None and (
                        self.marker in self.visible if self.marker is not None
                        else sum(1 for c in self.visible if 33 <= c < 127) >= 150):
                    self.first_paint = now
            if self.on_text is not None:
                self.on_text(now, text)

    def wait_first_paint(self, timeout: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.first_paint is not None:
                return self.first_paint - self.t0
            time.sleep(0.002)
        raise TimeoutError("no first paint")

    def close(self) -> None:
        self._stop = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            for _ in range(50):
                try:
                    if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                        break
                except ChildProcessError:
                    break
                time.sleep(0.02)
            else:
                continue
            break
        try:
            os.close(self.fd)
        except OSError:
            pass


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TERM="xterm-256color", COLORTERM="truecolor", FINETUI_STATE_DIR=str(tmp / "state"),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("TEXTUAL", None)
    return env


# ---------------------------------------------------------------- children


def child_monitor(run_dir: str) -> None:
    from textual.app import App

    from tui.screens.monitor import MonitorScreen

    trace = os.environ.get("FINETUI_BENCH_TRACE")
    if trace:  # where the time goes: when each batch was handled and when its frame was painted
        out = open(trace, "w", buffering=1)
        orig = MonitorScreen.on_run_update

        def on_run_update(self, msg):  # noqa: ANN001
            t = time.time()
            orig(self, msg)
            step = self.state.step
            r = msg.read_at
            self.call_after_refresh(lambda: out.write(f"{t} {time.time()} {step} {r}\n"))

        MonitorScreen.on_run_update = on_run_update

    class A(App):
        def on_mount(self) -> None:
            self.push_screen(MonitorScreen(run_dir))

    A().run()


def child_hello() -> None:
    from textual.app import App
    from textual.widgets import Static

    class A(App):
        def compose(self):
            yield Static("hello " * 100)

    A().run()


# ---------------------------------------------------------------- measurements


def time_import_textual(repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import textual"], check=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def time_first_paint(argv: list[str], repeat: int, size: tuple[int, int], env: dict[str, str], cwd: str,
                     marker: bytes | None = None, before: Any = None) -> float:
    ts = []
    for _ in range(repeat):
        if before is not None:
            before()
        p = PtyProc(argv, size, env, cwd, marker)
        try:
            ts.append(p.wait_first_paint())
        finally:
            p.close()
    return statistics.median(ts)


def warm_up(argv: list[str], size: tuple[int, int], env: dict[str, str], cwd: str, marker: bytes,
            stay: float = 3.5) -> None:
    """One start that stays up a few seconds: the app saves its parsed CSS (tui/csscache.py) two
    seconds after its first screen, as on any user's first start."""
    p = PtyProc(argv, size, env, cwd, marker)
    try:
        p.wait_first_paint()
        time.sleep(stay)
    finally:
        p.close()


def terminal_output(argv: list[str], size: tuple[int, int], env: dict[str, str], cwd: str, marker: bytes,
                    tabs: int = 8) -> dict:
    """Bytes the wizard writes to the terminal (what an SSH link carries): the first screen, the
    three seconds after it (late content, focus, the key footer), and each Tab after that (the
    focus moves; the cursor's blink, under 200 bytes a write, is left out)."""
    p = PtyProc(argv, size, env, cwd, marker)
    try:
        p.wait_first_paint()
        first = p.first_paint
        time.sleep(3.0)
        with p.lock:
            chunks = list(p.chunks)
        start = sum(len(c) for t, c in chunks if t <= first)
        settle = sum(len(c) for t, c in chunks if t > first)
        per_tab = []
        for _ in range(tabs):
            n0 = len(p.chunks)
            os.write(p.fd, b"\t")
            time.sleep(0.6)
            with p.lock:
                per_tab.append(sum(len(c) for _, c in p.chunks[n0:] if len(c) >= 200))
    finally:
        p.close()
    return {"first_screen_bytes": start, "after_first_screen_3s_bytes": settle, "per_tab_bytes": per_tab,
            "per_tab_median": statistics.median(per_tab)}


def step_switching(argv: list[str], size: tuple[int, int], env: dict[str, str], cwd: str, marker: bytes,
                   read_for: float = 8.0, quiet: float = 0.4) -> dict:
    """Time from Ctrl+N / Ctrl+B to the last byte of the repaint it causes (no more output for
    ``quiet`` s), and its bytes: the first visit of each step after ``read_for`` s on the first one
    (the app builds the other steps meanwhile), then the way back."""
    p = PtyProc(argv, size, env, cwd, marker)
    out: dict[str, list] = {"first_visit": [], "revisit": []}
    try:
        p.wait_first_paint()
        time.sleep(read_for)
        for kind, key in [("first_visit", b"\x0e")] * 4 + [("revisit", b"\x02")] * 4:
            n0 = len(p.chunks)
            t0 = time.perf_counter()
            os.write(p.fd, key)
            while True:
                time.sleep(0.01)
                with p.lock:
                    ch = p.chunks[n0:]
                if ch and time.perf_counter() - ch[-1][0] > quiet:
                    break
                if time.perf_counter() - t0 > 10:
                    break
            big = [(t, c) for t, c in ch if len(c) >= 200]  # the cursor's blink left out
            if big:
                out[kind].append((big[-1][0] - t0, sum(len(c) for _, c in big)))
    finally:
        p.close()
    return out


def latency(rate: float, seconds: float, size: tuple[int, int], env: dict[str, str], tmp: Path) -> dict:
    from tests.fake_run import FakeRunWriter

    run_dir = tmp / "runs" / "bench_live"
    w = FakeRunWriter(run_dir, rate=rate, steps=10_000_000, log=True, eval_every=50, ckpt_every=500)
    shown: list[tuple[float, int]] = []  # (perf time, step on screen)
    tail = bytearray()

    def on_text(t: float, text: bytes) -> None:
        tail.extend(text)
        del tail[:-4096]
        ms = list(STEP.finditer(text))
        if ms:
            shown.append((t, max(int(m.group(1)) for m in ms)))

    # the writer's clock is time.time(); convert display times (perf_counter) to it
    offset = time.time() - time.perf_counter()
    w.start()
    while not w.written:
        time.sleep(0.005)
    # the real app on the run's dashboard (finetui --attach: the wizard is built behind it once the
    # app is idle, inside the measured window); with FINETUI_BENCH_TRACE, a bare App that traces
    argv = ([sys.executable, __file__, "--child-monitor", str(run_dir)] if env.get("FINETUI_BENCH_TRACE")
            else [sys.executable, "-m", "tui.cli", "--attach", str(run_dir)])
    p = PtyProc(argv, size, env, str(tmp))
    p.on_text = on_text
    try:
        p.wait_first_paint()
        time.sleep(1.5)  # attach + catch up with the history
        start_wall = time.time()
        time.sleep(seconds)
        end_wall = time.time()
        time.sleep(0.5)
    finally:
        w.stop()
        w.join(5)
        p.close()
    trace = env.get("FINETUI_BENCH_TRACE")
    if trace and Path(trace).exists():
        rows = [tuple(float(x) for x in ln.split()) for ln in Path(trace).read_text().splitlines() if ln.strip()]
        handled = sorted(rows, key=lambda r: r[2])
        d_handle, d_paint, d_read = [], [], []
        k = 0
        for s_, tw in sorted(w.written.items()):
            if not (start_wall <= tw <= end_wall):
                continue
            while k < len(handled) and handled[k][2] < s_:
                k += 1
            if k >= len(handled):
                break
            d_handle.append(handled[k][0] - tw)
            d_read.append(handled[k][3] - tw)
            d_paint.append(handled[k][1] - tw)
        for name, v in (("write→read (tail thread)", d_read), ("write→handled", d_handle), ("write→painted (call_after_refresh)", d_paint)):
            v.sort()
            if v:
                print(f"  trace {name}: p50 {v[len(v) // 2] * 1000:.1f} ms  p95 {v[int(len(v) * .95)] * 1000:.1f} ms")
    disp = [(t + offset, s) for t, s in shown]
    lat = []
    j = 0
    best = -1
    # for every step written in the window, the first time a step >= it was on screen
    items = sorted((s, t) for s, t in w.written.items() if start_wall <= t <= end_wall)
    disp.sort()
    running_max = []
    m = -1
    for t, s in disp:
        m = max(m, s)
        running_max.append((t, m))
    for s, tw in items:
        while j < len(running_max) and running_max[j][1] < s:
            j += 1
        if j >= len(running_max):
            break
        lat.append(max(0.0, running_max[j][0] - tw))
    lat.sort()
    if not lat:
        return {"n": 0}
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000  # noqa: E731
    nbytes = sum(len(c) for t, c in p.chunks if start_wall <= t + offset <= end_wall)
    return {"bytes_per_s": nbytes / max(1e-9, end_wall - start_wall), "n": len(lat), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": lat[-1] * 1000,
            "written": len(items), "updates": sum(1 for t, _ in disp if start_wall <= t <= end_wall)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", default="80x24")
    ap.add_argument("--child-monitor")
    ap.add_argument("--child-hello", action="store_true")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.repeat = 1.0, 1
    if a.child_monitor:
        child_monitor(a.child_monitor)
        return 0
    if a.child_hello:
        child_hello()
        return 0

    cols, rows = (int(x) for x in a.size.split("x"))
    size = (cols, rows)
    tmp = Path(tempfile.mkdtemp(prefix="finetui-bench-"))
    env = _env(tmp)
    try:
        from tests.fake_run import write_fake_run

        for i in range(5):
            write_fake_run(tmp / "runs" / f"ft_bench_{i}", steps=500, seed=i)
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f}; terminal {cols}x{rows}; "
              f"median of {a.repeat} rounds")
        # the bytecode an installed finetui has (pip compiles it; an editable checkout writes it on
        # first run unless PYTHONDONTWRITEBYTECODE is set): start-up is not source compilation
        import compileall

        for pkg in ("tui", "engine"):
            compileall.compile_dir(str(ROOT / pkg), quiet=1)
        # the first screen counts once its content is on it: a text from its last widgets to paint.
        # The first start after an install parses the CSS; later ones load it parsed (tui/csscache.py)
        wizard = [sys.executable, "-m", "tui.cli", "--demo"]
        cache_dir = Path(env["FINETUI_STATE_DIR"]) / "cache"
        base0 = time_import_textual(a.repeat)
        try:
            t = time_first_paint(wizard, a.repeat, size, env, str(tmp), b"Dropout overrides",
                                 before=lambda: shutil.rmtree(cache_dir, ignore_errors=True))
        except Exception as e:  # noqa: BLE001
            first_ever: Any = e
        else:
            first_ever = t
        starts = [
            ("bare Textual app, first screen", [sys.executable, __file__, "--child-hello"], b"hello hello"),
            ("finetui (wizard), first screen", wizard, b"Dropout overrides"),
            ("finetui --runs (5 runs), first screen", [sys.executable, "-m", "tui.cli", "--runs"], b"ft_bench_4"),
            ("finetui --attach RUN, first screen", [sys.executable, "-m", "tui.cli", "--attach", "ft_bench_4"],
             b"500/500"),
        ]
        for _, argv, marker in starts[1:]:  # each entry point once, as a user's earlier session (its CSS parsed)
            warm_up(argv, size, env, str(tmp), marker)
        # round by round, `import textual` then each start once: every side sees the same machine load
        base_s: list[float] = []
        samples: dict[str, list[float]] = {label: [] for label, _, _ in starts}
        failed: dict[str, Exception] = {}
        for _ in range(a.repeat):
            base_s.append(time_import_textual(1))
            for label, argv, marker in starts:
                if label in failed:
                    continue
                try:
                    samples[label].append(time_first_paint(argv, 1, size, env, str(tmp), marker))
                except Exception as e:  # noqa: BLE001 - the wizard may not be importable yet
                    failed[label] = e
        base = statistics.median(base_s)
        print(f"python -c 'import textual'            {base * 1000:7.0f} ms   1.00x  "
              f"(measured in turn with each start below; alone, before: {base0 * 1000:.0f} ms)")
        figures: dict = {"import_textual_s": base, "load": load}
        if isinstance(first_ever, Exception):
            print(f"{'finetui (wizard), first start ever':38s}  failed: {first_ever}")
        else:
            figures["finetui (wizard), first start, no CSS cache"] = first_ever
            print(f"{'finetui (wizard), first start ever':38s} {first_ever * 1000:7.0f} ms   {first_ever / base0:.2f}x"
                  "  (÷ the import alone, before)")
        for label, _, _ in starts:
            if label in failed:
                print(f"{label:38s}  failed: {failed[label]}")
                continue
            t = statistics.median(samples[label])
            figures[label] = t
            if "bare" in label:
                flag = ""
            elif "--attach" in label:  # a screen that reads and draws a whole run's history: no target
                flag = "  (a 500-step run's plots, log and checkpoints)"
            else:
                flag = "  (target ≤ 2x: ok)" if t / base <= 2 else "  (target ≤ 2x: MISSED)"
            print(f"{label:38s} {t * 1000:7.0f} ms   {t / base:.2f}x{flag}")

        out = terminal_output(wizard, size, env, str(tmp), b"Dropout overrides")
        figures["terminal_output"] = out
        print(f"terminal output of the wizard: first screen {out['first_screen_bytes'] / 1024:.1f} KiB, "
              f"then {out['after_first_screen_3s_bytes'] / 1024:.1f} KiB in 3 s; a Tab: median "
              f"{out['per_tab_median'] / 1024:.1f} KiB (each: {', '.join(str(b) for b in out['per_tab_bytes'])} bytes)")

        sw = step_switching(wizard, size, env, str(tmp), b"Dropout overrides")
        figures["step_switching"] = sw
        for kind, label in (("first_visit", "first visits (Model → Launch)"), ("revisit", "revisits (Launch → Model)")):
            v = sw[kind]
            if v:
                print(f"step switch, {label}: settled in {', '.join(f'{t * 1000:.0f}' for t, _ in v)} ms; "
                      f"{', '.join(f'{b / 1024:.1f}' for _, b in v)} KiB")

        r = latency(a.rate, a.seconds, size, env, tmp)
        figures["latency"] = r
        if not r.get("n"):
            print("event-to-screen latency: nothing measured")
        else:
            ok = "ok" if r["p95"] < 50 else "MISSED"
            print(f"event-to-screen at {a.rate:.0f} events/s over {a.seconds:.0f} s: {r['written']} steps written, "
                  f"{r['updates']} screen updates")
            print(f"  latency p50 {r['p50']:.1f} ms  p95 {r['p95']:.1f} ms  p99 {r['p99']:.1f} ms  "
                  f"max {r['max']:.1f} ms   (target p95 < 50 ms: {ok}; p95/50ms = {r['p95'] / 50:.2f})")
            print(f"  terminal output {r['bytes_per_s'] / 1024:.0f} KiB/s")
        if a.json:
            Path(a.json).write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

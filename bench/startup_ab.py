"""Paired A/B of the wizard's start-up between two builds (a development tool for issue 8 #4).

``bench/tui_latency.py`` reports the start-up of one build; on a shared or virtual machine its
sequential medians move by ±10 % within minutes, more than most single changes save.  This
script runs two builds side by side: each round starts ``import textual`` once and the wizard of
each build once, alternating their order, in a real pseudo-terminal; the wizard exits as soon as
its first screen is painted.  It prints the medians of wall and CPU time (user + system of the
child, from ``wait4``) and the median of the paired CPU difference, which is what to decide on
(identical builds differ by about ±5 ms on the 2-core machine of bench/RESULTS.md).

Usage:
  python bench/startup_ab.py [A] [B] [--rounds 16] [--size 80x24]
A and B are git revisions or folders holding a finetui checkout; ``.`` (the default for B) is
the working tree, A defaults to HEAD.  Revisions are checked out with ``git worktree`` in a
temporary folder and removed afterwards.  Each side keeps its own state folder, so the parsed
CSS cache is warm for both (one warm-up start each).
"""

from __future__ import annotations

import argparse
import compileall
import fcntl
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child() -> None:
    """The wizard on the demo preset, exiting once its first screen is painted."""
    from tui.app import FinetuiApp

    def shown(self: FinetuiApp) -> None:
        if os.environ.get("FINETUI_AB_SAVE_CSS"):
            self._save_css()  # the warm-up start leaves the parsed CSS for the timed ones
        os._exit(0)

    FinetuiApp._first_screen_shown = shown  # type: ignore[method-assign]
    sys.argv = ["finetui", "--demo"]
    from tui import cli

    cli.main()


def run(argv: list[str], env: dict[str, str], size: tuple[int, int], cwd: str) -> tuple[float, float]:
    """(wall s, CPU s) of a child on a pseudo-terminal of ``size``, read until it exits."""
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    cols, rows = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    while True:
        try:
            if not os.read(fd, 65536):
                break
        except OSError:
            break
    _, status, usage = os.wait4(pid, 0)
    os.close(fd)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def checkout(rev: str, tmp: Path, name: str) -> Path:
    if rev == "." or Path(rev).is_dir():
        return Path(rev).resolve()
    path = tmp / name
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", nargs="?", default="HEAD")
    ap.add_argument("b", nargs="?", default=".")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--size", default="80x24")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing (the working tree against itself, one round)")
    args = ap.parse_args()
    if args.smoke:
        args.a, args.b, args.rounds = ".", ".", 1
    if args.child:
        child()
        return 0
    from tui_latency import _env  # here, not at the top: the timed child does not import it

    size = tuple(int(x) for x in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="finetui-ab-"))
    sides: dict[str, Path] = {}
    try:
        sides = {"A": checkout(args.a, tmp, "a"), "B": checkout(args.b, tmp, "b")}
        envs = {}
        for key, root in sides.items():
            for pkg in ("tui", "engine"):  # an installed finetui has its bytecode
                compileall.compile_dir(str(root / pkg), quiet=1)
            env = _env(tmp)  # the terminal tui_latency.py times in
            env.update(PYTHONPATH=str(root), FINETUI_STATE_DIR=str(tmp / f"state-{key}"))
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            envs[key] = env
        wizard = [sys.executable, str(Path(__file__).resolve()), "--child"]
        for key in sides:  # warm-up: the parsed CSS is saved, as after any first start
            run(wizard, dict(envs[key], FINETUI_AB_SAVE_CSS="1"), size, str(tmp))
        base: list[tuple[float, float]] = []
        times: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for i in range(args.rounds):
            base.append(run([sys.executable, "-c", "import textual"], envs["A"], size, str(tmp)))
            for key in ("A", "B") if i % 2 == 0 else ("B", "A"):
                times[key].append(run(wizard, envs[key], size, str(tmp)))
        bw = statistics.median(t[0] for t in base)
        bc = statistics.median(t[1] for t in base)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; terminal {args.size}; "
              f"{args.rounds} rounds")
        print(f"python -c 'import textual'   wall {bw * 1000:6.0f} ms   cpu {bc * 1000:6.0f} ms")
        for key, label in (("A", args.a), ("B", args.b)):
            w = statistics.median(t[0] for t in times[key])
            c = statistics.median(t[1] for t in times[key])
            print(f"{key} {label:24s} wall {w * 1000:6.0f} ms ({w / bw:.2f}x)   cpu {c * 1000:6.0f} ms ({c / bc:.2f}x)")
        diff = statistics.median(b[1] - a[1] for a, b in zip(times["A"], times["B"]))
        print(f"B - A, paired CPU time to the first screen: median {diff * 1000:+.1f} ms")
    finally:
        for key, root in sides.items():
            if root.is_relative_to(tmp):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)],
                               capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

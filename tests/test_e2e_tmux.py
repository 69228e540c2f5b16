"""End to end in a real terminal (tmux): launch the demo from the wizard, watch the loss move,
detach, quit, start again, attach from the runs screen and see the whole finished curve.

Real training (the demo preset: tiny Llama, LoRA, 2 CPU ranks) through the real launcher.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.slow

W, H = 100, 32


class Tmux:
    def __init__(self, tmux: str, cwd: Path):
        self.tmux = tmux
        self.sock = f"finetui-e2e-{os.getpid()}"
        self.cwd = cwd

    def _run(self, *args: str, check: bool = True) -> str:
        p = subprocess.run([self.tmux, "-L", self.sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                           timeout=20)
        if check and p.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def start(self, argv: list[str]) -> None:
        cmd = " ".join(_q(a) for a in argv)
        for attempt in range(20):
            try:
                self._run("new-session", "-d", "-s", "ft", "-x", str(W), "-y", str(H), "-c", str(self.cwd), cmd)
                break
            except RuntimeError as e:
                # the previous session's server still shutting down (its last session was killed): tmux answers
                # "server exited unexpectedly" to a client that reached it then; a new server starts once it is gone
                if "server exited unexpectedly" not in str(e) or attempt == 19:
                    raise
                time.sleep(0.25)
        self._run("set-option", "-t", "ft", "remain-on-exit", "on")

    def keys(self, *keys: str) -> None:
        for k in keys:
            self._run("send-keys", "-t", "ft", k)
            time.sleep(0.15)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "ft", check=False)

    def dead(self) -> bool:
        out = self._run("list-panes", "-t", "ft", "-F", "#{pane_dead}", check=False).strip()
        return out in ("", "1")

    def wait(self, pred, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        s = ""
        while time.monotonic() < deadline:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; screen:\n{s}")

    def kill(self) -> None:
        self._run("kill-server", check=False)


def _q(a: str) -> str:
    import shlex

    return shlex.quote(a)


def _finetui() -> list[str]:
    exe = Path(sys.executable).with_name("finetui")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]


LOSS = re.compile(r"loss (\d+\.\d+)")
STEP = re.compile(r"step (\d+)/(\d+)")


@pytest.fixture
def term(tmp_path, monkeypatch):
    tmux = require_tool("tmux")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("TERM", "xterm-256color")
    # build the tiny model once up front (in a subprocess: this process never imports torch)
    subprocess.run([sys.executable, "-c", "from engine.tiny import ensure_tiny_model; ensure_tiny_model()"],
                   cwd=ROOT, check=True, timeout=300, capture_output=True)
    t = Tmux(tmux, tmp_path)
    yield t
    t.kill()
    # never leave a training run behind
    runs = tmp_path / "runs"
    if runs.is_dir():
        from engine import launch

        for d in runs.iterdir():
            try:
                launch.stop_run(str(d), grace=3.0)
            except Exception:
                pass


def test_launch_watch_detach_quit_reattach(term, tmp_path):
    # 1. the wizard on the demo preset; ctrl+l shows the launch step's review, a second launches it and the app
    # shows the dashboard
    term.start(_finetui() + ["--demo"])
    term.wait(lambda s: "Launch" in s and "Model" in s, 30, "the wizard")
    term.keys("C-l")
    term.wait(lambda s: "ready to launch" in s, 30, "the launch step")
    term.keys("C-l")
    term.wait(lambda s: "Checkpoints" in s and "elapsed" in s, 60, "the monitor")

    # 2. the loss changes on screen while it trains
    losses: list[str] = []
    steps: set[int] = set()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        s = term.screen()
        m = LOSS.search(s)
        if m and (not losses or losses[-1] != m.group(1)):
            losses.append(m.group(1))
        st = STEP.search(s)
        if st:
            steps.add(int(st.group(1)))
        if len(losses) >= 2 or "Completed" in s or "Failed" in s:
            break
        time.sleep(0.2)
    s = term.screen()
    if "Failed" in s:
        errs = [ln for d in (tmp_path / "runs").iterdir() for ln in (d / "events.jsonl").read_text().splitlines()
                if '"error"' in ln]
        pytest.fail("the demo run failed:\n" + "\n".join(errs)[:3000] + "\n" + s)
    assert len(losses) >= 2, f"the loss never changed on screen: {losses}\n{s}"
    assert len(steps) >= 2

    # 3. detach (the run goes on), quit the app
    term.keys("d")
    term.wait(lambda s: "Checkpoints" not in s and "Model" in s, 15, "back to the wizard")
    term.keys("C-q")
    term.wait(lambda s: term.dead(), 15, "the app to exit")
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    term._run("kill-session", "-t", "ft", check=False)

    # 4. start again, open the runs screen, attach: the whole curve and the end state
    term.start(_finetui())
    term.wait(lambda s: "Model" in s, 30, "the wizard again")
    term.keys("C-r")
    term.wait(lambda s: run_dirs[0].name[:20] in s, 20, "the runs list")
    term.keys("Enter")
    s = term.wait(lambda s: "Completed at step" in s, 150, "the run to complete on the dashboard")
    m = STEP.search(s)
    assert m and m.group(1) == m.group(2), s  # step N/N
    total = int(m.group(2))
    # the loss plot's x axis reaches the last step (ticks every 10 steps) and starts near 0
    assert re.search(rf"\b{(total // 10) * 10}\b", s), s
    assert "★" in s  # checkpoints with the best marked
    events = (run_dirs[0] / "events.jsonl").read_text().splitlines()
    assert sum('"kind": "log"' in ln for ln in events) >= 10
    term.keys("d")
    term.wait(lambda s: "Runs" in s and "completed" in s, 15, "back to the runs list")
    term.keys("C-q")
    term.wait(lambda s: term.dead(), 15, "the app to exit")
    term._run("kill-session", "-t", "ft", check=False)

    # 5. from a new terminal, straight onto the run's dashboard (a prefix of its name), Esc: the runs list
    term.start(_finetui() + ["--attach", run_dirs[0].name[:-3]])
    term.wait(lambda s: f"Completed at step {total}" in s and "Checkpoints" in s, 30, "the dashboard on --attach")
    term.keys("Escape")
    term.wait(lambda s: "Runs" in s and "completed" in s and "Checkpoints" not in s, 15, "the runs list under it")
    term.keys("Escape")
    term.wait(lambda s: "Model" in s and "Profile" in s, 15, "the wizard under both")

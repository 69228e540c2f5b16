"""Quitting the app: it waits for a launch in flight, not for work that only reads something to show.

Each case runs the real app headless in its own process, because what is measured is whether the
process ends: Textual runs thread workers in the event loop's default executor, whose threads
``asyncio.run`` joins before ``App.run()`` returns (tui/workers.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.fake_run import assert_gone

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import sys, time, os
sys.path.insert(0, {root!r})
import tui.app as A
from engine.schema import JobConfig
app = A.FinetuiApp(JobConfig(values={{"model.name_or_path": "some/model"}}), offer_restore=False)
"""


def run_app(tmp_path: Path, body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    script = tmp_path / "app_exit.py"
    script.write_text(PRELUDE.format(root=str(ROOT)) + body)
    env = {**os.environ, "FINETUI_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)


def test_quitting_leaves_a_stuck_listing_behind(tmp_path):
    """The model step's details (config.json on a dead network disk, say) hang: quitting does not."""
    marker = tmp_path / "describe-finished"
    r = run_app(tmp_path, f"""
def stuck(name):
    time.sleep(120)
    open({str(marker)!r}, "w").write("finished")
app.services.describe_model = stuck
async def auto(pilot):
    await pilot.pause(0.5)
    app.exit()
app.run(headless=True, auto_pilot=auto)
print("app.run returned")
""")
    assert r.returncode == 0 and "app.run returned" in r.stdout, r.stderr[-2000:]
    assert not marker.exists()  # the process ended with the worker still asleep (the timeout would have hit)


def test_quitting_waits_for_a_launch_in_flight(tmp_path):
    marker = tmp_path / "launched"
    r = run_app(tmp_path, f"""
def start_run(job, progress=None):
    time.sleep(1.5)
    open({str(marker)!r}, "w").write("launched")
    return None
app.services.start_run = start_run
async def auto(pilot):
    await pilot.pause(0.3)
    app._launch_worker(app.job.copy())
    await pilot.pause(0.1)
    app.exit()
app.run(headless=True, auto_pilot=auto)
print("app.run returned", os.path.exists({str(marker)!r}))
""")
    assert r.returncode == 0 and "app.run returned True" in r.stdout, (r.stdout, r.stderr[-2000:])
    assert marker.read_text() == "launched"


def test_a_data_check_left_behind_is_ended_with_the_app(tmp_path):
    """The data check runs as a child process; quitting mid-check ends it instead of letting it read on."""
    pid_file = tmp_path / "child.pid"
    r = run_app(tmp_path, f"""
A.data_check_command = lambda job: [sys.executable, "-c",
    "import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"]
async def auto(pilot):
    app.run_worker(lambda: app.services.data_check(app.job), thread=True, group="data-check")
    for _ in range(100):
        await pilot.pause(0.1)
        if os.path.exists({str(pid_file)!r}) and open({str(pid_file)!r}).read():
            break
    app.exit()
app.run(headless=True, auto_pilot=auto)
print("app.run returned")
""")
    assert r.returncode == 0 and "app.run returned" in r.stdout, r.stderr[-2000:]
    assert_gone(int(pid_file.read_text()), "the data check, after the app")


def test_disposable_groups_are_the_groups_of_read_only_workers():
    """Each name in DISPOSABLE is the group of a worker in tui/, and none of them launches, stops or deletes."""
    from tui.workers import DISPOSABLE

    groups: dict[str, str] = {}
    for f in (ROOT / "tui").rglob("*.py"):
        text = f.read_text()
        for m in re.finditer(r'@work\(([^)]*)\)\s*\n\s*def (\w+)', text):
            g = re.search(r'group="([^"]+)"', m.group(1))
            if g:
                groups[g.group(1)] = m.group(2)
    assert DISPOSABLE <= set(groups), DISPOSABLE - set(groups)
    assert {"launch", "monitor-stop", "runs-act"} <= set(groups) - DISPOSABLE

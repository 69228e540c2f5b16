"""A process is a run's only if it proves it (its token; the recorded start time); child processes never import
from the working directory; the SSH control-socket folder is private."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.launch import core, procs
from engine.launch.rundir import write_json


def _sleeper(token: str | None = None) -> subprocess.Popen:
    """An unrelated process in a session (and process group) of its own, optionally carrying a token."""
    env = dict(os.environ)
    env.pop(procs.TOKEN_ENV, None)
    if token:
        env[procs.TOKEN_ENV] = token
    return subprocess.Popen(["sleep", "300"], start_new_session=True, env=env)


@pytest.fixture
def sleepers():
    started: list[subprocess.Popen] = []

    def make(token: str | None = None) -> subprocess.Popen:
        p = _sleeper(token)
        started.append(p)
        return p

    yield make
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def _fake_run(tmp_path: Path, **launch) -> Path:
    d = tmp_path / "runs" / "ft_old_run"
    d.mkdir(parents=True)
    write_json(d / "launch.json", {"name": d.name, "host": "local", "command": ["x"], **launch})
    (d / "events.jsonl").write_text(json.dumps({"t": 1, "kind": "start", "step": 0}) + "\n")
    return d


def stop_cli(d: Path):
    from tui.cli import app

    return CliRunner().invoke(app, ["stop", d.name, "--runs-dir", str(d.parent), "--grace", "1"])


@pytest.mark.parametrize("case", ["token elsewhere", "other token", "no token, start time differs",
                                  "no token, no start time"])
def test_stop_never_signals_a_process_that_is_not_the_runs(tmp_path, sleepers, case):
    """After pid reuse, the recorded pid/pgid belongs to another process: ``stop`` leaves it alive."""
    victim = sleepers(token=uuid.uuid4().hex if case == "other token" else None)
    launch = {"pid": victim.pid, "pgid": victim.pid}
    if case in ("token elsewhere", "other token"):
        launch["token"] = uuid.uuid4().hex
    if case == "no token, start time differs":
        launch["pid_start"] = procs.start_time(victim.pid) - 1
    d = _fake_run(tmp_path, **launch)
    assert not core.dir_state(d)["alive"]
    r = stop_cli(d)
    assert r.exit_code == 0, r.output
    time.sleep(0.3)
    assert victim.poll() is None, "stop signalled a process that is not the run's"
    assert procs.pid_alive(victim.pid)


def test_stop_stops_the_process_that_carries_the_token(tmp_path, sleepers):
    token = uuid.uuid4().hex
    mine = sleepers(token=token)
    bystander = sleepers()  # same process group as recorded would be... it is not: it has none of the token
    d = _fake_run(tmp_path, pid=mine.pid, pgid=mine.pid, token=token, pid_start=procs.start_time(mine.pid))
    assert core.dir_state(d)["alive"]
    r = stop_cli(d)
    assert r.exit_code == 0 and "stopped" in r.output, r.output
    assert mine.wait(5) == -signal.SIGTERM
    assert bystander.poll() is None


def test_legacy_run_without_token_is_its_recorded_process_only(tmp_path, sleepers):
    p = sleepers()
    d = _fake_run(tmp_path, pid=p.pid, pgid=p.pid, pid_start=procs.start_time(p.pid))
    assert core.dir_state(d)["alive"]
    assert stop_cli(d).exit_code == 0
    assert p.wait(5) == -signal.SIGTERM


def test_stop_reports_a_survivor_in_one_line_exit_1(tmp_path, sleepers, monkeypatch):
    """A process of the run that does not go away (here: signals that never arrive) → exit 1, one line."""
    token = uuid.uuid4().hex
    p = sleepers(token=token)
    d = _fake_run(tmp_path, pid=p.pid, pgid=p.pid, token=token)
    monkeypatch.setattr(procs, "signal_run", lambda pids, sig, token: None)
    monkeypatch.setattr(time, "monotonic", _fast_clock())
    r = stop_cli(d)
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "survived SIGKILL" in lines[0] and str(p.pid) in lines[0], r.output
    assert p.poll() is None


def _fast_clock():
    """time.monotonic that runs 100× fast (the 10 s SIGKILL wait of stop takes 0.1 s)."""
    real = time.monotonic
    t0 = real()
    return lambda: t0 + (real() - t0) * 100


def test_signal_run_skips_a_pid_whose_token_changed(sleepers):
    other = sleepers(token="someone-else")
    procs.signal_run([other.pid], signal.SIGTERM, "my-token")
    time.sleep(0.2)
    assert other.poll() is None
    procs.signal_run([other.pid], signal.SIGTERM, "someone-else")
    assert other.wait(5) == -signal.SIGTERM

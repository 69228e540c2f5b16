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


def test_a_token_scan_stamped_ahead_of_the_clock_is_not_reused(sleepers, monkeypatch):
    """A scan made under a faster clock (the test above) must not answer for 'now' once the clock is back: it
    did, and a later run in the same process looked dead, so stop wrote its end before the ranks' own."""
    token = uuid.uuid4().hex
    p = sleepers(token=token)
    for _ in range(5):
        monkeypatch.setattr(procs, "_tokens", (time.monotonic() + 1000.0, {}))  # an empty scan "from the future"
        asked = time.monotonic()
        got = procs.token_pids(token, max_age=5.0)
        # (a scan another thread of this process began before the sleeper existed — a TUI test's runs list — may
        # land between the patch and the call: its answer is as old as it may be; ask again. A future scan reused
        # keeps its stamp ahead of `asked`, so the bug is still caught)
        if procs._tokens[0] >= asked:
            break
    assert got == [p.pid]
    assert procs.run_alive(p.pid, token, max_age=2.0)


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


# ------------------------------------------------------------------------------- no import from the cwd

def _plant(d: Path, *packages: str) -> Path:
    """Packages in ``d`` that record being imported (``d/PLANTED``) and exit: what a hostile folder holds."""
    for pkg in packages:
        (d / pkg).mkdir(parents=True, exist_ok=True)
        (d / pkg / "__init__.py").write_text(
            "import os, sys\n"
            f"open(os.path.join({str(d)!r}, 'PLANTED'), 'a').write({pkg!r} + ' ' + ' '.join(sys.argv) + '\\n')\n"
            "sys.exit(7)\n")
    return d / "PLANTED"


@pytest.mark.parametrize("safe_path", [True, False])
def test_module_argv_never_imports_from_the_working_directory(tmp_path, safe_path):
    marker = _plant(tmp_path, "engine")
    # the plant works: a plain `python -m` from that folder runs it
    plain = subprocess.run([sys.executable, "-m", "engine.launch.remote_agent", "version"], cwd=tmp_path,
                           capture_output=True, timeout=60)
    assert plain.returncode == 7 and marker.exists()
    marker.unlink()
    argv = procs.module_argv(sys.executable, "engine.launch.remote_agent", "version", safe_path=safe_path)
    p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["finetui"] and not marker.exists()
    code = subprocess.run(procs.code_argv(sys.executable, "import engine, sys; print(engine.__file__)"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert code.returncode == 0 and not code.stdout.startswith(str(tmp_path)) and not marker.exists()


def test_remote_agent_command_is_safe_on_any_remote_python():
    """The remote Python's version is not known beforehand: the agent runs through the ``-c`` form there."""
    from engine.launch.remote import agent_argv

    argv = agent_argv("python3", "version")
    assert argv[:2] == ["python3", "-c"] and argv[3:] == ["engine.launch.remote_agent", "version"]
    assert "sys.path[:]" in argv[2]


def test_local_run_from_a_folder_with_a_planted_engine(tmp_path, monkeypatch, fake_worker, launch_job):
    """Supervisor and worker of a run started in a folder holding ``engine/`` and ``tui/`` import finetui."""
    import engine.launch as L
    from tests.test_launch_local import wait_end

    marker = _plant(tmp_path, "engine", "tui", "torch")
    monkeypatch.chdir(tmp_path)
    fake_worker(2, 0.01, 1, "--env-report", "PYTHONSAFEPATH")
    ref = L.start_run(launch_job())
    end = wait_end(ref, 60)
    assert end["outcome"] == "completed", (ref.run_dir / "worker.log").read_text()
    assert not marker.exists(), marker.read_text()
    if procs.SAFE_PATH:  # every process of the run inherits it (torchrun's ranks included)
        assert json.loads((ref.run_dir / "env_report.json").read_text())["set"]


@pytest.mark.slow
def test_real_run_under_torchrun_from_a_folder_with_a_planted_engine(tmp_path, monkeypatch, launch_job):
    """The CLI, the supervisor, torchrun and its two ranks: none imports the ``engine/`` / ``tui/`` planted in
    the folder the run is started from."""
    from engine import presets
    from engine.launch.rundir import read_records

    monkeypatch.delenv("FINETUI_WORKER_ARGV", raising=False)
    job = launch_job(**{"general.max_steps": 1, "launch.procs_per_node": 2, "eval.evaluation_strategy": "no",
                        "eval.checkpoint_strategy": "no"})
    preset = presets.save(job, tmp_path / "demo.toml")
    marker = _plant(tmp_path, "engine", "tui")
    r = subprocess.run(procs.module_argv(sys.executable, "tui.cli", "train", str(preset)), cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    run = next((tmp_path / "runs").iterdir())
    recs = read_records(run / "events.jsonl")
    assert recs[-1]["kind"] == "end" and recs[-1]["outcome"] == "completed"
    assert next(r for r in recs if r["kind"] == "start")["world_size"] == 2


# ------------------------------------------------------------------------------- SSH control sockets

@pytest.fixture
def no_ctl_env(monkeypatch):
    monkeypatch.delenv("FINETUI_SSH_CONTROL_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return monkeypatch


def test_control_dir_prefers_xdg_runtime_dir_and_is_private(tmp_path, no_ctl_env):
    from engine.launch import ssh

    run = tmp_path / "run-user"
    run.mkdir(mode=0o700)
    no_ctl_env.setenv("XDG_RUNTIME_DIR", str(run))
    d = ssh.control_dir()
    assert d == run / "finetui-ssh" and (d.stat().st_mode & 0o777) == 0o700
    assert f"ControlPath={d}/%C" in ssh.base_args("me@host")


@pytest.mark.parametrize("bad", ["group-writable", "world-writable", "other owner", "symlink", "file"])
def test_control_dir_that_others_can_reach_is_refused(tmp_path, no_ctl_env, bad):
    from engine.launch import ssh

    d = tmp_path / "ctl"
    if bad == "symlink":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        d.symlink_to(real)
    elif bad == "file":
        d.write_text("")
    else:
        d.mkdir()
        d.chmod({"group-writable": 0o770, "world-writable": 0o1777, "other owner": 0o700}[bad])
        if bad == "other owner":
            if os.getuid() != 0:
                pytest.skip("needs root to give a folder to another user")
            os.chown(d, 65534, 65534)
    no_ctl_env.setenv("FINETUI_SSH_CONTROL_DIR", str(d))
    with pytest.raises(ssh.SSHError) as ei:
        ssh.base_args("me@host")
    msg = str(ei.value)
    assert "\n" not in msg and str(d) in msg and "refusing to use it" in msg
    assert {"group-writable": "writable by others (mode 0770)", "world-writable": "writable by others (mode 1777)",
            "other owner": "owned by another user (uid 65534)", "symlink": "a symbolic link",
            "file": "not a folder"}[bad] in msg


def test_default_control_dir_taken_by_someone_else_stops_a_remote_run(tmp_path, no_ctl_env, launch_job, fake_worker):
    """The default /tmp folder, pre-made open by someone else: the run is refused in one line (exit 2), nothing
    is started, and ssh is never run with a socket there."""
    from engine import presets
    from tui.cli import app

    d = Path(f"/tmp/ftui-ssh-{os.getuid()}")
    if d.exists():
        pytest.skip(f"{d} exists on this machine (left as it is)")
    d.mkdir()
    try:
        d.chmod(0o777)
        preset = presets.save(launch_job(**{"launch.host": "me@127.0.0.1:1"}), tmp_path / "p.toml")
        r = CliRunner().invoke(app, ["train", str(preset)])
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and "writable by others (mode 0777)" in lines[0], r.output
        assert not list(d.iterdir())
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    finally:
        d.rmdir()


def test_without_safe_path_the_run_starts_in_its_run_directory(tmp_path, monkeypatch, fake_worker, launch_job):
    """A Python without -P (before 3.11): the supervisor goes through the -c form and every process of the run
    starts in the run directory, so the planted folder is still never imported."""
    import engine.launch as L
    from engine.launch.rundir import read_json
    from tests.test_launch_local import wait_end

    marker = _plant(tmp_path, "engine")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(procs, "SAFE_PATH", False)
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    fake_worker(2, 0.01)
    ref = L.start_run(launch_job())
    assert wait_end(ref, 60)["outcome"] == "completed", (ref.run_dir / "worker.log").read_text()
    info = read_json(ref.run_dir / "launch.json")
    assert info["cwd"] == str(ref.run_dir) and info["supervisor"][1] == "-c"
    assert not marker.exists()

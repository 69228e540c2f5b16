"""Launch fixtures: real ``sshd`` instances on 127.0.0.1 and a fake worker.

Each sshd runs ``/usr/sbin/sshd -D -f <generated config>`` on an unprivileged
port with a generated host key; the client uses a generated ssh_config (``-F``,
through ``FINETUI_SSH_CONFIG``) with a generated user key and known_hosts.  Nothing
of this machine's ``/etc/ssh`` or ``~/.ssh`` is used, and it works for root and for
an ordinary user alike (the login user is the one running the tests).  A missing
sshd skips locally and fails in CI (``require_tool``).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
FAKE_WORKER = ROOT / "tests" / "launch_fake_worker.py"
#: the login user on the test sshd instances: whoever runs the tests (root here, a runner user in CI)
USER = getpass.getuser()


def fake_worker_argv(steps: int = 10, delay: float = 0.1, ranks: int = 1, *extra: str) -> str:
    return json.dumps(["{python}", str(FAKE_WORKER), "--run-dir", "{run_dir}", "--steps", str(steps),
                       "--delay", str(delay), "--ranks", str(ranks), *extra])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    alias: str
    port: int
    dir: Path
    proc: subprocess.Popen
    host_pub: str

    @property
    def target(self) -> str:
        return f"{USER}@127.0.0.1:{self.port}"


@dataclass
class SshLab:
    dir: Path
    config: Path
    known_hosts: Path
    control_dir: Path
    nodes: list[Sshd]

    def write_config(self, path: Path, known_hosts: Path) -> Path:
        lines = []
        for n in self.nodes:
            lines += [f"Host {n.alias}", "  HostName 127.0.0.1", f"  Port {n.port}", ""]
        lines += ["Host *", f"  IdentityFile {self.dir / 'id_ed25519'}", "  IdentitiesOnly yes",
                  f"  UserKnownHostsFile {known_hosts}", "  GlobalKnownHostsFile /dev/null", f"  User {USER}",
                  "  LogLevel ERROR", ""]
        path.write_text("\n".join(lines))
        return path


def _start_sshd(base: Path, alias: str, user_pub: str) -> Sshd:
    sshd = require_tool("sshd")
    d = base / alias
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
    (d / "authorized_keys").write_text(user_pub)
    os.chmod(d / "authorized_keys", 0o600)
    if os.geteuid() == 0:  # only a root sshd chroots its privilege-separated child there
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # the free port may be taken between the probe and sshd's bind
        port = free_port()
        cfg = d / "sshd_config"
        cfg.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "PermitRootLogin prohibit-password",
            "StrictModes no", "UsePAM no", "MaxSessions 200", "MaxStartups 100:30:200", "LogLevel ERROR",
            "PrintMotd no", "AcceptEnv LANG", ""]))
        log = open(d / "sshd.log", "ab")
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        up = False
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                up = True
                break
            except OSError:
                time.sleep(0.05)
        if up:
            host_pub = (d / "host_key.pub").read_text().split()
            return Sshd(alias, port, d, proc, f"{host_pub[0]} {host_pub[1]}")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}")


@pytest.fixture(scope="session")
def ssh_lab():
    """Two sshd instances on 127.0.0.1 (aliases ftnode0, ftnode1) with client config and known_hosts."""
    require_tool("sshd")
    require_tool("ssh")
    require_tool("ssh-keygen")
    base = Path(tempfile.mkdtemp(prefix="ftssh"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "id_ed25519")], check=True)
    user_pub = (base / "id_ed25519.pub").read_text()
    nodes = [_start_sshd(base, f"ftnode{i}", user_pub) for i in range(2)]
    kh = base / "known_hosts"
    kh.write_text("".join(f"[127.0.0.1]:{n.port} {n.host_pub}\n" for n in nodes))
    ctl = Path(tempfile.mkdtemp(prefix="ftc", dir="/tmp"))
    lab = SshLab(base, base / "ssh_config", kh, ctl, nodes)
    lab.write_config(lab.config, kh)
    yield lab
    env = {**os.environ, "FINETUI_SSH_CONFIG": str(lab.config), "FINETUI_SSH_CONTROL_DIR": str(ctl)}
    for n in nodes:
        subprocess.run(["ssh", "-F", str(lab.config), "-o", f"ControlPath={ctl}/%C", "-O", "exit", n.alias],
                       env=env, capture_output=True, timeout=10)
        subprocess.run(["ssh", "-F", str(lab.config), "-o", f"ControlPath={ctl}/%C", "-O", "exit", n.target],
                       env=env, capture_output=True, timeout=10)
        n.proc.terminate()
        try:
            n.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            n.proc.kill()
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(ctl, ignore_errors=True)


@pytest.fixture
def ssh_env(ssh_lab, monkeypatch):
    """Point finetui's ssh at the lab (config + control sockets); forward the test caches to remote runs."""
    monkeypatch.setenv("FINETUI_SSH_CONFIG", str(ssh_lab.config))
    monkeypatch.setenv("FINETUI_SSH_CONTROL_DIR", str(ssh_lab.control_dir))
    monkeypatch.setenv("FINETUI_REMOTE_ENV", "FINETUI_CACHE_DIR,FINETUI_STATE_DIR")
    from engine.launch import ssh as S

    S._master_ok.clear()
    return ssh_lab


@pytest.fixture
def fake_worker(monkeypatch):
    """Use the fake worker (no torch) for runs started by this test; call it to change its arguments."""

    def use(steps: int = 10, delay: float = 0.1, ranks: int = 1, *extra: str) -> str:
        v = fake_worker_argv(steps, delay, ranks, *extra)
        monkeypatch.setenv("FINETUI_WORKER_ARGV", v)
        return v

    use()
    return use


@pytest.fixture
def launch_job(tmp_path):
    """A demo-preset job whose runs land in tmp_path/runs."""
    from engine import presets

    def make(**values):
        job = presets.load(ROOT / "presets" / "demo.toml")
        job.values["launch.runs_dir"] = str(tmp_path / "runs")
        job.values["general.max_steps"] = 3
        for k, v in values.items():
            job.values[k.replace("__", ".")] = v
        return job

    return make


PYTHON = sys.executable


def deepspeed_runner_launch(monkeypatch, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """DeepSpeed's own runner (``deepspeed.launcher.runner.main``) on ``argv`` (what follows ``python -m
    deepspeed.launcher.runner``), the process it starts captured instead of run: → (its command, its
    ``--key=value`` options)."""
    from deepspeed.launcher import runner

    started = []

    class P:
        returncode = 0

        def __init__(self, cmd, env=None):
            started.append(cmd)

        def wait(self):
            return 0

    monkeypatch.setattr(runner.subprocess, "Popen", P)
    runner.main(argv)
    (cmd,) = started
    return cmd, dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)

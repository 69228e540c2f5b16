"""A real single-node Slurm cluster on this machine: ``munged``, ``slurmctld`` and ``slurmd``.

Debian's ``slurm-wlm`` and ``munge`` (scripts/install-test-deps.sh).  Everything of the cluster lives in a
temporary folder: the munge key, socket, pid and log files, ``slurm.conf`` (this host by ``hostname -s``,
``CPUs=2``, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``, ``SelectType=select/cons_tres``,
no accounting), the state and spool folders, and ports of its own; the Slurm commands find it through
``SLURM_CONF``.  Nothing in /etc is used.  The daemons run as root (slurmd must, to start jobs as their user):
without root, or without the tools, the tests skip locally and fail in CI (``require_tool``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool
from tests.fake_run import wait_gone

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel")


@dataclass
class SlurmCluster:
    dir: Path
    conf: Path
    node: str
    procs: dict[str, int]

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True, timeout=60, check=check)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields of a job ({} once Slurm has forgotten it)."""
        return self._show("job", str(job_id))

    def node_state(self) -> str:
        """``scontrol show node``'s State of the cluster's node (IDLE, ALLOCATED, COMPLETING…)."""
        return self._show("node", self.node).get("State", "")

    def _show(self, kind: str, name: str) -> dict[str, str]:
        p = self.run("scontrol", "show", kind, "-o", name, check=False)
        return dict(kv.split("=", 1) for kv in p.stdout.split() if "=" in kv)


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _pid(path: Path, timeout: float = 15.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise RuntimeError(f"{path} was not written")


def _stop(pid: int) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    if wait_gone(pid, 10):
        return
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def start_cluster(base: Path) -> SlurmCluster:
    paths = {t: shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin") or require_tool(t) for t in TOOLS}
    if os.geteuid() != 0:
        msg = "the Slurm test cluster needs root (slurmd starts jobs as their user)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    node = socket.gethostname().split(".")[0]
    (base / "state").mkdir()
    (base / "spool").mkdir()
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    sock = base / "munge.sock"
    procs: dict[str, int] = {}
    subprocess.run([paths["munged"], f"--key-file={key}", f"--socket={sock}", f"--pid-file={base / 'munged.pid'}",
                    f"--log-file={base / 'munged.log'}", f"--seed-file={base / 'munged.seed'}", "--force"],
                   check=True, capture_output=True, timeout=30)
    procs["munged"] = _pid(base / "munged.pid")
    ctld_port, d_port = _free_ports(2)
    conf = base / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=finetui-test", f"SlurmctldHost={node}(127.0.0.1)", f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={d_port}", "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
        "SlurmUser=root", "SlurmdUser=root", f"StateSaveLocation={base / 'state'}", f"SlurmdSpoolDir={base / 'spool'}",
        f"SlurmctldPidFile={base / 'slurmctld.pid'}", f"SlurmdPidFile={base / 'slurmd.pid'}",
        f"SlurmctldLogFile={base / 'slurmctld.log'}", f"SlurmdLogFile={base / 'slurmd.log'}",
        f"PlugStackConfig={base / 'plugstack.conf'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "SchedulerType=sched/backfill", "MpiDefault=none", "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "KillWait=5", "MinJobAge=600", "InactiveLimit=0", "SchedulerParameters=sched_interval=2",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP", ""]))
    (base / "plugstack.conf").write_text("")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cl = SlurmCluster(base, conf, node, procs)
    try:
        subprocess.run([paths["slurmctld"], "-i"], env=env, check=True, capture_output=True, timeout=30)
        procs["slurmctld"] = _pid(base / "slurmctld.pid")
        subprocess.run([paths["slurmd"]], env=env, check=True, capture_output=True, timeout=30)
        procs["slurmd"] = _pid(base / "slurmd.pid")
        deadline = time.time() + 60
        while time.time() < deadline:
            p = cl.run("sinfo", "-h", "-o", "%T", check=False)
            if p.returncode == 0 and p.stdout.strip() in ("idle", "mixed", "allocated"):
                return cl
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not come up: {cl.run('sinfo', check=False).stdout}"
                           f"{(base / 'slurmctld.log').read_text()[-2000:]}")
    except BaseException:
        stop_cluster(cl)
        raise


def stop_cluster(cl: SlurmCluster) -> None:
    if "slurmctld" in cl.procs:  # cancel what is left, so slurmd's job processes go with it
        subprocess.run(["scancel", "--full", "--signal=KILL", "-u", str(os.getuid())], env=cl.env(),
                       capture_output=True, timeout=30)
        time.sleep(1)
    for name in ("slurmd", "slurmctld", "munged"):
        if name in cl.procs:
            _stop(cl.procs[name])


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node Slurm cluster (the Slurm commands of the session find it through SLURM_CONF)."""
    base = Path(tempfile.mkdtemp(prefix="ftslurm"))
    cl = start_cluster(base)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cl.conf)
    try:
        yield cl
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        stop_cluster(cl)
        shutil.rmtree(base, ignore_errors=True)

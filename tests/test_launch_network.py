"""Multi-node on real networks: the rendezvous address and interface fields, and doctor's rendezvous check."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.launch as L
from engine.launch.rundir import read_json
from tests.fixtures_launch import PYTHON
from tests.test_launch_local import wait_for


def test_interface_fields_are_checked(launch_job):
    from engine.schema import ConfigError

    job = launch_job(**{"launch.gloo_socket_ifname": "eth 0", "launch.nccl_socket_ifname": "^docker,lo"})
    with pytest.raises(ConfigError) as e:
        job.validate()
    lines = str(e.value).splitlines()
    assert lines == ["launch.gloo_socket_ifname: 'eth 0' is not a network interface name (allowed: a name like "
                     "eth0 or ib0, a comma list, ^ to exclude)"]


def test_interface_fields_reach_every_process_of_the_run(fake_worker, launch_job):
    """The fields, not a guess: every process of the run has GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME."""
    fake_worker(1000, 0.05)
    ref = L.start_run(launch_job(**{"launch.gloo_socket_ifname": "lo", "launch.nccl_socket_ifname": "^docker,lo"}))
    try:
        pid = read_json(ref.run_dir / "launch.json")["pid"]
        env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        assert env["GLOO_SOCKET_IFNAME"] == "lo" and env["NCCL_SOCKET_IFNAME"] == "^docker,lo"
    finally:
        assert L.stop_run(ref, grace=2) == "stopped"


def test_doctor_says_when_a_node_cannot_reach_the_rendezvous(ssh_env):
    from engine.launch import doctor as D

    hosts = [n.alias for n in ssh_env.nodes]
    good = D.rendezvous(hosts, PYTHON)
    assert [c.ok for c in good] == [True, True] and "reaches the rendezvous 127.0.0.1:" in good[1].text
    bad = D.rendezvous(hosts, PYTHON, master_addr="192.0.2.1")  # TEST-NET-1: routed nowhere
    assert [c.ok for c in bad] == [False, False]
    assert "cannot reach the rendezvous 192.0.2.1:" in bad[1].text and "launch.master_addr" in bad[1].line()
    # a port taken on the first node: said so, with the field to change
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        s.listen(1)
        taken = s.getsockname()[1]
        busy = D.rendezvous(hosts, PYTHON, master_port=taken)
    assert len(busy) == 1 and not busy[0].ok and f"port {taken} is taken" in busy[0].text
    assert "launch.master_port" in busy[0].line()

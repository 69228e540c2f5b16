"""SSH runs against real sshd instances on 127.0.0.1 (see fixtures_launch.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import engine.launch as L
from engine.errors import FinetuiError
from engine.launch import procs, ssh
from engine.launch.rundir import read_json, read_records
from tests.fixtures_launch import PYTHON, ROOT
from tests.test_launch_local import FINETUI, proc_pgids, wait_for

pytestmark = pytest.mark.slow


def remote_job(launch_job, tmp_path, target, **values):
    wd = tmp_path / "remote work 'dir' $HOME \"q\""
    return launch_job(**{"launch.host": target, "launch.remote_python": PYTHON,
                         "launch.remote_workdir": str(wd), **values})


def master_pid(target: str) -> int | None:
    """The pid of the ControlMaster finetui's ssh calls share for ``target`` (None without one)."""
    args = ssh.base_args(target)
    r = subprocess.run(args[:-1] + ["-O", "check", args[-1]], capture_output=True, text=True, timeout=15)
    m = re.search(r"pid=(\d+)", r.stderr + r.stdout)
    return int(m.group(1)) if r.returncode == 0 and m else None


def mirror(ref):
    return read_records(ref.run_dir / "events.jsonl")


def remote_events(ref):
    return read_records(Path(ref.remote["run_dir"]) / "events.jsonl")


def test_remote_run_to_completion_with_local_data(ssh_env, fake_worker, launch_job, tmp_path):
    fake_worker(8, 0.05, 2, "--env-report", "FT_REMOTE_SECRET")
    data = tmp_path / "my data's file $x.jsonl"
    data.write_text('{"instruction": "a", "input": "", "output": "b"}\n' * 4)
    more = tmp_path / "more.json"
    more.write_text('[{"instruction": "c", "input": "", "output": "d"}]')
    node = ssh_env.nodes[0]
    job = remote_job(launch_job, tmp_path, node.target, **{"data.train_path": f"{data},{more}"})
    ref = L.start_run(job, secrets={"FT_REMOTE_SECRET": "hush-hush"})
    assert ref.is_remote and ref.host == node.target
    rdir = Path(ref.remote["run_dir"])
    assert rdir.parent == tmp_path / "remote work 'dir' $HOME \"q\"" and rdir.name == ref.name
    # the data file was copied and the remote config points at the copy
    cfg = (rdir / "config.toml").read_text()
    from engine import presets

    from engine.datapaths import data_paths

    sent = [Path(p) for p in data_paths(presets.load(rdir / "config.toml").resolved()["data.train_path"])]
    assert [p.parent for p in sent] == [rdir / "data"] * 2
    assert [p.read_text() for p in sent] == [data.read_text(), more.read_text()]
    assert (ref.run_dir / "config.toml").read_text() == cfg
    src = L.event_source(ref)
    got = []
    wait_for(lambda: got.extend(src.read()) or src.done, 60)
    assert got[-1]["kind"] == "end" and got[-1]["outcome"] == "completed"
    assert [r["step"] for r in got if r["kind"] == "log"] == list(range(1, 9))
    assert mirror(ref) == remote_events(ref) == got
    rep = json.loads((rdir / "env_report.json").read_text())
    assert rep["set"] and rep["len"] == 9
    for f in list(rdir.rglob("*")) + list(ref.run_dir.rglob("*")):
        if f.is_file():
            assert "hush-hush" not in f.read_text(errors="replace"), f
    info = L.list_runs(tmp_path / "runs")[0]
    assert (info.status, info.host, info.step) == ("completed", node.target, 8)
    r = subprocess.run(FINETUI + ["logs", ref.name, "--runs-dir", str(tmp_path / "runs")], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert "fake worker: step 8" in r.stdout


def test_remote_client_killed_run_continues_reattach_no_gap(ssh_env, fake_worker, launch_job, tmp_path):
    fake_worker(60, 0.2, 1)  # 12 s: both connection losses land mid-run even on a loaded machine
    node = ssh_env.nodes[1]
    preset = tmp_path / "job.toml"
    from engine import presets

    presets.save(remote_job(launch_job, tmp_path, node.alias), preset)
    p = subprocess.Popen(FINETUI + ["train", str(preset)], cwd=tmp_path, env=dict(os.environ),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = tmp_path / "runs"
    run = wait_for(lambda: next((d for d in runs.iterdir() if (d / "remote.json").exists()), None)
                   if runs.is_dir() else None, 60)
    ref = L.resolve_run(run.name, runs)
    wait_for(lambda: any(r["kind"] == "log" for r in mirror(ref)), 60)
    p.kill()  # the client dies; the remote run does not
    p.wait()
    time.sleep(0.3)
    assert L.list_runs(runs)[0].status == "running"
    # reattach from the start; mid-run, kill the tail's ssh client, then the shared connection itself
    # (the ControlMaster every command multiplexes over: a real connection loss)
    src = L.event_source(ref)
    got = []
    kills = 0
    first_master = None
    deadline = time.time() + 60
    while not src.done and time.time() < deadline:
        got.extend(src.read())
        if src._proc is not None and kills < 2 and len(got) > 15 * (kills + 1):
            if kills == 0:
                src._proc.kill()
            else:
                first_master = master_pid(node.alias)
                assert first_master is not None
                os.kill(first_master, signal.SIGKILL)
            kills += 1
        time.sleep(0.05)
    assert kills == 2 and src.reconnects >= 2
    assert master_pid(node.alias) not in (None, first_master)  # the reconnect opened a new shared connection
    assert got[-1]["kind"] == "end" and got[-1]["outcome"] == "completed"
    steps = [r["step"] for r in got if r["kind"] == "log"]
    assert steps == list(range(1, 61))  # no gap, no duplicate
    assert got == remote_events(ref) == mirror(ref)
    # attach through the CLI after the end: the full history
    r = subprocess.run(FINETUI + ["attach", ref.name, "--runs-dir", str(runs), "--json"], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and [json.loads(x) for x in r.stdout.splitlines()] == got


def test_remote_stop_leaves_no_process(ssh_env, fake_worker, launch_job, tmp_path):
    fake_worker(1000, 0.05, 3, "--ignore-term", "--setsid-ranks")
    node = ssh_env.nodes[0]
    ref = L.start_run(remote_job(launch_job, tmp_path, node.target))
    pgid = ref.remote["nodes"][0]["pgid"]
    token = read_json(Path(ref.remote["run_dir"]) / "launch.json")["token"]
    wait_for(lambda: any(r["kind"] == "log" for r in remote_events(ref)), 60)
    wait_for(lambda: len(procs.token_pids(token)) >= 4)
    assert L.stop_run(ref, grace=1.0) == "stopped"
    assert [p for p, g in proc_pgids().items() if g == pgid] == []
    assert procs.token_pids(token) == []
    assert mirror(ref)[-1]["outcome"] == "stopped"
    assert L.list_runs(tmp_path / "runs")[0].status == "stopped"
    L.delete_run(ref)
    assert not Path(ref.remote["run_dir"]).exists() and not ref.run_dir.exists()


def test_remote_lost_and_scheduled_cancel(ssh_env, fake_worker, launch_job, tmp_path, monkeypatch):
    import signal

    fake_worker(1000, 0.05, 1)
    node = ssh_env.nodes[0]
    lost = L.start_run(remote_job(launch_job, tmp_path, node.target, **{"launch.run_name": "r-lost"}))
    wait_for(lambda: any(r["kind"] == "log" for r in remote_events(lost)), 60)
    os.killpg(lost.remote["nodes"][0]["pgid"], signal.SIGKILL)
    monkeypatch.setattr(L, "parse_start_at", lambda t: time.time() + 3600 if t else None)
    sched = L.start_run(remote_job(launch_job, tmp_path, node.target,
                                   **{"launch.run_name": "r-sched", "launch.start_at": "2099-01-01 10:00"}))
    time.sleep(0.5)
    st = {r.name: r.status for r in L.list_runs(tmp_path / "runs")}
    assert st == {"r-lost": "lost", "r-sched": "scheduled"}
    src = L.event_source(lost)
    wait_for(lambda: src.read() is not None and src.done, 30)
    assert src.lost
    assert L.stop_run(sched) == "stopped"
    assert not any(g == sched.remote["nodes"][0]["pgid"] for g in proc_pgids().values())


def test_unreachable_host_and_host_keys(ssh_env, fake_worker, launch_job, tmp_path):
    from tests.fixtures_launch import free_port

    port = free_port()
    with pytest.raises(L.LaunchError, match=rf"cannot reach root@127.0.0.1:{port} .*connection refused"):
        L.start_run(remote_job(launch_job, tmp_path, f"root@127.0.0.1:{port}"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # unknown host key: a config whose known_hosts is empty
    node = ssh_env.nodes[0]
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    os.environ["FINETUI_SSH_CONFIG"] = str(ssh_env.write_config(tmp_path / "cfg_unknown", empty))
    ssh._master_ok.clear()
    ctl = tmp_path / "c"
    os.environ["FINETUI_SSH_CONTROL_DIR"] = str(ctl)  # no master shared with the trusted config
    with pytest.raises(L.LaunchError) as ei:
        L.start_run(remote_job(launch_job, tmp_path, node.alias))
    msg = str(ei.value)
    assert "host key" in msg and "not known" in msg and f"ssh-keyscan -p {node.port} 127.0.0.1" in msg
    # changed host key
    other = ssh_env.nodes[1].host_pub
    bad = tmp_path / "known_hosts_bad"
    bad.write_text(f"[127.0.0.1]:{node.port} {other}\n")
    os.environ["FINETUI_SSH_CONFIG"] = str(ssh_env.write_config(tmp_path / "cfg_changed", bad))
    ssh._master_ok.clear()
    r = subprocess.run(FINETUI + ["train", str(_save(launch_job, tmp_path, node.target)), "--detach"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path, env=dict(os.environ))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "CHANGED" in r.stderr and "ssh-keygen -R" in r.stderr
    r = subprocess.run(FINETUI + ["doctor", "--host", f"root@127.0.0.1:{port}"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ))
    assert r.returncode == 1 and "problem" in r.stdout and "connection refused" in r.stdout


def _save(launch_job, tmp_path, target):
    from engine import presets

    return presets.save(remote_job(launch_job, tmp_path, target), tmp_path / "remote.toml")


def test_doctor_remote(ssh_env):
    node = ssh_env.nodes[0]
    r = subprocess.run(FINETUI + ["doctor", "--host", node.alias, "--python", PYTHON], capture_output=True,
                       text=True, timeout=180, env=dict(os.environ))
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    topics = {ln.split()[1]: ln.split()[0] for ln in lines}
    assert topics["ssh"] == "ok" and topics["python"] == "ok" and topics["finetui"] == "ok"
    assert topics["torch"] == "ok" and "disk" in topics and "gpus" in topics and "hub" in topics
    # a multi-node preset: every node is checked
    from engine import presets

    job = presets.load(ROOT / "presets" / "demo.toml")
    job.values.update({"launch.nodes": 2, "launch.hosts": [n.alias for n in ssh_env.nodes],
                       "launch.remote_python": PYTHON})
    preset = presets.save(job, Path(ssh_env.dir) / "two-nodes.toml")
    r = subprocess.run(FINETUI + ["doctor", "--preset", str(preset)], capture_output=True, text=True, timeout=240,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert [ln for ln in out if ln.startswith("#")] == ["# node 0: ftnode0 (master)", "# node 1: ftnode1",
                                                        "# rendezvous"]
    assert sum(ln.split()[:2] == ["ok", "finetui"] for ln in out) == 2
    # every node reaches the first one's rendezvous port (a listener there for the check)
    assert [ln.split()[:4] for ln in out if ln.split()[1:2] == ["rdzv"]] == [
        ["ok", "rdzv", "node", "0"], ["ok", "rdzv", "node", "1"]], r.stdout
    r = subprocess.run(FINETUI + ["doctor", "--host", node.alias, "--python", "/nonexistent/python"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert r.returncode == 1 and "not found" in r.stdout and "fix:" in r.stdout


def test_two_node_stop_stops_every_node(ssh_env, fake_worker, launch_job, tmp_path):
    """A two-node run (fake worker on each node, ranks in sessions of their own): one stop ends every node."""
    from tests.fixtures_launch import free_port

    fake_worker(1000, 0.05, 2, "--ignore-term", "--setsid-ranks")
    hosts = [n.alias for n in ssh_env.nodes]
    ref = L.start_run(remote_job(launch_job, tmp_path, "local", **{"launch.nodes": 2, "launch.hosts": hosts,
                                                                   "launch.master_port": free_port()}))
    nodes = ref.remote["nodes"]
    assert [n["host"] for n in nodes] == hosts and nodes[1]["run_dir"].endswith(".node1")
    tokens = [read_json(Path(n["run_dir"]) / "launch.json")["token"] for n in nodes]
    # gloo must not bind to whatever the hostname resolves to: the interface that routes to the master (here lo)
    assert [read_json(Path(n["run_dir"]) / "launch.json")["gloo_socket_ifname"] for n in nodes] == ["lo", "lo"]
    for t in tokens:
        wait_for(lambda: len(procs.token_pids(t)) >= 3, 60)  # supervisor + worker + 1 rank on each node
    src = L.event_source(ref)
    got = []
    wait_for(lambda: got.extend(src.read()) or any(r["kind"] == "log" for r in got), 60)
    assert L.list_runs(tmp_path / "runs")[0].status == "running"
    assert L.stop_run(ref, grace=1.0) == "stopped"
    assert all(procs.token_pids(t) == [] for t in tokens)
    assert not any(g in (nodes[0]["pgid"], nodes[1]["pgid"]) for g in proc_pgids().values())
    assert L.list_runs(tmp_path / "runs")[0].status == "stopped"
    wait_for(lambda: got.extend(src.read()) or src.done, 30)
    assert got[-1]["kind"] == "end" and got[-1]["outcome"] == "stopped"


def test_hostile_targets_are_refused_before_ssh(fake_worker, launch_job, tmp_path):
    """An SSH target that ssh would read as an option (or that holds spaces) never reaches ssh's argv."""
    marker = tmp_path / "pwned"
    for target in (f"-oProxyCommand=touch {marker}", "-oProxyCommand=id", "host name", "a@b\tc"):
        # (refused at validation now: launch.host is checked as [user@]host[:port] or an alias)
        with pytest.raises(FinetuiError, match=r"launch.host: .*(starts with `-`|is not a host)"):
            L.start_run(launch_job(**{"launch.host": target, "launch.remote_python": PYTHON}))
    assert not marker.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_two_node_node_fails_before_rendezvous(ssh_env, fake_worker, launch_job, tmp_path):
    """One node fails before rank 0 wrote anything: the run ends failed with that node's reason at once (not after
    torchrun's join timeout) and the node still waiting is stopped."""
    fake_worker(1000, 0.05, 1, "--fail-if-dir-endswith", ".node1", "--start-delay", "120")
    hosts = [n.alias for n in ssh_env.nodes]
    ref = L.start_run(remote_job(launch_job, tmp_path, "local", **{"launch.nodes": 2, "launch.hosts": hosts}))
    nodes = ref.remote["nodes"]
    # no master_port set: a free port on the master host, not torch's 29500 (that any other job there may hold)
    ports = {read_json(Path(n["run_dir"]) / "launch.json")["master_port"] for n in nodes}
    assert len(ports) == 1 and ports.pop() not in (None, 29500)
    token0 = read_json(Path(nodes[0]["run_dir"]) / "launch.json")["token"]
    src = L.event_source(ref)
    got = []
    t = time.time()
    wait_for(lambda: got.extend(src.read()) or src.done, 60)
    assert time.time() - t < 30
    assert got[-1]["kind"] == "end" and got[-1]["outcome"] == "failed"
    err = next(r for r in got if r["kind"] == "error")
    assert "cannot reach the rendezvous" in err["message"]
    assert ref.remote["events_node"] == 1
    wait_for(lambda: procs.token_pids(token0) == [], 20)
    info = L.list_runs(tmp_path / "runs")[0]
    assert info.status == "failed" and "rendezvous" in (info.error or "")


def test_two_node_failure_names_the_other_nodes_reason(ssh_env, fake_worker, launch_job, tmp_path):
    """Rank 0 fails after another node died: `runs` shows that node's reason too, not only rank 0's."""
    from tests.fixtures_launch import free_port

    fake_worker(50, 0.05, 1, "--fail-if-dir-endswith", ".node1", "--fail-at", "10")
    hosts = [n.alias for n in ssh_env.nodes]
    ref = L.start_run(remote_job(launch_job, tmp_path, "local", **{"launch.nodes": 2, "launch.hosts": hosts,
                                                                   "launch.master_port": free_port()}))
    nodes = ref.remote["nodes"]
    wait_for(lambda: read_records(Path(nodes[0]["run_dir"]) / "events.jsonl"), 30)
    src = L.event_source(ref)
    got = []
    wait_for(lambda: got.extend(src.read()) or src.done, 60)
    assert got[-1]["outcome"] == "failed" and ref.remote["events_node"] == 0
    info = L.list_runs(tmp_path / "runs")[0]
    assert info.status == "failed"
    assert info.error.startswith(f"{hosts[1]}: ") and "cannot reach the rendezvous" in info.error
    assert "rank 0: " in info.error and "boom" in info.error
    r = subprocess.run(FINETUI + ["runs", "--runs-dir", str(tmp_path / "runs"), "--json"], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert "cannot reach the rendezvous" in json.loads(r.stdout.splitlines()[0])["error"]
    assert json.loads(r.stdout.splitlines()[0])["host"] == ",".join(hosts)
    # each node's worker.log
    logs = [subprocess.run(FINETUI + ["logs", ref.name, "--runs-dir", str(tmp_path / "runs"), *extra],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
            for extra in ([], ["--node", "1"], ["--node", "2"])]
    assert "fake worker: boom" in logs[0].stdout and "rendezvous" not in logs[0].stdout
    assert "fake worker: cannot reach the rendezvous" in logs[1].stdout
    assert logs[2].returncode == 2 and "--node takes 0 to 1" in logs[2].stderr


def test_two_node_scheduled_listed_and_cancelled(ssh_env, fake_worker, launch_job, tmp_path, monkeypatch):
    fake_worker(5, 0.01)
    monkeypatch.setattr(L, "parse_start_at", lambda t: time.time() + 3600 if t else None)
    hosts = [n.alias for n in ssh_env.nodes]
    ref = L.start_run(remote_job(launch_job, tmp_path, "local", **{"launch.nodes": 2, "launch.hosts": hosts,
                                                                   "launch.start_at": "2099-01-01 10:00"}))
    time.sleep(0.5)
    (info,) = L.list_runs(tmp_path / "runs")
    assert info.status == "scheduled" and info.host == ",".join(hosts) and info.start_at > time.time() + 3000
    assert L.stop_run(ref, grace=2) == "stopped"
    for n in ref.remote["nodes"]:
        launch = read_json(Path(n["run_dir"]) / "launch.json")
        assert procs.run_pids(launch["pgid"], launch["token"]) == []
        assert not any(r["kind"] == "start" for r in read_records(Path(n["run_dir"]) / "events.jsonl"))
    assert L.list_runs(tmp_path / "runs")[0].status == "stopped"
    assert [r["kind"] for r in mirror(ref)] == ["end"]  # cancelled before anything started


@pytest.mark.parametrize("addr", [None, "10.1.2.3"])
def test_master_address_of_a_multi_node_run(addr, tmp_path, monkeypatch):
    """launch.master_addr, when set, is the address every node's launcher is given; unset, the first
    node's host name as ssh resolves it (the SSH layer is faked here: no connection is made)."""
    from engine import presets
    from engine.launch import remote as R

    job = presets.load(Path(__file__).resolve().parent.parent / "presets" / "demo.toml")
    job.values.update({"launch.hosts": ["node-a", "node-b"], "launch.nodes": 2, "launch.master_port": 29600})
    if addr:
        job.values["launch.master_addr"] = addr
    assert not [p for p in job.problems() if p.field.startswith("launch.")]
    sent = []

    def node(target, python, req, files, progress):
        sent.append((target, req))
        return {"run_dir": f"/remote/{req['name']}", "pid": 1, "pgid": 1, "command": ["torchrun"]}

    monkeypatch.setattr(R.ssh, "ensure_master", lambda host: None)
    monkeypatch.setattr(R.ssh, "describe", lambda host: (f"{host}.example.org", 22, "me"))
    monkeypatch.setattr(R, "_start_node", node)
    local = tmp_path / "run"
    local.mkdir()
    R.start(job, job.resolved(), local, secrets={}, start_at=None)
    assert [t for t, _ in sent] == ["node-a", "node-b"]
    want = addr or "node-a.example.org"
    assert all(req["master_addr"] == want and req["master_port"] == 29600 for _, req in sent)


def test_data_already_on_the_host_is_read_in_place(ssh_env, fake_worker, launch_job, tmp_path, monkeypatch):
    """A data path that exists only on the remote host (~ there is the login's home) is not sent: the run reads
    it where it is; a path that exists on neither side is one sentence naming the host."""
    import pwd

    fake_worker(2, 0.05)
    node = ssh_env.nodes[0]
    remote_home = Path(pwd.getpwuid(os.getuid()).pw_dir)  # the login's home on the "remote" host
    name = f"finetui-test-remote-data-{os.getpid()}.jsonl"
    there = remote_home / name
    there.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    try:
        monkeypatch.setenv("HOME", str(tmp_path / "laptop-home"))  # this machine's ~ is elsewhere
        local = tmp_path / "local.jsonl"
        local.write_text('{"instruction": "c", "input": "", "output": "d"}\n')
        job = remote_job(launch_job, tmp_path, node.target, **{"data.train_path": f"~/{name},{local}"})
        ref = L.start_run(job)
        from engine import presets
        from engine.datapaths import data_paths

        rdir = Path(ref.remote["run_dir"])
        got = data_paths(presets.load(rdir / "config.toml").resolved()["data.train_path"])
        assert got == [str(there), str(rdir / "data" / "0_1_local.jsonl")]
        assert sorted(p.name for p in (rdir / "data").iterdir()) == ["0_1_local.jsonl"]  # only the local file sent
        assert ref.remote["data_sources"] == {"data.train_path": f"~/{name},{local}"}
        src = L.event_source(ref)
        wait_for(lambda: src.read() is not None and src.done, 60)
        job = remote_job(launch_job, tmp_path, node.target, **{"data.train_path": "~/nowhere.jsonl"})
        with pytest.raises(L.LaunchError, match=rf"^data.train_path: ~/nowhere.jsonl exists neither on this machine "
                                                rf"nor on {node.target} "):
            L.start_run(job)
    finally:
        there.unlink()

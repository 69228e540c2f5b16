"""Run directories on *this* machine: start, status, stop.

Used by the public API for local runs and by ``remote_agent`` on a remote host
(the same code runs on both sides, so a remote run behaves exactly like a local
one).  No torch import: the worker command comes from ``engine.train.command``,
a module that builds argv only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from engine.schema import LOCAL_HOST, MASTER_PORT
from engine.events import EVENTS_FILE, summarize
from engine.launch import procs
from engine.safeio import atomic_write
from engine.launch.rundir import (LAUNCH_FILE, LOG_FILE, SUPERVISOR_FILE, LaunchError, append_end_if_missing,
                                  has_end, read_json, read_records, update_json, write_json)

#: Test hook: a JSON list used instead of the real worker command; ``{run_dir}`` and
#: ``{python}`` are substituted.  Forwarded to remote agents with the run's environment.
WORKER_OVERRIDE_ENV = "FINETUI_WORKER_ARGV"


def worker_command(res: dict[str, Any], run_dir: Path, *, nnodes: int = 1, node_rank: int = 0,
                   master_addr: str = "127.0.0.1", master_port: int | None = None, rdzv: str = "static",
                   python: str | None = None, env: dict[str, str] | None = None,
                   rdzv_id: str | None = None, hosts: list[str] | None = None) -> list[str]:
    python = python or procs.python_exe()
    override = (env or {}).get(WORKER_OVERRIDE_ENV) or os.environ.get(WORKER_OVERRIDE_ENV)
    if override:
        argv = json.loads(override)
        return [str(a).replace("{run_dir}", str(run_dir)).replace("{python}", python) for a in argv]
    from engine.train.command import worker_argv

    kw: dict[str, Any] = dict(nnodes=nnodes, node_rank=node_rank, master_addr=master_addr, rdzv=rdzv, python=python,
                              visible=(os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES"))
    if master_port is not None:
        kw["master_port"] = master_port
    if rdzv_id is not None:
        kw["rdzv_id"] = rdzv_id
    if res.get("launch.launcher") == "deepspeed" and nnodes > 1:
        kw["hostfile"] = write_hostfile(Path(run_dir), hosts or [f"node{i}" for i in range(nnodes)],
                                        int(res.get("launch.procs_per_node") or 1))
    try:
        return [str(a) for a in worker_argv(res, Path(run_dir), **kw)]
    except ValueError as e:
        raise LaunchError(str(e)) from None


def write_hostfile(run_dir: Path, hosts: list[str], slots: int) -> Path:
    """The DeepSpeed hostfile of a multi-node run: one ``node<i> slots=<n>`` line per node, in node order.

    Every node runs its own launcher (``--no_ssh --node_rank i``), so the names are labels only (unique even
    when two nodes share an address); the comment says which host each one is.
    """
    path = Path(run_dir) / "hostfile"
    lines = ["# DeepSpeed hostfile written by finetui (node order = node rank)"]
    for i, h in enumerate(hosts):
        lines += [f"# node{i}: {' '.join(str(h).split())}", f"node{i} slots={slots}"]
    atomic_write(path, "\n".join(lines) + "\n")
    return path


def start_in_dir(run_dir: Path, res: dict[str, Any], *, env: dict[str, str] | None = None, host: str = LOCAL_HOST,
                 nnodes: int = 1, node_rank: int = 0, master_addr: str = "127.0.0.1",
                 master_port: int | None = None, rdzv: str = "static", start_at: float | None = None,
                 cwd: str | None = None, command: list[str] | None = None,
                 rdzv_id: str | None = None, hosts: list[str] | None = None) -> dict[str, Any]:
    """Start the supervisor (and through it the worker) detached; return launch.json's content."""
    run_dir = Path(run_dir).resolve()
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):  # the fields, when set, over any guess
        if res.get(f"launch.{name.lower()}"):
            full_env[name] = str(res[f"launch.{name.lower()}"]).strip()
    if nnodes > 1 and not full_env.get("GLOO_SOCKET_IFNAME"):
        # gloo binds to the address its hostname resolves to — 127.0.1.1 on many Debian/Ubuntu hosts, which the
        # other nodes cannot reach: use the interface that routes to the master instead (the user's value wins)
        ifname = route_interface(master_addr, master_port or MASTER_PORT)
        if ifname:
            full_env["GLOO_SOCKET_IFNAME"] = ifname
    if nnodes > 1 and not full_env.get("NCCL_SOCKET_IFNAME") and full_env.get("GLOO_SOCKET_IFNAME"):
        # NCCL's bootstrap picks an interface of its own (a docker bridge, a second NIC the other nodes cannot
        # reach): the one that routes to the master, as gloo's, unless the user chose
        full_env["NCCL_SOCKET_IFNAME"] = full_env["GLOO_SOCKET_IFNAME"]
    if procs.SAFE_PATH:  # no process of the run imports from the working directory (torchrun's ranks included)
        full_env["PYTHONSAFEPATH"] = "1"
    else:  # an older Python has no such switch: the run's processes start in its run directory instead
        cwd = str(run_dir)
    token = uuid.uuid4().hex
    full_env[procs.TOKEN_ENV] = token  # every process of the run carries it (torchrun's ranks make own sessions)
    if res.get("launch.launcher") == "slurm":  # a batch job: Slurm starts the ranks (engine.launch.slurm)
        from engine.launch import slurm

        return slurm.submit(run_dir, res, env=full_env, host=host, start_at=start_at, cwd=cwd)
    if command is None:
        command = worker_command(res, run_dir, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                                 master_port=master_port, rdzv=rdzv, env=full_env, rdzv_id=rdzv_id, hosts=hosts)
    info: dict[str, Any] = {
        "name": run_dir.name, "host": host, "command": command, "cwd": cwd or str(run_dir),
        "created": time.time(), "start_at": start_at, "nnodes": nnodes, "node_rank": node_rank,
        "master_addr": master_addr, "master_port": master_port, "launcher": res.get("launch.launcher", "torchrun"),
        "python": procs.python_exe(), "token": token,
    }
    if nnodes > 1:
        info["gloo_socket_ifname"] = full_env.get("GLOO_SOCKET_IFNAME")
        info["nccl_socket_ifname"] = full_env.get("NCCL_SOCKET_IFNAME")
    write_json(run_dir / LAUNCH_FILE, info)
    (run_dir / LOG_FILE).touch()
    sup = procs.module_argv(procs.python_exe(), "engine.launch.supervisor", str(run_dir))
    try:
        pid, pgid = procs.spawn_detached(sup, cwd=info["cwd"], log_path=run_dir / LOG_FILE, env=full_env)
    except OSError as e:
        raise LaunchError(f"cannot start the run in {run_dir}: {e}") from None
    # with the pid, its start time names this very process (a pid is reused; pid + start time is not)
    info.update(pid=pid, pgid=pgid, pids=[pid], started=time.time(), supervisor=sup, pid_start=procs.start_time(pid))
    write_json(run_dir / LAUNCH_FILE, info)
    return info


def dir_state(run_dir: Path) -> dict[str, Any]:
    """Status of a run directory on this machine (events + process group)."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / LAUNCH_FILE)
    sup = read_json(run_dir / SUPERVISOR_FILE)
    if info.get("slurm_job_id"):
        from engine.launch import slurm

        return slurm.dir_state(run_dir, info, sup)
    recs = read_records(run_dir / EVENTS_FILE)
    s = summarize(recs)
    alive = info_alive(info, max_age=0.5)
    ended = any(r.get("kind") == "end" for r in recs)
    if ended:
        status = s.status
    elif alive:
        status = "scheduled" if sup.get("phase") == "waiting" or (not sup and info.get("start_at")) else "running"
    elif sup.get("node_done"):
        status = "completed"  # a node of a multi-node run whose rank 0 (and events) ran elsewhere
    elif not info:
        status = "lost" if recs else "pending"
    else:
        status = "lost"
    return {"status": status, "alive": alive, "summary": s, "launch": info, "supervisor": sup,
            "events_size": _size(run_dir / EVENTS_FILE)}


def route_interface(addr: str, port: int = MASTER_PORT) -> str | None:
    """The network interface this host uses to reach ``addr`` (Linux), e.g. ``lo`` for 127.0.0.1; None if unknown."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((addr, int(port)))  # UDP: no packet is sent, the kernel just picks the route
            local = s.getsockname()[0]
    except OSError:
        return None
    if local.startswith("127."):
        return "lo" if any(n == "lo" for _, n in _interfaces()) else None
    try:
        import fcntl
        import struct
    except ImportError:
        return None
    for _, name in _interfaces():
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            if socket.inet_ntoa(raw[20:24]) == local:
                return name
        except OSError:
            continue
    return None


def _interfaces() -> list[tuple[int, str]]:
    import socket

    try:
        return socket.if_nameindex()
    except OSError:
        return []


def info_alive(info: dict[str, Any], max_age: float = 0.0) -> bool:
    """Whether any process of the run described by ``launch.json``'s content is alive (one that carries its
    token: see :func:`engine.launch.procs.run_pids`); a Slurm run's: its job is pending or running."""
    if info.get("slurm_job_id"):
        from engine.launch import slurm

        return slurm.alive(info)
    return procs.run_alive(info.get("pgid"), info.get("token"), max_age, info.get("pid_start"))


def info_pids(info: dict[str, Any]) -> list[int]:
    return procs.run_pids(info.get("pgid"), info.get("token"), 0.0, info.get("pid_start"))


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def stop_dir(run_dir: Path, grace: float = 15.0) -> str:
    """Stop a run on this machine: SIGTERM the group, SIGKILL after ``grace``, verify, record ``stopped``."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / LAUNCH_FILE)
    if info.get("slurm_job_id"):
        from engine.launch import slurm

        return slurm.stop(run_dir, info, grace)
    pgid = info.get("pgid")
    end = has_end(run_dir)
    if not info_alive(info):
        if end:
            return str(end.get("outcome", "completed"))
        append_end_if_missing(run_dir, "stopped")
        return "stopped"
    ok = procs.stop_group(pgid, grace=grace, token=info.get("token"), started=info.get("pid_start"))
    if not ok:
        left = info_pids(info)
        raise LaunchError(f"run {run_dir.name}: {len(left)} of its processes survived SIGKILL "
                          f"(pid {', '.join(map(str, left[:8]))}); it is not stopped")
    update_json(run_dir / SUPERVISOR_FILE, stopped_at=time.time())
    append_end_if_missing(run_dir, "stopped")
    end = has_end(run_dir)
    return str(end.get("outcome", "stopped")) if end else "stopped"


def python_version() -> str:
    return sys.version.split()[0]

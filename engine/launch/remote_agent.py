"""The remote side of an SSH run: ``python -m engine.launch.remote_agent COMMAND …``.

Runs on the GPU server (finetui installed there) and uses the very code a local
run uses (the node's own launch backend, ``engine.launch.backends``: local or
slurm), so a remote run is started, observed and stopped exactly like a local
one.  Requests that carry secrets come on stdin
(a JSON line), never in argv or files.  Answers are one JSON line on stdout;
``tail`` and ``log`` stream raw bytes.  Standard library (+ engine) only.

Commands: start, status, tail, log, stop, delete, doctor, version, port, paths.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from engine.schema import REMOTE_WORKDIR
from engine.events import EVENTS_FILE
from engine.launch.rundir import CONFIG_FILE, LOG_FILE

EXIT_LOST = 3
LOST_GRACE = 3.0  # seconds a run's processes are gone without an end before it counts as lost


def _out(obj) -> None:  # noqa: ANN001
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def _fail(msg: str) -> int:
    _out({"error": msg})
    return 1


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("finetui")
    except Exception:
        return "unknown"


# ------------------------------------------------------------------ start

def cmd_start(a: argparse.Namespace) -> int:
    from engine import presets
    from engine.launch import backends
    from engine.launch.rundir import LaunchError

    import signal

    # a dropped connection (SIGHUP) ends the start like any failure: the half-made run directory goes
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(1))
    stdin = sys.stdin.buffer
    req = json.loads(stdin.readline() or b"{}")
    workdir = Path(os.path.expanduser(req["workdir"])).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / req["name"]
    try:
        run_dir.mkdir()
    except FileExistsError:
        return _fail(f"a run named {req['name']} already exists in {workdir} on {socket.gethostname()}")
    try:  # anything that stops the start removes the half-made run directory: the same name can be tried again
        if req.get("tar"):
            why = _extract_upload(stdin, run_dir)
            if why:
                raise LaunchError(why)
        job = presets.loads(req["config_toml"], CONFIG_FILE)
        for name, rel in (req.get("rewrite") or {}).items():
            job.values[name] = str(run_dir / rel)
        presets.save(job, run_dir / CONFIG_FILE, resolved=True)
        res = job.resolved()
        env = {str(k): str(v) for k, v in (req.get("env") or {}).items()}
        backend = backends.for_job(res, here=True)  # the node's own: local or slurm
        info = backend.start_here(run_dir, res, env=env, host=req.get("host_label") or socket.gethostname(),
                                  nnodes=int(req.get("nnodes", 1)), node_rank=int(req.get("node_rank", 0)),
                                  master_addr=req.get("master_addr") or "127.0.0.1",
                                  master_port=req.get("master_port"), rdzv=req.get("rdzv") or "static",
                                  start_at=req.get("start_at"), cwd=str(run_dir), rdzv_id=req.get("rdzv_id"),
                                  hosts=req.get("hosts"))
    except BaseException as e:  # noqa: BLE001 - one line back to the client, nothing left behind
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(e, LaunchError):
            return _fail(str(e))
        if isinstance(e, (tarfile.TarError, EOFError, OSError)):
            return _fail(f"the data upload to {socket.gethostname()} failed ({type(e).__name__}: {e})")
        if isinstance(e, Exception):
            return _fail(f"cannot start the run on {socket.gethostname()}: {type(e).__name__}: {e}")
        raise
    _out({"run_dir": str(run_dir), "pid": info.get("pid"), "pgid": info.get("pgid"), "command": info["command"],
          "hostname": socket.gethostname(), "config_toml": (run_dir / CONFIG_FILE).read_text(),
          **({"slurm_job_id": info["slurm_job_id"]} if info.get("slurm_job_id") else {})})
    return 0


def _extract_upload(stream, run_dir: Path) -> str | None:  # noqa: ANN001
    """Unpack the uploaded data tar (streamed) into ``run_dir``; a member that is absolute, climbs out with
    ``..``, or is anything but a file or folder is refused → the reason (one line), else None."""
    from engine.safeio import inside

    with tarfile.open(fileobj=stream, mode="r|") as tf:
        for m in tf:
            _, why = inside(run_dir, m.name)
            if why is None and not (m.isfile() or m.isdir()):
                why = "is a link or a special file (only files and folders are sent)"
            if why is None and m.name.split("/", 1)[0] != "data":
                why = "is not under data/ (only the run's data is sent)"
            if why:
                return f"the uploaded data member `{m.name}` {why}; nothing was started"
            if DATA_FILTER:
                tf.extract(m, run_dir, filter="data")  # (and tarfile's own checks on top)
            else:  # Python < 3.11.4 (a remote host's python3): what the data filter does to a file or folder
                _as_data(m)
                tf.extract(m, run_dir)
    return None


#: tarfile's ``data`` extraction filter exists (Python ≥ 3.11.4, 3.8.17, 3.9.17, 3.10.12)
DATA_FILTER = hasattr(tarfile, "data_filter")


def _as_data(m: tarfile.TarInfo) -> None:
    """tarfile's ``data`` filter by hand: no set-uid / set-gid / sticky bits, no write for group or others, the
    owner reads and writes files (and enters folders), no execute for others where the owner has none, and the
    files belong to whoever unpacks them (no chown to the sender's ids)."""
    mode = m.mode & 0o755
    if m.isfile():
        mode |= 0o600
        if not mode & 0o100:
            mode &= ~0o011
    else:
        mode |= 0o700
    m.mode = mode
    m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""


# ------------------------------------------------------------------ status / tail

def cmd_status(a: argparse.Namespace) -> int:
    from engine.launch import backends

    reqs = json.loads(sys.stdin.readline() or "[]")
    out = []
    for r in reqs:
        d = Path(r["run_dir"])
        if not d.is_dir():
            out.append({"run_dir": str(d), "missing": True})
            continue
        st = backends.for_dir(d).dir_state(d)
        data = b""
        off = int(r.get("offset") or 0)
        try:
            with open(d / EVENTS_FILE, "rb") as fh:
                fh.seek(off)
                data = fh.read(int(r.get("max_bytes", 8 << 20)))
        except OSError:
            pass
        cut = data.rfind(b"\n") + 1
        out.append({"run_dir": str(d), "status": st["status"], "alive": st["alive"],
                    "phase": st["supervisor"].get("phase"), "events": base64.b64encode(data[:cut]).decode(),
                    "offset": off, "events_size": st["events_size"], **({"slurm": st["slurm"]} if st.get("slurm") else {})})
    _out(out)
    return 0


def _stdin_closed() -> bool:
    try:
        r, _, _ = select.select([sys.stdin], [], [], 0)
    except (ValueError, OSError):
        return True
    if not r:
        return False
    try:
        return os.read(sys.stdin.fileno(), 4096) == b""
    except OSError:
        return True


def _stream(path: Path, offset: int, follow: bool, done, poll: float = 0.2) -> int:  # noqa: ANN001
    """Write the file's bytes from ``offset`` to stdout; with follow, until done() says so."""
    out = sys.stdout.buffer
    pos = offset
    last_check = 0.0
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read(1 << 20)
        except FileNotFoundError:
            chunk = b""
        if chunk:
            try:
                out.write(chunk)
                out.flush()
            except (BrokenPipeError, OSError):
                return 0
            pos += len(chunk)
            continue
        if not follow:
            return 0
        if _stdin_closed():
            return 0
        now = time.monotonic()
        if now - last_check > 0.5:
            last_check = now
            r = done()
            if r is not None:
                # one last read: anything written before the processes went away
                try:
                    with open(path, "rb") as fh:
                        fh.seek(pos)
                        rest = fh.read()
                    if rest:
                        out.write(rest)
                        out.flush()
                except OSError:
                    pass
                return r
        time.sleep(poll)


def cmd_tail(a: argparse.Namespace) -> int:
    from engine.launch import backends
    from engine.launch.rundir import LAUNCH_FILE, has_end, read_json

    d = Path(a.run_dir)
    if not d.is_dir():
        sys.stderr.write(f"finetui: no run directory {d}\n")
        return 4
    info = read_json(d / LAUNCH_FILE)
    backend = backends.for_dir(d)

    gone_since: list[float] = []

    def done():
        if has_end(d):
            return 0
        if not backend.alive(info):
            # a stop appends the run's end just after its processes are gone: give it a moment
            if not gone_since:
                gone_since.append(time.monotonic())
            if time.monotonic() - gone_since[0] < LOST_GRACE:
                return None
            return 0 if has_end(d) else EXIT_LOST
        return None

    return _stream(d / a.file, a.offset, a.follow, done)


# ------------------------------------------------------------------ stop / delete

def cmd_stop(a: argparse.Namespace) -> int:
    from engine.launch import backends
    from engine.launch.rundir import LaunchError

    d = Path(a.run_dir)
    if not d.is_dir():
        return _fail(f"no run directory {d} on {socket.gethostname()}")
    try:
        backend = backends.for_dir(d)
        outcome = backend.stop_dir(d, grace=a.grace)
    except LaunchError as e:
        return _fail(str(e))
    from engine.launch.rundir import LAUNCH_FILE, read_json

    left = backend.pids(read_json(d / LAUNCH_FILE))
    _out({"outcome": outcome, "left": left})
    return 0


def cmd_delete(a: argparse.Namespace) -> int:
    from engine.launch import backends

    d = Path(a.run_dir)
    if d.is_dir():
        st = backends.for_dir(d).dir_state(d)
        if st["alive"]:
            return _fail(f"run {d.name} is still running on {socket.gethostname()}; stop it first")
        shutil.rmtree(d, ignore_errors=True)
    _out({"deleted": str(d)})
    return 0


# ------------------------------------------------------------------ doctor

#: the optional GPU packages (the ``gpu`` extra): QLoRA, flash-attention-2, Liger kernels
GPU_EXTRAS = ("bitsandbytes", "flash-attn", "liger-kernel")


def cmd_doctor(a: argparse.Namespace) -> int:
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable, "finetui": version(),
                  "hostname": socket.gethostname()}
    wd = Path(os.path.expanduser(a.workdir))
    probe = wd
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        du = shutil.disk_usage(probe)
        info["disk_free"] = du.free
        info["disk_path"] = str(probe)
    except OSError as e:
        info["disk_error"] = str(e)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            p = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20)
            info["gpus"] = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()] if p.returncode == 0 else []
            if p.returncode != 0:
                info["gpu_error"] = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["nvidia-smi failed"]
        except (OSError, subprocess.TimeoutExpired) as e:
            info["gpu_error"] = [str(e)]
    else:
        info["gpus"] = None
    if info.get("gpus"):
        from engine import gpus as G

        found = G.local() or []
        info["gpu_caps"] = [g.cap for g in found]
        info["visible_gpus"] = len(found)
    import importlib.metadata as md

    extras = {}
    for dist in GPU_EXTRAS:
        try:
            extras[dist] = md.version(dist)
        except md.PackageNotFoundError:
            extras[dist] = None
    info["gpu_extras"] = extras
    from engine import hub

    target = hub.hub_target()
    info["hub"] = {"target": f"{target[0]}:{target[1]}", "reachable": hub.reachable(*target),
                   "offline": bool(os.environ.get("HF_HUB_OFFLINE")), "cached": hub.cached_models()}
    code = ("import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available(), "
            "'devices': torch.cuda.device_count(), 'cuda_version': torch.version.cuda}))")
    try:
        from engine.launch.procs import code_argv

        p = subprocess.run(code_argv(sys.executable, code), capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            info.update(json.loads(p.stdout.strip().splitlines()[-1]))
        else:
            info["torch_error"] = (p.stderr.strip().splitlines() or ["import torch failed"])[-1]
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        info["torch_error"] = str(e)
    _out(info)
    return 0


def cmd_listen(a: argparse.Namespace) -> int:
    """Listen on every interface at ``--port`` (0: a free one), say which in one JSON line, accept and close
    connections until stdin closes or ``--seconds`` pass."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("", a.port))
    except OSError as e:
        _out({"error": f"port {a.port} is taken on {socket.gethostname()} ({e.strerror or e})"})
        return 0
    srv.listen(64)
    _out({"port": srv.getsockname()[1], "hostname": socket.gethostname()})
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([srv, sys.stdin], [], [], 0.5)
        if srv in r:
            conn, _ = srv.accept()
            conn.close()
        if sys.stdin in r and _stdin_closed():
            break
    srv.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="finetui-remote-agent")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start")
    sub.add_parser("status")
    for name in ("tail", "log"):
        p = sub.add_parser(name)
        p.add_argument("--run-dir", required=True)
        p.add_argument("--offset", type=int, default=0)
        p.add_argument("--follow", action="store_true")
        p.set_defaults(file=EVENTS_FILE if name == "tail" else LOG_FILE)
    p = sub.add_parser("stop")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--grace", type=float, default=15.0)
    p = sub.add_parser("delete")
    p.add_argument("--run-dir", required=True)
    p = sub.add_parser("doctor")
    p.add_argument("--workdir", default=REMOTE_WORKDIR)
    sub.add_parser("version")
    sub.add_parser("port")
    p = sub.add_parser("listen")  # doctor: hold the rendezvous port open until stdin closes (or --seconds)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seconds", type=float, default=120.0)
    p = sub.add_parser("reach")  # doctor: can this host open a TCP connection to ADDR:PORT?
    p.add_argument("--addr", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    p = sub.add_parser("paths")  # which of these paths exist on this host, and where (~ expanded, absolute)
    p.add_argument("path", nargs="*")
    a = ap.parse_args(argv)
    if a.cmd == "paths":
        found = {}
        for x in a.path:
            q = Path(os.path.expanduser(x))
            found[x] = str(q.resolve()) if q.is_absolute() and q.exists() else None
        _out({"paths": found})
        return 0
    if a.cmd == "port":  # a TCP port free on every interface of this host (the master's rendezvous port)
        with socket.socket() as s:
            s.bind(("", 0))
            _out({"port": s.getsockname()[1]})
        return 0
    if a.cmd == "listen":
        return cmd_listen(a)
    if a.cmd == "reach":
        try:
            socket.create_connection((a.addr, a.port), timeout=a.timeout).close()
            _out({"ok": True, "hostname": socket.gethostname()})
        except OSError as e:
            _out({"ok": False, "hostname": socket.gethostname(), "why": str(e) or type(e).__name__})
        return 0
    if a.cmd == "version":
        _out({"finetui": version(), "python": sys.version.split()[0], "executable": sys.executable})
        return 0
    return {"start": cmd_start, "status": cmd_status, "tail": cmd_tail, "log": cmd_tail, "stop": cmd_stop,
            "delete": cmd_delete, "doctor": cmd_doctor}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

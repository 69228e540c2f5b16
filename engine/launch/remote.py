"""SSH runs: start on one or several hosts, mirror events, stop every node.

The local ``runs/<name>/`` of a remote run holds ``remote.json`` (nodes: host,
remote run directory, pid, pgid), ``launch.json``, ``config.toml`` (as the remote
runs it) and ``events.jsonl`` mirrored from node 0 (byte-identical prefix of the
remote file, so a byte offset means the same on both sides).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from engine.schema import MASTER_PORT, REMOTE_PYTHON, REMOTE_WORKDIR
from engine.datapaths import data_paths, join_paths, split_format
from engine.events import EVENTS_FILE, parse_lines
from engine.launch import ssh
from engine.safeio import atomic_write
from engine.launch.rundir import CONFIG_FILE, LaunchError, LaunchRecord, NodeRecord, RemoteRecord, RunRef, events_lock

AGENT = "engine.launch.remote_agent"
DATA_FIELDS = ("data.train_path", "data.validation_path")
#: Names of local environment variables to forward to remote runs (comma separated).
FORWARD_ENV = "FINETUI_REMOTE_ENV"


def agent_argv(python: str, *args: str) -> list[str]:
    """The remote agent's command line: nothing is imported from the remote working directory ($HOME), whatever
    the remote Python's version."""
    from engine.launch.procs import module_argv

    return module_argv(python, AGENT, *args, safe_path=False)


def _agent_json(target: str, python: str, args: list[str], *, input: bytes = b"", timeout: float = 120) -> Any:
    return _agent_answer(target, python, ssh.run(target, agent_argv(python, *args), input=input, timeout=timeout))


def _agent_answer(target: str, python: str, p: subprocess.CompletedProcess) -> Any:
    """The agent's JSON answer, or LaunchError with one sentence."""
    out = p.stdout.decode("utf-8", "replace").strip()
    err = p.stderr.decode("utf-8", "replace").strip()
    if p.returncode == 127 or "command not found" in err or "No such file or directory" in err and not out:
        raise LaunchError(f"{target}: the remote Python {python!r} was not found; set launch.remote_python to "
                          f"a Python that has finetui installed (or add --bootstrap)")
    if "No module named" in err and ("engine" in err or "finetui" in err):
        raise LaunchError(f"{target}: finetui is not installed for {python}; run `finetui doctor --host {target} "
                          f"--bootstrap` (or pip install finetui there)")
    line = out.splitlines()[-1] if out else ""
    try:
        obj = json.loads(line)
    except ValueError:
        tail = (err.splitlines() or out.splitlines() or ["no answer"])[-1]
        raise LaunchError(f"{target}: the finetui agent failed: {tail}") from None
    if isinstance(obj, dict) and obj.get("error"):
        raise LaunchError(f"{target}: {obj['error']}")
    return obj


def forwarded_env() -> dict[str, str]:
    from engine.launch.core import WORKER_OVERRIDE_ENV

    names = [n.strip() for n in os.environ.get(FORWARD_ENV, "").split(",") if n.strip()]
    names.append(WORKER_OVERRIDE_ENV)
    # NCCL's own settings (NCCL_SOCKET_IFNAME, NCCL_IB_HCA, NCCL_DEBUG, …) as set where the run is started: a
    # cluster's network is chosen there, and the nodes' login shells do not carry them
    names += sorted(n for n in os.environ if n.startswith(("NCCL_", "TORCH_NCCL_")))
    return {n: os.environ[n] for n in names if n in os.environ}


#: progress of a data upload: (host, bytes sent, bytes in all)
Progress = Callable[[str, int, int], None]


def _mb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def upload_text(host: str, sent: int, total: int, seconds: float) -> str:
    """``uploading data to gpu-box: 42% (12.0 MB of 28.6 MB) · 3.1 MB/s · about 5 s left``."""
    pct = 100 if not total else int(sent * 100 / total)
    text = f"uploading data to {host}: {pct}% ({_mb(sent)} of {_mb(total)})"
    rate = sent / seconds if seconds > 0 else 0.0
    if rate and sent < total:
        text += f" · {_mb(rate)}/s · about {(total - sent) / rate:.0f} s left"
    return text


def upload_meter(show: Callable[[str, int, int, str], None], clock: Callable[[], float] = time.monotonic
                 ) -> Progress:
    """A :data:`Progress` that times each host's upload and passes ``show(host, sent, total, text)`` its line
    (:func:`upload_text`): what the CLI and the TUI both say."""
    began: dict[str, float] = {}

    def progress(host: str, sent: int, total: int) -> None:
        now = clock()
        t0 = began.setdefault(host, now)
        show(host, sent, total, upload_text(host, sent, total, now - t0))

    return progress


def _data_files(res: dict[str, Any], hosts: list[str] | None = None,
                python: str = REMOTE_PYTHON) -> tuple[list[tuple[Path, str]], dict[str, str]]:
    """The local data files the run needs (path here, name in the run directory) and the config rewrite (field →
    path in the run dir).

    A path that does not exist here is looked for on the run's hosts (every node reads the data): found on
    all of them, it is read there in place — a large data set already on the GPU server is not sent."""
    elsewhere = [path for name in DATA_FIELDS for path, _ in map(split_format, data_paths(res.get(name)))
                 if not path.startswith(("s3://", "finetui:")) and not Path(path).expanduser().exists()]
    there = _remote_paths(elsewhere, hosts or [], python) if elsewhere else {}
    files: list[tuple[Path, str]] = []
    rewrite: dict[str, str] = {}
    for i, name in enumerate(DATA_FIELDS):
        v = res.get(name)
        if not v or not isinstance(v, str):
            continue
        parts = data_paths(v)
        sent = []
        for j, part in enumerate(parts):
            path, own = split_format(part)
            fmt = f"#{own}" if own else ""  # (a source's own format travels with it)
            if path.startswith(("s3://", "finetui:")):
                sent.append(part)  # read there: the bucket, or the sample finetui ships
                continue
            p = Path(path).expanduser()
            if not p.exists():
                if there.get(path) is None and not hosts:
                    raise LaunchError(f"{name}: {path} does not exist on this machine")
                if there.get(path) is None:
                    raise LaunchError(f"{name}: {path} exists neither on this machine nor on "
                                      f"{' and '.join(hosts)} (a file already there is named by its absolute "
                                      f"path or ~/…)")
                sent.append(there[path] + fmt)  # already on the host(s): read in place
                continue
            rel = f"data/{i}_{p.name}" if len(parts) == 1 else f"data/{i}_{j}_{p.name}"
            files += _walk(p, rel, name)
            sent.append(rel + fmt)
        if sent != parts:
            rewrite[name] = join_paths(sent)
    return files, rewrite


def _walk(p: Path, rel: str, field: str) -> list[tuple[Path, str]]:
    """The regular files of a data file or folder, links followed (a link to a file elsewhere is sent as that
    file; a folder reached twice through links is sent once).  A broken link or a special file (FIFO, device,
    socket) is refused in one sentence."""
    out: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()

    def visit(q: Path, arc: str) -> None:
        try:
            st = q.stat()
        except OSError as e:
            if q.is_symlink():
                raise LaunchError(f"{field}: {q} is a broken link (to {os.readlink(q)}); fix or remove it") from None
            raise LaunchError(f"{field}: cannot read {q}: {e.strerror or e}") from None
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in seen:
                return  # a link back up the tree: its files are sent already
            seen.add((st.st_dev, st.st_ino))
            for c in sorted(q.iterdir()):
                visit(c, f"{arc}/{c.name}")
        elif stat.S_ISREG(st.st_mode):
            out.append((q, arc))
        else:
            raise LaunchError(f"{field}: {q} is not a regular file or folder (a FIFO, device or socket); only files "
                              f"and folders are sent")

    visit(p, rel)
    return out


class _Counted:
    """A file read for the tar stream that reports the bytes read."""

    def __init__(self, fh: Any, tick: Callable[[int], None]):
        self.fh, self.tick = fh, tick

    def read(self, n: int = -1) -> bytes:
        b = self.fh.read(n)
        self.tick(len(b))
        return b


def _send_tar(stream: Any, files: list[tuple[Path, str]], tick: Callable[[int], None]) -> None:
    """Write the files as a tar to ``stream`` as they are read (never whole in memory)."""
    with tarfile.open(fileobj=stream, mode="w|") as tf:
        for path, arc in files:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                ti = tarfile.TarInfo(arc)
                ti.size, ti.mtime, ti.mode = st.st_size, int(st.st_mtime), 0o644
                tf.addfile(ti, _Counted(fh, tick))


def _start_node(host: str, python: str, req: dict[str, Any], files: list[tuple[Path, str]],
                progress: Progress | None) -> Any:
    """Ask a node's agent to start its part; the data goes with the request, streamed."""
    total = sum(p.stat().st_size for p, _ in files)
    sent = [0, 0.0]

    def tick(n: int) -> None:
        sent[0] += n
        now = time.monotonic()
        if progress is not None and (now - sent[1] >= 0.5 or sent[0] >= total):
            sent[1] = now
            progress(host, sent[0], total)

    def feed(stdin: Any) -> None:
        stdin.write(json.dumps(req).encode() + b"\n")
        try:
            if files:
                _send_tar(stdin, files, tick)
        except BrokenPipeError:
            raise  # (the agent stopped reading: its answer says why)
        except (OSError, tarfile.TarError) as e:  # a file that vanished or changed size while it was sent
            raise LaunchError(f"{host}: the data upload stopped: {e}; nothing was started") from None
        stdin.flush()

    if progress is not None and files:
        progress(host, 0, total)
    return _agent_answer(host, python, ssh.stream(host, agent_argv(python, "start"), feed, timeout=300))


def _remote_paths(paths: list[str], hosts: list[str], python: str) -> dict[str, str | None]:
    """Each path → its absolute form when it exists on every host, else None."""
    found: dict[str, str | None] = {p: None for p in paths}
    for k, host in enumerate(hosts):
        try:
            ans = _agent_json(host, python, ["paths", *paths], timeout=60)["paths"]
        except (LaunchError, KeyError, TypeError):
            return {p: None for p in paths}  # (an agent without `paths`: as before, the files must be here)
        for p in paths:
            if k == 0:
                found[p] = ans.get(p)
            elif ans.get(p) is None:
                found[p] = None
    return found


def start(job: Any, res: dict[str, Any], local_dir: Path, *, secrets: dict[str, str], start_at: float | None,
          progress: Progress | None = None, backend: str | None = None) -> dict:
    """Start the run on every node of ``launch.hosts`` (or the one ``launch.host``); write remote.json, and
    launch.json (naming ``backend``, the launch backend that owns the run here)."""
    from engine import presets

    hosts = list(res.get("launch.hosts") or []) or [res["launch.host"]]
    python = res.get("launch.remote_python") or REMOTE_PYTHON
    workdir = res.get("launch.remote_workdir") or REMOTE_WORKDIR
    name = local_dir.name
    nnodes = len(hosts)
    master_addr = (res.get("launch.master_addr") or ssh.describe(hosts[0])[0]) if nnodes > 1 else "127.0.0.1"
    master_port = int(res.get("launch.master_port") or MASTER_PORT)
    files, rewrite = _data_files(res, hosts, python)
    cfg = presets.dumps(job, resolved=True)
    env = {**forwarded_env(), **{str(k): str(v) for k, v in (secrets or {}).items()}}
    if res.get("tracking.wandb"):  # the W&B key travels in the environment only (never in a preset)
        env.update({k: os.environ[k] for k in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_MODE")
                    if os.environ.get(k)})
    for h in hosts:  # fail fast, before anything starts, on an unreachable node
        ssh.ensure_master(h)
    if nnodes > 1 and not job.values.get("launch.master_port"):
        # no port chosen: a free one on the master, not torch's 29500 that any other job there may hold
        try:
            master_port = int(_agent_json(hosts[0], python, ["port"], timeout=60)["port"])
        except (LaunchError, KeyError, TypeError, ValueError):
            pass
    nodes: list[NodeRecord] = []
    try:
        for rank, host in enumerate(hosts):
            req = {"workdir": workdir, "name": name if rank == 0 else f"{name}.node{rank}", "env": env,
                   "config_toml": cfg, "rewrite": rewrite, "tar": bool(files), "nnodes": nnodes, "node_rank": rank,
                   "master_addr": master_addr, "master_port": master_port if nnodes > 1 else None,
                   "rdzv": "c10d" if nnodes > 1 else "static", "start_at": start_at, "host_label": host,
                   "rdzv_id": name if nnodes > 1 else None, "hosts": hosts}
            ans = _start_node(host, python, req, files, progress)
            nodes.append(NodeRecord(host=host, run_dir=ans["run_dir"], pid=ans["pid"], pgid=ans["pgid"],
                                    hostname=ans.get("hostname"), command=ans.get("command"),
                                    slurm_job_id=ans.get("slurm_job_id") or None))
            if rank == 0:
                atomic_write(local_dir / CONFIG_FILE, ans.get("config_toml") or cfg)
    except Exception:
        for n in nodes:  # do not leave half a multi-node run behind
            try:
                _agent_json(n.host, python, ["stop", "--run-dir", n.run_dir, "--grace", "5"], timeout=60)
            except Exception:
                pass
        raise
    RemoteRecord(host=hosts[0], hosts=hosts, python=python, workdir=workdir, nodes=nodes, run_dir=nodes[0].run_dir,
                 data_sources={k: res[k] for k in rewrite}).write(local_dir)
    first = nodes[0]
    rec = LaunchRecord(name=name, host=hosts[0] if nnodes == 1 else ",".join(hosts), backend=backend,
                       command=first.command, pid=first.pid, pgid=first.pgid, pids=[n.pid for n in nodes],
                       started=time.time(), created=time.time(), start_at=start_at, remote=True, nnodes=nnodes)
    if first.slurm_job_id:
        rec.slurm_job, rec.launcher = first.slurm_job_id, "slurm"
    rec.write(local_dir)
    return rec.as_dict()


# ------------------------------------------------------------------ multi-node: where rank 0 writes

#: run name → the status node 0 reported while rank 0's node is not known yet (scheduled, running)
_node0_status: dict[str, str] = {}


def _worker_wrote(recs: list[dict[str, Any]]) -> bool:
    """Whether these records come from the training worker (rank 0), not only from a node's launcher."""
    return any(r.get("by") != "launcher" for r in recs)


def locate_events(ref: RunRef) -> bool:
    """Multi-node c10d runs: find the node whose run directory holds rank 0's events (ranks are assigned by
    the rendezvous, not by host order) and point ``remote.json`` at it.  True once known.

    A node's launcher may append an ``end`` (``by: launcher``) of its own — its part failed or was stopped —
    so the node with records the worker wrote wins.  When none has such records and a node has failed
    (typically before or at the rendezvous: the others would wait for it until torchrun's join timeout),
    that node's records are the run's, and the nodes still waiting are stopped.  When every node is gone
    without any record of the worker, the first node with an error (else with any record) is used.
    """
    r = ref.remote
    if len(r.nodes) <= 1 or r.events_node is not None:
        return True
    seen: list[tuple[int, list[dict[str, Any]], bool]] = []
    for i, n in enumerate(r.nodes):
        try:
            ans = _agent_json(n.host, r.python, ["status"],
                              input=json.dumps([{"run_dir": n.run_dir, "offset": 0, "max_bytes": 1 << 16}]).encode()
                              + b"\n", timeout=30)
        except LaunchError:
            return False
        a = ans[0] if ans else {}
        if i == 0:
            _node0_status[ref.name] = a.get("status") or "running"
        recs = parse_lines(base64.b64decode(a.get("events") or ""))[0]
        if _worker_wrote(recs):
            return _set_events_node(ref, i)
        seen.append((i, recs, bool(a.get("alive"))))
    failed = [i for i, recs, alive in seen
              if not alive and any(x.get("kind") == "end" and x.get("outcome") == "failed" for x in recs)]
    if failed:
        for i, _, alive in seen:
            if alive:
                n = r.nodes[i]
                try:
                    _agent_json(n.host, r.python, ["stop", "--run-dir", n.run_dir, "--grace", "5"], timeout=60)
                except LaunchError:
                    pass
        return _set_events_node(ref, failed[0])
    if any(alive for _, _, alive in seen):
        return False
    pick = next((i for i, recs, _ in seen if any(x.get("kind") == "error" for x in recs)), None)
    if pick is None:
        pick = next((i for i, recs, _ in seen if recs), 0)
    return _set_events_node(ref, pick)


def _set_events_node(ref: RunRef, i: int) -> bool:
    r = ref.remote
    n = r.nodes[i]
    r.events_node, r.host, r.run_dir = i, n.host, n.run_dir
    r.write(ref.run_dir)
    return True


def collect_node_errors(ref: RunRef) -> dict[str, str]:
    """A failed multi-node run: what the *other* nodes recorded (rank 0 often only saw a peer vanish: "Connection
    closed by peer").  Asked once over SSH after the run failed, kept in ``remote.json`` as ``node_errors``."""
    r = ref.remote
    nodes = r.nodes
    if len(nodes) <= 1 or r.node_errors is not None or r.events_node is None:
        return r.node_errors or {}
    from engine.launch.rundir import has_end

    end = has_end(ref.run_dir)
    if not end or end.get("outcome") != "failed":
        return {}
    errs: dict[str, str] = {}
    for i, n in enumerate(nodes):
        if i == r.events_node:
            continue
        try:
            ans = _agent_json(n.host, r.python, ["status"],
                              input=json.dumps([{"run_dir": n.run_dir, "offset": 0, "max_bytes": 1 << 16}]).encode()
                              + b"\n", timeout=30)
        except LaunchError:
            return {}  # try again next time
        recs = parse_lines(base64.b64decode((ans[0] if ans else {}).get("events") or ""))[0]
        msg = next((x.get("message") for x in reversed(recs) if x.get("kind") == "error"), None)
        if msg:
            errs[n.host] = str(msg)
    r.node_errors = errs
    r.write(ref.run_dir)
    return errs


# ------------------------------------------------------------------ mirror

def mirror_write(local_dir: Path, offset: int, data: bytes) -> None:
    """Append ``data`` (remote bytes starting at ``offset``) to the mirror; idempotent, never a gap."""
    if not data:
        return
    path = local_dir / EVENTS_FILE
    with events_lock(local_dir):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < offset or size >= offset + len(data):
            return
        with open(path, "ab") as fh:
            fh.write(data[size - offset:])


def sync(refs: list[RunRef], timeout: float = 20) -> dict[str, dict[str, Any]]:
    """One ``status`` call per host: remote status of each run, and its new events copied to the mirror."""
    by_host: dict[str, list[RunRef]] = {}
    out: dict[str, dict[str, Any]] = {}
    for r in refs:
        try:
            located = locate_events(r)
        except LaunchError as e:
            out[r.name] = {"status": "unknown", "error": str(e)}
            continue
        if not located:  # multi-node, rank 0 has not written yet: nothing to mirror
            st = _node0_status.get(r.name, "running")
            out[r.name] = {"status": st if st in ("scheduled", "running") else "running", "phase": "starting"}
            continue
        by_host.setdefault(r.remote.host, []).append(r)
    for host, rs in by_host.items():
        python = rs[0].remote.python
        reqs = []
        for r in rs:
            try:
                size = (r.run_dir / EVENTS_FILE).stat().st_size
            except FileNotFoundError:
                size = 0
            reqs.append({"run_dir": r.remote.run_dir, "offset": size})
        try:
            ans = _agent_json(host, python, ["status"], input=json.dumps(reqs).encode() + b"\n", timeout=timeout)
        except LaunchError as e:
            for r in rs:
                out[r.name] = {"status": "unknown", "error": str(e)}
            continue
        for r, a in zip(rs, ans):
            if a.get("missing"):
                out[r.name] = {"status": "lost", "error": f"the run directory is gone on {host}"}
                continue
            mirror_write(r.run_dir, int(a["offset"]), base64.b64decode(a.get("events") or ""))
            out[r.name] = a
            if len(r.remote.nodes) > 1 and a.get("status") == "failed":
                try:
                    collect_node_errors(r)
                except LaunchError:
                    pass
    return out


# ------------------------------------------------------------------ event source

class RemoteEventSource:
    """Events of a remote run: the local mirror first, then ``tail`` over SSH from the byte offset.

    A dropped connection is reopened at the offset of the last complete record,
    so nothing is missed and nothing repeats.  Every record read is also in the
    local mirror.
    """

    def __init__(self, ref: RunRef, offset: int = 0):
        self.ref = ref
        self.offset = offset
        self.ended = False
        self.lost = False
        self.error: str | None = None
        self.reconnects = 0
        self._proc: subprocess.Popen | None = None
        self._q: queue.Queue = queue.Queue()
        self._buf = b""
        self._streaming = False
        self._retry_at = 0.0
        self._backoff = 0.5
        self._located = -1e9

    @property
    def done(self) -> bool:
        return self.ended or self.lost

    def _check_end(self, recs: list[dict[str, Any]]) -> None:
        end = next((r for r in recs if r.get("kind") == "end"), None)
        if end is not None:
            self.ended = True
            self.close()
            if end.get("outcome") == "failed" and len(self.ref.remote.nodes) > 1:
                try:
                    collect_node_errors(self.ref)
                except LaunchError:
                    pass

    def read(self) -> list[dict[str, Any]]:
        if not self._streaming:
            path = self.ref.run_dir / EVENTS_FILE
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offset)
                    chunk = fh.read(4 << 20)
            except FileNotFoundError:
                chunk = b""
            recs, used = parse_lines(chunk)
            self.offset += used
            self._check_end(recs)
            if recs or self.ended:
                return recs
            self._streaming = True
        if self.done:
            return []
        if self.ref.remote.events_node is None and len(self.ref.remote.nodes) > 1:
            # ask the nodes at most every 2 s until rank 0's node is known
            if time.monotonic() - self._located < 2.0:
                return []
            self._located = time.monotonic()
            if not locate_events(self.ref):
                return []
        self._pump()
        recs, used = parse_lines(self._buf)
        if used:
            mirror_write(self.ref.run_dir, self.offset, self._buf[:used])
            self._buf = self._buf[used:]
            self.offset += used
        self._check_end(recs)
        return recs

    def _pump(self) -> None:
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, bytes):
                if self._proc is not None:
                    self._buf += item
                continue
            proc, rc, err = item  # the stream ended
            if proc is not self._proc:
                continue
            self._proc = None
            recs, used = parse_lines(self._buf)
            self._buf = self._buf[:used]  # a partial line is re-read after the reconnect
            has_end = any(r.get("kind") == "end" for r in recs)
            if rc == 3 and not has_end:
                self.lost = True
            elif rc != 0 and not has_end:
                host = self.ref.remote.host
                self.error = ssh.explain(host, err) if rc == 255 else (err.strip().splitlines() or [f"tail exited {rc}"])[-1]
                if rc == 255:
                    ssh.forget(host)
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, 5.0)
                self.reconnects += 1
            elif rc == 0 and not has_end:
                self.reconnects += 1
        if self._proc is None and not self.done and time.monotonic() >= self._retry_at:
            recs, _ = parse_lines(self._buf)
            if not any(r.get("kind") == "end" for r in recs):
                self._start()

    def _start(self) -> None:
        _, used = parse_lines(self._buf)
        self._buf = self._buf[:used]
        start_at = self.offset + used
        r = self.ref.remote
        argv = agent_argv(r.python, "tail", "--run-dir", r.run_dir, "--offset", str(start_at), "--follow")
        try:
            p = ssh.popen(r.host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except LaunchError as e:
            self.error = str(e)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            return
        self._proc = p
        threading.Thread(target=self._reader, args=(p,), daemon=True).start()

    def _reader(self, p: subprocess.Popen) -> None:
        fd = p.stdout.fileno()
        while True:
            try:
                b = os.read(fd, 1 << 16)
            except OSError:
                b = b""
            if not b:
                break
            self._q.put(b)
        err = p.stderr.read().decode("utf-8", "replace") if p.stderr else ""
        rc = p.wait()
        if rc == 0:
            self._backoff = 0.5
            self.error = None
        self._q.put((p, rc, err))

    def close(self) -> None:
        p, self._proc = self._proc, None
        if p is not None and p.poll() is None:
            try:
                p.stdin.close()
            except Exception:
                pass
            try:
                p.terminate()
                p.wait(timeout=5)
            except Exception:
                pass

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# ------------------------------------------------------------------ stop / delete / logs

def stop(ref: RunRef, grace: float) -> str:
    r = ref.remote
    results: dict[int, Any] = {}

    def one(i: int, n: NodeRecord) -> None:
        try:
            results[i] = _agent_json(n.host, r.python, ["stop", "--run-dir", n.run_dir, "--grace", str(grace)],
                                     timeout=grace + 60)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(r.nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errs = [f"{r.nodes[i].host}: {v}" for i, v in results.items() if isinstance(v, Exception)]
    left = [f"{r.nodes[i].host} pids {v['left']}" for i, v in results.items()
            if isinstance(v, dict) and v.get("left")]
    sync([ref])
    if errs:
        raise LaunchError("; ".join(errs))
    if left:
        raise LaunchError(f"processes survived the stop: {', '.join(left)}")
    v = results.get(0)
    return str(v.get("outcome", "stopped")) if isinstance(v, dict) else "stopped"


def delete(ref: RunRef) -> None:
    r = ref.remote
    for n in r.nodes:
        _agent_json(n.host, r.python, ["delete", "--run-dir", n.run_dir])


def log_stream(ref: RunRef, follow: bool, offset: int = 0, node: int | None = None) -> subprocess.Popen:
    """worker.log of the run (of node ``node`` of a multi-node run; default: where rank 0 runs, else node 0)."""
    r = ref.remote
    nodes = r.nodes
    if node is not None:
        if not 0 <= node < len(nodes):
            raise LaunchError(f"run {ref.name} has {len(nodes)} node(s): --node takes 0 to {len(nodes) - 1}")
        host, run_dir = nodes[node].host, nodes[node].run_dir
    else:
        host, run_dir = r.host, r.run_dir
    argv = agent_argv(r.python, "log", "--run-dir", run_dir, "--offset", str(offset))
    if follow:
        argv.append("--follow")
    return ssh.popen(host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

"""The system OpenSSH client, multiplexed, strict about host keys.

Every call goes through ``ssh`` (so ``~/.ssh/config``, agents, jump hosts and
aliases work) with ``BatchMode=yes`` and ``StrictHostKeyChecking=yes``.  One
ControlMaster per target is started explicitly (``-M -N -f``) with its socket in
a short path; commands then reuse it (``ControlMaster=no``), falling back to a
direct connection when it is gone.  Every remote argument is ``shlex.quote``d.

``FINETUI_SSH_CONFIG`` names an ssh_config to use with ``-F`` (tests use a
generated one); ``FINETUI_SSH_CONTROL_DIR`` overrides the socket folder.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from engine.launch.rundir import LaunchError

CONTROL_PERSIST = 120
CONNECT_TIMEOUT = 10
_lock = threading.Lock()
_master_ok: dict[str, float] = {}


class SSHError(LaunchError):
    """An SSH failure explained in one sentence (unreachable, host key, login)."""


def parse_target(target: str) -> tuple[str, int | None]:
    """``user@host[:port]`` or an alias → (destination, port)."""
    t = target.strip()
    if not t or t.startswith("-") or any(c.isspace() for c in t):
        raise LaunchError(f"{target!r} is not an SSH target (user@host[:port] or an ~/.ssh/config alias)")
    m = re.fullmatch(r"(?P<dest>[^:\[\]]+|\[[^\]]+\]|[^@]+@\[[^\]]+\]):(?P<port>\d{1,5})", t)
    if m:
        dest = m.group("dest").replace("[", "").replace("]", "")
        return dest, int(m.group("port"))
    return t, None


def control_dir() -> Path:
    """The folder of the multiplexing sockets (whoever can reach a socket runs commands as you on that host):
    ``$FINETUI_SSH_CONTROL_DIR``, else ``$XDG_RUNTIME_DIR/finetui-ssh``, else ``/tmp/ftui-ssh-<uid>``; created
    0700, and refused in one sentence when it is not a folder of this user that only this user can write."""
    override = os.environ.get("FINETUI_SSH_CONTROL_DIR")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        d = Path(override)
    elif runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        d = Path(runtime) / "finetui-ssh"
    else:
        d = Path(f"/tmp/ftui-ssh-{os.getuid()}")
    try:
        if override:
            d.parent.mkdir(parents=True, exist_ok=True)
        d.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise SSHError(f"cannot create the SSH control-socket folder {d}: {e.strerror or e}") from None
    try:
        st = os.lstat(d)
    except OSError as e:
        raise SSHError(f"cannot use the SSH control-socket folder {d}: {e.strerror or e}") from None
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = "a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        why = "not a folder"
    elif st.st_uid != os.getuid():
        why = f"owned by another user (uid {st.st_uid})"
    elif st.st_mode & 0o022:
        why = f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if why:
        raise SSHError(f"the SSH control-socket folder {d} is {why}; refusing to use it (remove it, or set "
                       f"FINETUI_SSH_CONTROL_DIR to a folder only you can write)")
    return d


def base_args(target: str, *, master: bool = False) -> list[str]:
    dest, port = parse_target(target)
    args = ["ssh"]
    cfg = os.environ.get("FINETUI_SSH_CONFIG")
    if cfg:
        args += ["-F", cfg]
    args += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
             "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
             "-o", f"ControlPath={control_dir()}/%C",
             "-o", "ControlMaster=yes" if master else "ControlMaster=no"]
    if master:
        args += ["-o", f"ControlPersist={CONTROL_PERSIST}"]
    if port:
        args += ["-p", str(port)]
    args.append(dest)
    return args


def describe(target: str) -> tuple[str, int, str]:
    """(hostname, port, user) as ssh would use them (``ssh -G``, no connection)."""
    dest, port = parse_target(target)
    args = ["ssh"]
    if os.environ.get("FINETUI_SSH_CONFIG"):
        args += ["-F", os.environ["FINETUI_SSH_CONFIG"]]
    if port:
        args += ["-p", str(port)]
    try:
        out = subprocess.run(args + ["-G", dest], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    kv = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        kv.setdefault(k.lower(), v.strip())
    host = kv.get("hostname") or dest.split("@")[-1]
    return host, int(kv.get("port") or port or 22), kv.get("user", "")


def explain(target: str, stderr: str) -> str:
    """One sentence for an ssh failure (exit 255)."""
    s = stderr or ""
    host, port, _ = describe(target)
    scan = f"ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts" if port != 22 else f"ssh-keyscan {host} >> ~/.ssh/known_hosts"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in s or "Host key for" in s and "has changed" in s:
        return (f"the host key of {target} has CHANGED since it was accepted — this can be an attack; if the "
                f"server was reinstalled, remove the old key with `ssh-keygen -R {_kh(host, port)}` and accept "
                f"the new one with `{scan}` (or `ssh {target}` once)")
    if "Host key verification failed" in s or "host key is known" in s or "No matching host key" in s:
        return (f"the host key of {target} is not known (strict host-key checking is on); check it and accept it "
                f"with `{scan}` or by running `ssh {target}` once")
    low = s.lower()
    for pat, why in (("connection refused", "connection refused"), ("could not resolve hostname", "unknown host name"),
                     ("name or service not known", "unknown host name"), ("timed out", "connection timed out"),
                     ("no route to host", "no route to host"), ("network is unreachable", "network unreachable"),
                     ("connection closed", "connection closed by the server"),
                     ("connection reset", "connection reset")):
        if pat in low:
            return f"cannot reach {target} ({host} port {port}): {why}"
    if "permission denied" in low:
        return (f"{target} refused the login (permission denied); add your key there (`ssh-copy-id {target}`) or "
                f"load it into ssh-agent")
    last = next((ln.strip() for ln in reversed(s.strip().splitlines()) if ln.strip()), "ssh failed")
    return f"ssh to {target} failed: {last}"


def _kh(host: str, port: int) -> str:
    return f"[{host}]:{port}" if port != 22 else host


def ensure_master(target: str) -> None:
    """Start (once) the multiplexing master for ``target``; raise SSHError with the reason when ssh fails."""
    with _lock:
        if 0.0 <= time.monotonic() - _master_ok.get(target, -1e9) < 5:  # (a stamp ahead of the clock: check)
            return
        chk = base_args(target)
        chk = chk[:-1] + ["-O", "check", chk[-1]]
        p = subprocess.run(chk, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=15)
        if p.returncode == 0:
            _master_ok[target] = time.monotonic()
            return
        _remove_stale_socket(p.stderr.decode("utf-8", "replace"))
        with tempfile.TemporaryFile() as errf:
            args = base_args(target, master=True)
            args = args[:-1] + ["-N", "-f", args[-1]]
            try:
                rc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                    timeout=CONNECT_TIMEOUT + 20).returncode
            except subprocess.TimeoutExpired:
                raise SSHError(f"cannot reach {target}: no answer within {CONNECT_TIMEOUT + 20} s") from None
            except FileNotFoundError:
                raise SSHError("the OpenSSH client (`ssh`) is not installed on this machine") from None
            errf.seek(0)
            err = errf.read().decode("utf-8", "replace")
        if rc != 0:
            raise SSHError(explain(target, err))
        _master_ok[target] = time.monotonic()


def _remove_stale_socket(check_stderr: str) -> None:
    """A master that died (killed, machine slept) leaves its socket behind; a new master finding it
    there says "ControlSocket … already exists, disabling multiplexing" and every later call pays a
    full handshake.  ``ssh -O check`` names the socket that refused the connection: remove it."""
    m = re.search(r"Control socket connect\((.+)\): Connection refused", check_stderr)
    if m and Path(m.group(1)).parent == control_dir():
        try:
            Path(m.group(1)).unlink()
        except OSError:
            pass


def forget(target: str) -> None:
    _master_ok.pop(target, None)


def close_master(target: str) -> None:
    args = base_args(target)
    subprocess.run(args[:-1] + ["-O", "exit", args[-1]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=15)
    forget(target)


def quote_path(p: str) -> str:
    """Quote a remote path, keeping a leading ``~/`` expandable."""
    if p == "~":
        return '"$HOME"'
    if p.startswith("~/"):
        return '"$HOME"/' + shlex.quote(p[2:])
    return shlex.quote(p)


def remote_command(argv: list[str], *, python_first: bool = True) -> str:
    """A remote shell command line: the first word may be ``~/…``; everything else is quoted."""
    if not argv:
        return ""
    first = quote_path(argv[0]) if python_first else shlex.quote(argv[0])
    return " ".join([first] + [shlex.quote(str(a)) for a in argv[1:]])


def run(target: str, argv: list[str] | str, *, input: bytes | None = None, timeout: float | None = 120,
        check_ssh: bool = True) -> subprocess.CompletedProcess:
    """Run a remote command; an ssh failure (exit 255 with ssh's own message) raises SSHError."""
    ensure_master(target)
    cmd = argv if isinstance(argv, str) else remote_command(argv)
    try:
        p = subprocess.run(base_args(target) + ["--", cmd], input=input if input is not None else b"",
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SSHError(f"{target}: the remote command did not answer within {timeout:.0f} s") from None
    if check_ssh and p.returncode == 255 and _looks_like_ssh_error(p.stderr):
        forget(target)
        raise SSHError(explain(target, p.stderr.decode("utf-8", "replace")))
    return p


def stream(target: str, argv: list[str], feed, *, timeout: float | None = 120) -> subprocess.CompletedProcess:  # noqa: ANN001
    """Run a remote command whose input ``feed(stdin)`` writes as it goes (a large upload: no size limit, no time
    limit while it flows); ``timeout`` counts from the end of the input.  A remote side that stops reading
    ends the feed quietly (its answer says why).  An ssh failure raises SSHError, as :func:`run`."""
    ensure_master(target)
    p = subprocess.Popen(base_args(target) + ["--", remote_command(argv)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()), daemon=True)
               for k, f in (("out", p.stdout), ("err", p.stderr))]
    for t in readers:
        t.start()
    try:
        try:
            feed(p.stdin)
        except BrokenPipeError:
            pass  # the remote side stopped reading: its answer tells why
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise SSHError(f"{target}: the remote command did not answer within {timeout:.0f} s") from None
    except BaseException:
        p.kill()
        p.wait()
        raise
    for t in readers:
        t.join()
    res = subprocess.CompletedProcess(p.args, p.returncode, out.get("out", b""), out.get("err", b""))
    if res.returncode == 255 and _looks_like_ssh_error(res.stderr):
        forget(target)
        raise SSHError(explain(target, res.stderr.decode("utf-8", "replace")))
    return res


def popen(target: str, argv: list[str], **kw) -> subprocess.Popen:
    ensure_master(target)
    return subprocess.Popen(base_args(target) + ["--", remote_command(argv)], **kw)


def _looks_like_ssh_error(stderr: bytes) -> bool:
    s = stderr.decode("utf-8", "replace").lower()
    return any(k in s for k in ("ssh:", "host key", "permission denied", "connection", "could not resolve",
                                "mux_client", "control socket", "kex_exchange")) or not s.strip()

"""``finetui doctor``: can this host run a finetui job?  Each check → (ok|problem, topic, text, fix)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import NamedTuple

from engine.schema import LOCAL_HOST, REMOTE_PYTHON, REMOTE_WORKDIR, is_local_host
from engine.launch import ssh
from engine.launch.rundir import LaunchError

MIN_FREE = 5 << 30


class Check(NamedTuple):
    ok: bool
    topic: str
    text: str
    fix: str = ""

    def line(self) -> str:
        s = f"{'ok' if self.ok else 'problem':8} {self.topic:8} {self.text}"
        return s + (f" — fix: {self.fix}" if (self.fix and not self.ok) else "")


def _local_report(workdir: str) -> dict:
    from engine.launch.procs import module_argv

    p = subprocess.run(module_argv(sys.executable, "engine.launch.remote_agent", "doctor", "--workdir", workdir),
                       capture_output=True, text=True, timeout=180)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(host: str = LOCAL_HOST, python: str = REMOTE_PYTHON, workdir: str = REMOTE_WORKDIR) -> list[Check]:
    out: list[Check] = []
    local = is_local_host(host)
    if local:
        report = _local_report(workdir)
        out.append(Check(True, "host", f"this machine ({report.get('hostname')})"))
    else:
        try:
            ssh.ensure_master(host)
        except LaunchError as e:
            fix = "check the host name, port and that sshd runs there"
            if "host key" in str(e):
                fix = "accept the host key as described"
            elif "refused the login" in str(e):
                fix = f"ssh-copy-id {host}"
            return [Check(False, "ssh", str(e), fix)]
        out.append(Check(True, "ssh", f"{host} reachable (strict host keys, batch mode)"))
        from engine.launch.remote import agent_argv

        p = ssh.run(host, agent_argv(python, "doctor", "--workdir", workdir), timeout=240)
        txt = p.stdout.decode(errors="replace").strip()
        err = p.stderr.decode(errors="replace").strip()
        try:
            report = json.loads(txt.splitlines()[-1])
        except (ValueError, IndexError):
            if p.returncode == 127 or "not found" in err or "No such file" in err:
                out.append(Check(False, "python", f"{python!r} not found on {host}",
                                 "set launch.remote_python (e.g. ~/venv/bin/python) or install Python 3.10+"))
            elif "No module named" in err:
                out.append(Check(False, "finetui", f"finetui is not installed for {python} on {host}",
                                 f"finetui doctor --host {host} --bootstrap"))
            else:
                out.append(Check(False, "python", f"{python} on {host} failed: {(err.splitlines() or ['?'])[-1]}",
                                 "check launch.remote_python"))
            return out
    py = report.get("python", "?")
    major_minor = tuple(int(x) for x in py.split(".")[:2]) if py[0].isdigit() else (0, 0)
    out.append(Check(major_minor >= (3, 10), "python", f"{py} ({report.get('executable')})",
                     "use Python 3.10 or newer"))
    from importlib.metadata import version

    try:
        mine = version("finetui")
    except Exception:
        mine = "?"
    theirs = report.get("finetui", "unknown")
    out.append(Check(theirs == mine, "finetui", f"{theirs}" + ("" if theirs == mine else f" (this machine: {mine})"),
                     f"finetui doctor --host {host} --bootstrap" if not local else "pip install -e ."))
    gpus = report.get("gpus")
    if gpus is None:
        out.append(Check(False, "gpus", "nvidia-smi not found (CPU only)",
                         "install the NVIDIA driver, or set launch.device = \"cpu\""))
    elif not gpus:
        out.append(Check(False, "gpus", f"nvidia-smi found no GPU: {' '.join(report.get('gpu_error') or [])}",
                         "check the driver (nvidia-smi)"))
    else:
        out.append(Check(True, "gpus", f"{len(gpus)}: " + "; ".join(gpus)))
        caps = [c for c in report.get("gpu_caps") or [] if c != "?"]
        if caps:
            old = min(caps, key=lambda c: tuple(int(x) for x in c.split(".")))
            major = int(old.split(".")[0])
            if major >= 8:
                out.append(Check(True, "gpu-gen", f"compute capability {old}: bf16 and flash-attention-2"))
            else:
                out.append(Check(True, "gpu-gen", f"compute capability {old} (before Ampere): fp16 only — no bf16, no "
                                 f"flash-attention-2; finetui refuses them there and mixed_precision auto picks fp16"))
        if report.get("visible_gpus") is not None and report["visible_gpus"] != len(gpus):
            out.append(Check(True, "gpus", f"{report['visible_gpus']} of them visible to finetui's ranks "
                             f"(CUDA_VISIBLE_DEVICES)"))
    extras = report.get("gpu_extras")
    if extras is not None:
        have = [f"{k} {v}" for k, v in extras.items() if v]
        lack = [k for k, v in extras.items() if not v]
        text = "; ".join(filter(None, [", ".join(have), f"not installed: {', '.join(lack)}" if lack else ""]))
        if lack:
            text += " (optional: qlora, flash_attention_2, liger_kernel need them; pip install 'finetui[gpu]')"
        out.append(Check(True, "extras", text))
    if "disk_free" in report:
        free = report["disk_free"]
        out.append(Check(free >= MIN_FREE, "disk", f"{free / 2**30:.1f} GiB free in {report.get('disk_path')}",
                         "free space or set launch.remote_workdir to a larger disk"))
    else:
        out.append(Check(False, "disk", report.get("disk_error", "unknown"), "check launch.remote_workdir"))
    hub = report.get("hub")
    if hub:
        cached = hub.get("cached") or []
        have = (f"{len(cached)} model(s) in its Hugging Face cache: {', '.join(cached[:4])}"
                + (", …" if len(cached) > 4 else "")) if cached else "no model in its Hugging Face cache"
        if hub.get("reachable") and not hub.get("offline"):
            out.append(Check(True, "hub", f"{hub['target']} reachable; {have}"))
        else:
            why = "offline mode (HF_HUB_OFFLINE)" if hub.get("offline") else f"{hub['target']} not reachable"
            out.append(Check(bool(cached), "hub", f"{why}: Hub model names load from the cache only; {have}",
                             "copy the models into ~/.cache/huggingface/hub there, or set model.name_or_path to a "
                             "local folder"))
    if "torch" in report:
        cuda = report.get("cuda")
        out.append(Check(True, "torch", f"{report['torch']}, CUDA "
                         + (f"{report.get('cuda_version')} with {report.get('devices')} device(s)" if cuda
                            else "not available (CPU training only)")))
    else:
        out.append(Check(False, "torch", report.get("torch_error", "not importable"),
                         f"{python} -m pip install torch (or --bootstrap)"))
    return out


def rendezvous(hosts: list[str], python: str = REMOTE_PYTHON, master_addr: str | None = None,
               master_port: int | None = None) -> list[Check]:
    """A multi-node run: does every node reach the rendezvous port of the first?  The first node listens on
    ``master_port`` (None: a free port, as a launch picks one) for the length of the check, and each node opens a
    TCP connection to ``master_addr`` (unset: the first node's name as ssh resolves it, as a launch does)."""
    import select
    import time

    from engine.launch.remote import _agent_json, agent_argv

    master = hosts[0]
    addr = master_addr or ssh.describe(master)[0]
    try:
        p = ssh.popen(master, agent_argv(python, "listen", "--port", str(master_port or 0), "--seconds", "120"),
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except LaunchError as e:
        return [Check(False, "rdzv", f"{master}: cannot start the rendezvous check ({e})")]
    try:
        line = b""
        deadline = time.monotonic() + 60
        while not line.endswith(b"\n") and time.monotonic() < deadline and p.poll() is None:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                b = p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(1)
                if not b:
                    break
                line += b
        try:
            ans = json.loads(line.decode(errors="replace").strip().splitlines()[0])
        except (ValueError, IndexError):
            err = (p.stderr.read().decode(errors="replace").strip().splitlines() or ["no answer"])[-1] \
                if p.poll() is not None else "no answer"
            return [Check(False, "rdzv", f"{master}: the rendezvous listener did not start ({err})",
                          f"finetui doctor --host {master}")]
        if ans.get("error"):
            return [Check(False, "rdzv", f"{master}: {ans['error']}",
                          "choose another launch.master_port, or leave it unset (a free port is picked)")]
        port = int(ans["port"])
        out: list[Check] = []
        for i, h in enumerate(hosts):
            try:
                a = _agent_json(h, python, ["reach", "--addr", addr, "--port", str(port), "--timeout", "5"],
                                timeout=60)
            except LaunchError as e:
                out.append(Check(False, "rdzv", f"node {i} ({h}): {e}"))
                continue
            if a.get("ok"):
                out.append(Check(True, "rdzv", f"node {i} ({h}) reaches the rendezvous {addr}:{port}"))
            else:
                out.append(Check(False, "rdzv", f"node {i} ({h}) cannot reach the rendezvous {addr}:{port} of "
                                 f"{master}: {a.get('why')}",
                                 "set launch.master_addr to the address the nodes reach the first one at (its "
                                 "private IP on the cluster network), and open launch.master_port in its firewall"))
        return out
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

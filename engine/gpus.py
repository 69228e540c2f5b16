"""The GPUs of a launch target, through ``nvidia-smi`` (no torch), and what a job may ask of them.

A job is checked against the GPUs it will run on before it starts (``engine.launch.start_run``,
the launch step of the interface): more ranks per node than visible GPUs ("invalid device
ordinal" at the first rank past the last), bf16 on a GPU older than Ampere (emulated, slow, or
refused by the kernels), flash-attention-2 on one (its kernels need compute capability 8.0).
Without ``nvidia-smi`` nothing is said: the worker checks again on the node with torch.
Standard library only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from engine.schema import is_local_host

QUERY = "index,uuid,name,memory.total,compute_cap"
#: compute capability of Ampere: bf16 in hardware, flash-attention-2's kernels
AMPERE = (8, 0)


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_mib: float
    compute_cap: tuple[int, int] | None

    @property
    def cap(self) -> str:
        return "?" if self.compute_cap is None else f"{self.compute_cap[0]}.{self.compute_cap[1]}"


def parse(out: str, visible: str | None = None) -> list[Gpu]:
    """``nvidia-smi --query-gpu=index,uuid,name,memory.total[,compute_cap] --format=csv,noheader,nounits``
    lines → the GPUs a process sees under ``CUDA_VISIBLE_DEVICES=visible`` (indices or UUIDs, in that
    order; None: all; ``""``: none)."""
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        cap = None
        if len(parts) > 4:
            try:
                major, minor = parts[4].split(".")
                cap = (int(major), int(minor))
            except ValueError:
                cap = None
        try:
            mem = float(parts[3])
        except ValueError:
            mem = 0.0
        gpus.append(Gpu(int(parts[0]), parts[1], parts[2], mem, cap))
    if visible is None:
        return gpus
    out_: list[Gpu] = []
    for tok in (t.strip() for t in visible.split(",")):
        if not tok:
            continue
        hit = [g for g in gpus if (tok.isdigit() and g.index == int(tok)) or (not tok.isdigit() and g.uuid.startswith(tok))]
        if not hit:
            break  # CUDA stops at the first id it cannot find
        out_.append(hit[0])
    return out_


def _query(run: Any) -> str | None:
    """nvidia-smi's answer (with compute_cap, or without it on drivers that lack the field); None: no answer."""
    for q in (QUERY, QUERY.rsplit(",", 1)[0]):
        out = run(q)
        if out is not None:
            return out
    return None


def local(env: dict[str, str] | None = None) -> list[Gpu] | None:
    """This machine's GPUs as its processes see them (``CUDA_VISIBLE_DEVICES``); None without nvidia-smi."""
    env = dict(os.environ if env is None else env)
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if not smi:
        return None

    def run(q: str) -> str | None:
        try:
            p = subprocess.run([smi, f"--query-gpu={q}", "--format=csv,noheader,nounits"], capture_output=True,
                               text=True, timeout=15, env=env)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout if p.returncode == 0 else None

    out = _query(run)
    return None if out is None else parse(out, env.get("CUDA_VISIBLE_DEVICES"))


def remote(host: str) -> list[Gpu] | None:
    """A host's GPUs over SSH (its login environment's ``CUDA_VISIBLE_DEVICES``); None without an answer."""
    from engine.launch import ssh

    marker = "--finetui-visible--"

    def run(q: str) -> str | None:
        cmd = (f"printf '%s\\n' {marker}\"${{CUDA_VISIBLE_DEVICES-<unset>}}\"; "
               f"nvidia-smi --query-gpu={shlex.quote(q)} --format=csv,noheader,nounits")
        try:
            p = ssh.run(host, cmd, timeout=30)
        except Exception:  # noqa: BLE001 - no answer: the worker checks on the node itself
            raise _NoAnswer from None
        if p.returncode == 127:  # no nvidia-smi there: asking again without compute_cap would not help
            raise _NoAnswer
        return p.stdout.decode("utf-8", "replace") if p.returncode == 0 else None

    try:
        out = _query(run)
    except _NoAnswer:
        return None
    if out is None:
        return None
    first, _, rest = out.partition("\n")
    visible = first[len(marker):] if first.startswith(marker) else "<unset>"
    return parse(rest, None if visible == "<unset>" else visible)


class _NoAnswer(Exception):
    pass


def probe(host: str | None) -> list[Gpu] | None:
    return local() if is_local_host(host) else remote(str(host))


def describe(gpus: list[Gpu]) -> str:
    names = sorted({g.name for g in gpus})
    return f"{len(gpus)} × {names[0]}" if len(names) == 1 else ", ".join(g.name for g in gpus)


def problems(res: dict[str, Any], gpus: list[Gpu], where: str = "this machine") -> list[tuple[str, str, str]]:
    """What the job asks that these GPUs cannot do: (field, message, allowed).  Nothing for CPU jobs."""
    if res.get("launch.device") == "cpu":
        return []
    out: list[tuple[str, str, str]] = []
    n = int(res.get("launch.procs_per_node") or 1)
    if not gpus:
        if res.get("launch.device") == "cuda":
            out.append(("launch.device", f"cuda was asked for but {where} has no visible GPU", "cpu, auto"))
        return out
    if n > len(gpus):
        out.append(("launch.procs_per_node", f"{n} ranks per node but {where} has {len(gpus)} visible GPU"
                    f"{'s' if len(gpus) > 1 else ''} (one rank per GPU)", f"1–{len(gpus)}"))
    old = [g for g in gpus[:n] if g.compute_cap is not None and g.compute_cap < AMPERE]
    if old:
        g = old[0]
        if res.get("runtime.mixed_precision") == "bf16":
            out.append(("runtime.mixed_precision", f"bf16 needs an Ampere or newer GPU (compute capability 8.0); "
                        f"{g.name} on {where} is {g.cap} and would emulate it, slowly", "fp16, none"))
        if res.get("runtime.attention_implementation") == "flash_attention_2":
            out.append(("runtime.attention_implementation", f"flash-attention-2 needs an Ampere or newer GPU "
                        f"(compute capability 8.0); {g.name} on {where} is {g.cap}", "sdpa, eager"))
    return out


def default_procs(job: Any, gpus: list[Gpu] | None) -> int | None:
    """Ranks per node when the job leaves ``launch.procs_per_node`` unset and the host has several GPUs: one per
    visible GPU (None: keep the job's)."""
    res = job.resolved()
    if "launch.procs_per_node" in job.values or res.get("launch.device") == "cpu" or not gpus or len(gpus) < 2:
        return None
    return len(gpus)

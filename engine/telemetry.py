"""GPU telemetry of a run: per GPU utilization, memory used / total, temperature and power, sampled every
few seconds with ``nvidia-smi`` by the run's supervisor (local runs, and each SSH node's own supervisor),
never by the training loop, and appended to ``events.jsonl`` as ``gpu`` records:

``{"t", "kind": "gpu", "step", "gpus": [{"index", "name", "util", "mem_used", "mem_total", "temp", "power",
"power_limit"}, ...]}`` (MiB, °C, W; a field the driver does not report is null).

It also says, once each, when the GPUs sit idle while training runs (a data-loading or communication
bottleneck) or when a GPU's memory is near its limit: :func:`gpu_warnings` (the dashboard shows the same
lines from the records).  Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

QUERY = "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,power.limit"
#: without the power fields, for a driver that refuses one of them (the whole query fails then)
QUERY_NO_POWER = QUERY.rsplit(",", 2)[0]
SAMPLE_ENV = "FINETUI_GPU_SAMPLE_S"
SAMPLE_S = 5.0
#: mean utilization under this (%) over IDLE_SAMPLES samples while training: idle
IDLE_UTIL = 20.0
IDLE_SAMPLES = 3
#: memory used / total at or over this: near the limit
MEM_NEAR = 0.95


def _num(s: str) -> float | None:
    s = s.strip()
    try:
        return float(s)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_sample(out: str, visible: str | None = None) -> list[dict[str, Any]]:
    """``nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`` → one dict per GPU the run sees
    (``CUDA_VISIBLE_DEVICES``: indices or UUID prefixes, in that order; None: all)."""
    rows = []
    for line in out.splitlines():
        p = [x.strip() for x in line.split(",")]
        if len(p) < 7 or not p[0].isdigit():
            continue
        p += [""] * (9 - len(p))  # (asked without the power fields)
        rows.append({"index": int(p[0]), "uuid": p[1], "name": p[2], "util": _num(p[3]), "mem_used": _num(p[4]),
                     "mem_total": _num(p[5]), "temp": _num(p[6]), "power": _num(p[7]), "power_limit": _num(p[8])})
    if visible is None:
        return [{k: v for k, v in r.items() if k != "uuid"} for r in rows]
    out_rows = []
    for tok in (t.strip() for t in visible.split(",")):
        hit = [r for r in rows if (tok.isdigit() and r["index"] == int(tok)) or
               (tok and not tok.isdigit() and r["uuid"].startswith(tok))]
        if not hit:
            break  # CUDA stops at the first id it cannot find
        out_rows.append({k: v for k, v in hit[0].items() if k != "uuid"})
    return out_rows


def sample(env: dict[str, str] | None = None, timeout: float = 5.0) -> list[dict[str, Any]] | None:
    """This machine's GPUs now, as the run sees them; None without nvidia-smi or when it does not answer."""
    env = dict(os.environ if env is None else env)
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if not smi:
        return None
    for q in (QUERY, QUERY_NO_POWER):
        try:
            p = subprocess.run([smi, f"--query-gpu={q}", "--format=csv,noheader,nounits"], capture_output=True,
                               text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if p.returncode == 0:
            return parse_sample(p.stdout, env.get("CUDA_VISIBLE_DEVICES"))
    return None


def gpu_warnings(history: list[list[dict[str, Any]]], training: bool) -> dict[str, str]:
    """``{key: one line}`` for the newest samples (oldest first): GPUs idle while training (mean utilization
    under IDLE_UTIL % over the last IDLE_SAMPLES samples), a GPU's memory at MEM_NEAR of its total or more."""
    out: dict[str, str] = {}
    if not history:
        return out
    last = history[-1]
    recent = history[-IDLE_SAMPLES:]
    if training and len(recent) >= IDLE_SAMPLES:
        utils = [g["util"] for s in recent for g in s if g.get("util") is not None]
        if utils and sum(utils) / len(utils) < IDLE_UTIL:
            out["idle"] = (f"GPUs idle while training: {sum(utils) / len(utils):.0f}% mean utilization over the "
                           f"last {len(recent)} samples — a data-loading or communication bottleneck (more "
                           f"dataloader workers, larger batches, packing, or a faster link between nodes)")
    for g in last:
        used, total = g.get("mem_used"), g.get("mem_total")
        if used is not None and total and used / total >= MEM_NEAR:
            out[f"mem{g['index']}"] = (f"GPU {g['index']} memory near its limit: {used / 1024:.1f} of "
                                       f"{total / 1024:.1f} GiB ({used / total:.0%}) — out of memory is close "
                                       f"(smaller batch, gradient checkpointing, or a higher ZeRO stage)")
    return out


def describe(gpus: list[dict[str, Any]]) -> str:
    """``GPU0 97% 60.0/79.6 GiB 64°C 598 W · GPU1 …`` (one line; a value the driver did not report: ?)."""
    def one(g: dict[str, Any]) -> str:
        q = lambda v, f: "?" if v is None else format(v, f)  # noqa: E731
        mem = (f"{g['mem_used'] / 1024:.1f}/{g['mem_total'] / 1024:.1f} GiB"
               if g.get("mem_used") is not None and g.get("mem_total") else "? GiB")
        return (f"GPU{g.get('index', '?')} {q(g.get('util'), '.0f')}% {mem} {q(g.get('temp'), '.0f')}°C "
                f"{q(g.get('power'), '.0f')} W")
    return " · ".join(one(g) for g in gpus if isinstance(g, dict))


def _append(path: Path, rec: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:  # one write per line: line-atomic beside the worker's own
        fh.write(json.dumps(rec, allow_nan=False) + "\n")


class Sampler(threading.Thread):
    """Samples the GPUs every ``interval`` seconds into ``run_dir/events.jsonl`` while the run's events file
    exists (rank 0's node: other nodes of a multi-node run have none) and until ``stop()``; warns once per
    condition (a ``status`` record, phase ``warning``, ``by: "telemetry"``)."""

    def __init__(self, run_dir: Path, env: dict[str, str] | None = None, interval: float | None = None):
        super().__init__(name="finetui-gpu-telemetry", daemon=True)
        self.run_dir = Path(run_dir)
        self.env = env
        self.interval = interval if interval is not None else float(os.environ.get(SAMPLE_ENV) or SAMPLE_S)
        self._stop = threading.Event()
        self.history: list[list[dict[str, Any]]] = []
        self.said: set[str] = set()
        self.samples = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from engine.events import EVENTS_FILE, Tailer

        path = self.run_dir / EVENTS_FILE
        tail = Tailer(path)
        step, training, ended = 0, False, False
        while not self._stop.wait(self.interval if self.samples else min(self.interval, 1.0)):
            if not path.exists():
                continue
            for r in tail.read():
                step = max(step, int(r.get("step") or 0))
                if r.get("kind") == "status" and r.get("phase") != "warning":
                    training = r.get("phase") == "training"
                elif r.get("kind") in ("log", "eval", "progress"):
                    training = True
                elif r.get("kind") == "end":
                    ended = True
            if ended:
                return
            gpus = sample(self.env)
            if gpus is None:
                if self.samples == 0:
                    return  # no nvidia-smi here (a CPU run): nothing to sample
                continue
            if not gpus:
                continue
            self.samples += 1
            self.history = (self.history + [gpus])[-IDLE_SAMPLES:]
            now = round(time.time(), 3)
            try:
                _append(path, {"t": now, "kind": "gpu", "step": step, "gpus": gpus})
                for key, msg in gpu_warnings(self.history, training).items():
                    if key not in self.said:
                        self.said.add(key)
                        _append(path, {"t": now, "kind": "status", "step": step, "phase": "warning", "text": msg,
                                       "level": "warning", "by": "telemetry"})
            except (OSError, ValueError):
                continue

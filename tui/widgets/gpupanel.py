"""The dashboard's GPU panel: per GPU utilization, memory used / total, temperature and power from the
run's ``gpu`` records (engine/telemetry.py), and a warning line when the GPUs sit idle while training or
a GPU's memory is near its limit."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from engine.telemetry import IDLE_UTIL, MEM_NEAR, gpu_warnings

BAR = 10
#: phases in which low utilization is expected (the worker is not stepping)
NOT_TRAINING = ("loading data", "loading model", "tokenizing", "saving", "merging", "finished")


def _bar(frac: float) -> str:
    n = max(0, min(BAR, round(frac * BAR)))
    return "█" * n + "░" * (BAR - n)


def _v(x: Any, fmt: str, unit: str) -> str:
    return "—" if x is None else f"{x:{fmt}}{unit}"


def gpu_line(g: dict[str, Any]) -> Text:
    util, used, total = g.get("util"), g.get("mem_used"), g.get("mem_total")
    t = Text(f"GPU{g.get('index', '?')} ", "bold")
    u = (util or 0) / 100
    t.append(_bar(u), "red" if util is not None and util < IDLE_UTIL else "green")
    t.append(f" {_v(util, '.0f', '%'):>4}  ")
    if used is not None and total:
        frac = used / total
        t.append(_bar(frac), "red" if frac >= MEM_NEAR else "cyan")
        t.append(f" {used / 1024:.1f}/{total / 1024:.1f} GiB  ")
    else:
        t.append(f"mem {_v(used, '.0f', ' MiB')}  ")
    t.append(f"{_v(g.get('temp'), '.0f', '°C')}  ")
    power, limit = g.get("power"), g.get("power_limit")
    t.append(f"{_v(power, '.0f', '')}/{_v(limit, '.0f', ' W')}" if limit else _v(power, ".0f", " W"))
    return t


def training_now(st: Any) -> bool:
    return st.status == "running" and st.phase not in NOT_TRAINING and len(st.train_loss) > 0


def gpu_panel(st: Any) -> Text | None:
    """The panel's text for a :class:`tui.widgets.metrics.RunState`; None before the first sample."""
    if not st.gpu_history:
        return None
    hist = list(st.gpu_history)
    out = Text()
    for i, g in enumerate(hist[-1]):
        if i:
            out.append("\n")
        out.append_text(gpu_line(g))
    for msg in gpu_warnings(hist, training_now(st)).values():
        out.append("\n⚠ " + msg, "bold yellow")
    return out

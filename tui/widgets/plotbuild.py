"""Drawing a plotext figure to an ANSI string — no Textual import, so it can run in a helper process.

The dashboard builds its plots in one spawned helper process: a figure costs
10–30 ms of pure Python, which on a thread would hold the GIL against the event
loop and the tail worker.  Falls back to the calling thread when no process can
be started.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_FIG: Any = None
_POOL: ProcessPoolExecutor | None = None
_POOL_FAILED = False


def int_ticks(lo: float, hi: float, n: int) -> list[float]:
    """At most ``n`` round integer ticks inside [lo, hi]."""
    lo, hi = int(lo), int(hi + 0.999)
    if hi <= lo:
        return [float(lo)]
    span = hi - lo
    mag = 1
    while True:
        for m in (1, 2, 5):
            step = m * mag
            if span / step <= n:
                first = -(-lo // step) * step
                return [float(t) for t in range(first, hi + 1, step)] or [float(lo), float(hi)]
        mag *= 10


def y_range(lo: float, hi: float, min_span: float, min_abs: float = 0.0) -> tuple[float, float]:
    """[lo, hi] widened about its middle to at least ``min_span`` of the largest magnitude (a fraction), and at
    least ``min_abs``: a loss that moves in its fourth digit, or rewards near zero, are drawn flat, not as cliffs."""
    need = max(min_span * max(abs(lo), abs(hi)), min_abs)
    if hi - lo >= need or need <= 0:
        return lo, hi
    mid = (lo + hi) / 2
    return mid - need / 2, mid + need / 2


def build_ansi(plt: Any, width: int, height: int, spec: dict) -> str:
    """Draw ``spec`` with the plotext figure ``plt`` at ``width``×``height``."""
    from plotext._dict import themes

    if spec.get("theme_def") is not None and spec["theme"] not in themes:
        themes[spec["theme"]] = spec["theme_def"]
    plt.clear_data()
    plt.clear_figure()
    plt.title(spec["title"])
    xs_all: list[float] = []
    ys_all: list[float] = []
    for label, xs, ys, color, marker in spec["lines"]:
        if not xs:
            continue
        ys_all.extend((min(ys), max(ys)))
        if len(xs) > 2 * width:
            k = -(-len(xs) // (2 * width))
            xs = xs[::k] + ([xs[-1]] if (len(xs) - 1) % k else [])
            ys = ys[::k] + ([ys[-1]] if (len(ys) - 1) % k else [])
        xs_all.extend((xs[0], xs[-1]))
        plt.plot(xs, ys, marker=marker, color=color, label=label or None)
    for x, color in spec.get("vlines") or []:
        plt.vline(x, color)
    if spec["ylabel"]:
        plt.ylabel(spec["ylabel"])
    xlim = spec.get("xlim")  # the dashboard's plots share one x-range
    if xlim and xlim[1] > xlim[0]:
        plt.xlim(*xlim)
        xs_all.extend(xlim)
    if ys_all:
        lo, hi = y_range(min(ys_all), max(ys_all), spec.get("min_span", 0.0), spec.get("min_abs", 0.0))
        if spec.get("ylim"):  # a bounded quantity (an accuracy): its whole range
            lo, hi = min(lo, spec["ylim"][0]), max(hi, spec["ylim"][1])
        if (lo, hi) != (min(ys_all), max(ys_all)):
            plt.ylim(lo, hi)
    if xs_all and spec["int_x"]:
        ticks = int_ticks(min(xs_all), max(xs_all), max(2, min(8, width // 8)))
        plt.xticks(ticks, [str(int(t)) for t in ticks])
    plt.plotsize(width, height)
    plt._set_size(width, height)  # see textual_plotext.PlotextPlot.render
    plt.theme(spec["theme"])
    return plt.build()


def _child_build(width: int, height: int, spec: dict) -> str:
    global _FIG
    if _FIG is None:
        from plotext._figure import _figure_class

        _FIG = _figure_class()
    return build_ansi(_FIG, width, height, spec)


def _warm() -> bool:
    import plotext._figure  # noqa: F401

    return True


def pool() -> ProcessPoolExecutor | None:
    """The helper process (started on first use, in the background), or None if it cannot run."""
    global _POOL, _POOL_FAILED
    if _POOL is None and not _POOL_FAILED:
        try:
            _POOL = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            _POOL.submit(_warm)
        except Exception:
            _POOL_FAILED = True
            _POOL = None
    return _POOL


def build_remote(width: int, height: int, spec: dict, timeout: float = 10.0) -> str | None:
    """Build in the helper process; None when it is not available (the caller builds itself)."""
    global _POOL_FAILED, _POOL
    p = pool()
    if p is None:
        return None
    try:
        return p.submit(_child_build, width, height, spec).result(timeout=timeout)
    except Exception:
        _POOL_FAILED = True
        try:
            p.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass
        _POOL = None
        return None

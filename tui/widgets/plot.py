"""A metric plot (textual-plotext) drawn from :class:`~tui.widgets.metrics.Series`.

The plot is rebuilt only by :meth:`MetricPlot.redraw`, which the monitor calls at
most a few times a second for plots whose data changed; every series is thinned
to about two points per column (braille resolution) before plotting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rich.text import Text
from textual_plotext import PlotextPlot


@dataclass
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = "primary"  # a theme colour name (primary, accent, warning, success, error, secondary)
    marker: str = "braille"


def int_ticks(lo: float, hi: float, n: int) -> list[float]:
    """At most ``n`` round integer ticks inside [lo, hi]."""
    lo, hi = int(lo), int(hi + 0.999)
    if hi <= lo:
        return [float(lo)]
    span = hi - lo
    step = 1
    mag = 1
    while True:
        for m in (1, 2, 5):
            step = m * mag
            if span / step <= n:
                first = -(-lo // step) * step
                return [float(t) for t in range(first, hi + 1, step)] or [float(lo), float(hi)]
        mag *= 10


class MetricPlot(PlotextPlot):
    """A line plot of one or more series with a title showing the current values."""

    def __init__(self, title: str = "", *, ylabel: str = "", log_y: bool = False, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.plot_title = title
        self.ylabel = ylabel
        self.log_y = log_y
        self.lines: list[Line] = []
        self.placeholder = "waiting for data…"
        self.draws = 0
        self.int_x = True  # x is a step count
        self.builds = 0
        self._cache: tuple | None = None

    def set_lines(self, lines: list[Line], title: str | None = None) -> None:
        """Replace the data; call :meth:`redraw` (throttled by the caller) to show it."""
        self.lines = lines
        if title is not None:
            self.plot_title = title

    def _rgb(self, name: str) -> tuple[int, int, int] | str:
        try:
            theme = self.app.current_theme
            c = getattr(theme, name, None) or theme.primary
            from textual.color import Color

            return Color.parse(c).rgb
        except Exception:
            return "blue"

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.plot_title)
        width = max(10, self.size.width)
        any_data = False
        for ln in self.lines:
            xs, ys = list(ln.xs), list(ln.ys)
            if not xs:
                continue
            if len(xs) > 2 * width:
                k = -(-len(xs) // (2 * width))
                xs = xs[::k] + ([xs[-1]] if (len(xs) - 1) % k else [])
                ys = ys[::k] + ([ys[-1]] if (len(ys) - 1) % k else [])
            any_data = True
            plt.plot(xs, ys, marker=ln.marker, color=self._rgb(ln.color), label=ln.label or None)
        if self.ylabel:
            plt.ylabel(self.ylabel)
        if any_data and self.int_x:
            lo = min(min(ln.xs) for ln in self.lines if len(ln.xs))
            hi = max(max(ln.xs) for ln in self.lines if len(ln.xs))
            ticks = int_ticks(lo, hi, max(2, min(8, width // 8)))
            plt.xticks(ticks, [str(int(t)) for t in ticks])
        self._has_data = any_data
        self.draws += 1
        self.refresh()

    def render(self):  # type: ignore[override]
        if self.size.width < 12 or self.size.height < 5:
            return Text(self.plot_title, overflow="ellipsis", no_wrap=True)
        if not getattr(self, "_has_data", False):
            return Text.assemble((self.plot_title + "\n", "bold"), (self.placeholder, "dim"))
        # building a plotext figure costs ~20 ms: build once per (data, size, theme), not per repaint
        key = (self.draws, self.size, self.app.theme)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            out = super().render()
        except Exception as e:  # plotext can fail on degenerate sizes/data: never crash the screen
            out = Text(f"{self.plot_title}: cannot draw ({e.__class__.__name__})", style="dim")
        self._cache = (key, out)
        self.builds += 1
        return out

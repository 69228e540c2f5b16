"""A metric plot (textual-plotext) drawn from :class:`~tui.widgets.metrics.Series`.

The plot is rebuilt only by :meth:`MetricPlot.redraw`, which the monitor calls at
most a few times a second for plots whose data changed; the figure is built on a
background thread, and every series is thinned to about two points per column
(braille resolution) before plotting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from concurrent.futures import ThreadPoolExecutor

import io

from rich.console import Console
from rich.text import Text
from textual.message import Message
from textual.strip import Strip
from textual_plotext import PlotextPlot

from tui.widgets.plotbuild import build_ansi, build_remote, int_ticks  # noqa: F401


@dataclass
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = "primary"  # a theme colour name (primary, accent, warning, success, error, secondary)
    marker: str = "braille"


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plot-build")
    return _POOL


MIN_Y_SPAN = 0.1  # the y-axis spans at least this fraction of the values' magnitude


class MetricPlot(PlotextPlot):
    """A line plot of one or more series with a title showing the current values.

    Building a plotext figure costs 10–30 ms of pure Python; it is done on a
    background thread (one build at a time per plot, the newest request wins) so
    the event loop never stalls on it (the figure itself is drawn in a helper
    process, see :mod:`tui.widgets.plotbuild`): :meth:`redraw` asks for a build, the
    result arrives as a :class:`Built` message, and :meth:`render` only returns
    the last built text.
    """

    class Built(Message):
        def __init__(self, key: tuple, text: Text):
            super().__init__()
            self.key = key
            self.text = text

    def __init__(self, title: str = "", *, ylabel: str = "", log_y: bool = False, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.plot_title = title
        self.ylabel = ylabel
        self.log_y = log_y
        self.lines: list[Line] = []
        self.placeholder = "waiting for data…"
        self.draws = 0  # redraw requests
        self.builds = 0  # figures built
        self.int_x = True  # x is a step count
        self.xlim: tuple[float, float] | None = None  # set by the dashboard: the same x-range on every plot
        self.min_span = MIN_Y_SPAN
        self.min_abs = 0.0  # and at least this much (values near zero: rewards)
        self.ylim: tuple[float, float] | None = None  # a bounded quantity's whole range (an accuracy: 0 to 1)
        self.vlines: list[tuple[float, str]] = []  # (x, theme colour): marks across the plot (a Slurm requeue)
        self._has_data = False
        self._cache: tuple | None = None  # (key, Text)
        self._inflight: tuple | None = None

    def set_lines(self, lines: list[Line], title: str | None = None) -> None:
        """Replace the data; call :meth:`redraw` (throttled by the caller) to show it."""
        self.lines = lines
        if title is not None:
            self.plot_title = title

    def _rgb(self, name: str) -> tuple[int, int, int] | str:
        try:
            from textual.color import Color

            theme = self.app.current_theme
            c = getattr(theme, name, None) or theme.primary
            return Color.parse(c).rgb
        except Exception:
            return "blue"

    def _key(self) -> tuple:
        return (self.draws, self.size.width, self.size.height, self.app.theme)

    @property
    def settled(self) -> bool:
        """True when what is shown is the latest data at the current size (for tests)."""
        return not self._has_data or (self._cache is not None and self._cache[0] == self._key())

    def redraw(self) -> None:
        self._has_data = any(len(ln.xs) for ln in self.lines)
        self.draws += 1
        self._schedule()
        if not self._has_data:
            self.refresh()

    def _schedule(self) -> None:
        if not self._has_data or not self.is_mounted:
            return
        key = self._key()
        if (self._cache is not None and self._cache[0] == key) or self._inflight is not None:
            return  # shown already, or a build is running (its completion reschedules)
        width, height = key[1], key[2]
        if width < 12 or height < 5:
            return
        self._inflight = key
        spec = {
            "title": self.plot_title,
            "ylabel": self.ylabel,
            "int_x": self.int_x,
            "xlim": self.xlim,
            "min_span": self.min_span,
            "min_abs": self.min_abs,
            "ylim": self.ylim,
            "vlines": [(x, self._rgb(c)) for x, c in self.vlines],
            "lines": [(ln.label, list(ln.xs), list(ln.ys), self._rgb(ln.color), ln.marker) for ln in self.lines],
            "theme": self._get_plotext_theme_name(self.app.theme),
        }
        from plotext._dict import themes

        spec["theme_def"] = themes.get(spec["theme"])
        _pool().submit(self._build, key, spec)

    def _build(self, key: tuple, spec: dict) -> None:
        """On the plot-build thread: draw the figure, render it to strips, post them back."""
        width, height = key[1], key[2]
        try:
            text = build_figure(self.plt, width, height, spec)
        except Exception as e:  # plotext can fail on degenerate sizes/data: never crash the screen
            text = Text(f"{spec['title']}: cannot draw ({e.__class__.__name__})", style="dim")
        try:
            strips = to_strips(text, width, height)
        except Exception:
            strips = None
        self.post_message(self.Built(key, strips if strips is not None else text))

    def on_metric_plot_built(self, msg: "MetricPlot.Built") -> None:
        msg.stop()
        self._inflight = None
        self._cache = (msg.key, msg.text)
        self.builds += 1
        self.refresh()
        if msg.key != self._key():
            self._schedule()

    def on_resize(self) -> None:
        self._schedule()

    def render_line(self, y: int) -> Strip:
        # the figure arrives as ready strips: no Rich rendering on the event loop
        cache = self._cache
        if self._has_data and cache is not None and isinstance(cache[1], list) and self.size.width >= 12 \
                and self.size.height >= 5:
            if cache[0] != self._key():
                self.call_later(self._schedule)
            strips = cache[1]
            width = self.size.width
            if y < len(strips):
                return strips[y].crop_extend(0, width, None)
            return Strip.blank(width)
        return super().render_line(y)

    def render(self):  # type: ignore[override]
        if self.size.width < 12 or self.size.height < 5:
            return Text(self.plot_title, overflow="ellipsis", no_wrap=True)
        if not self._has_data:
            return Text.assemble((self.plot_title + "\n", "bold"), (self.placeholder, "dim"))
        if self._cache is None or self._cache[0] != self._key():
            self.call_later(self._schedule)  # resized or re-themed: build again
        if self._cache is None:
            return Text(self.plot_title, style="bold")
        return self._cache[1]


def to_strips(text: Text, width: int, height: int) -> list[Strip]:
    """Render ``text`` to ``height`` strips of ``width`` cells (thread-safe: a private Console)."""
    console = Console(width=width, height=height, color_system="truecolor", force_terminal=True,
                      file=io.StringIO(), legacy_windows=False)
    opts = console.options.update(width=width, height=height, no_wrap=True, overflow="crop")
    lines = console.render_lines(text, opts, pad=True)
    return [Strip(line, width) for line in lines[:height]]


def build_figure(plt, width: int, height: int, spec: dict) -> Text:
    """Draw ``spec`` at ``width``×``height`` (in the helper process when there is one) as Text."""
    ansi = build_remote(width, height, spec)
    if ansi is None:
        ansi = build_ansi(plt, width, height, spec)
    return Text.from_ansi(ansi)

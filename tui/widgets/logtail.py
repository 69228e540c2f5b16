"""The log tail: the run's worker.log (or its events as lines) with search.

Lines are kept in a bounded deque; the visible :class:`LogView` (a RichLog) shows either the
tail or, while a search term is set, only the lines that contain it (highlighted).
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Any, Iterable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, RichLog, Static

KEEP_LINES = 5000
FLUSH_S = 0.25
SHOW_LINES = 1000
_ERR = re.compile(r"\b(error|traceback|exception|failed|killed|out of memory)\b", re.I)
_WARN = re.compile(r"\bwarn(ing)?\b", re.I)


def event_line(rec: dict[str, Any]) -> str | None:
    """A one-line rendering of an event record (used when there is no worker.log)."""
    k = rec.get("kind")
    t = rec.get("t")
    ts = time.strftime("%H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else "--:--:--"
    step = rec.get("step", 0)
    if k == "log":
        parts = [f"{key}={rec[key]:.4g}" for key in ("loss", "lr", "grad_norm") if isinstance(rec.get(key), (int, float))]
        return f"{ts} step {step}: " + " ".join(parts)
    if k == "eval":
        parts = [f"{key}={v:.4g}" for key, v in rec.items() if key.startswith("eval_") and isinstance(v, (int, float))]
        return f"{ts} eval step {step}: " + " ".join(parts)
    if k == "status":
        return f"{ts} {rec.get('phase', '')}" + (f": {rec['text']}" if rec.get("text") else "")
    if k == "checkpoint":
        done = "" if rec.get("complete", True) else " (incomplete)"
        return f"{ts} checkpoint {rec.get('path', step)}{done}"
    if k == "start":
        return f"{ts} start: world size {rec.get('world_size', 1)}, {rec.get('total_steps', '?')} steps"
    if k == "end":
        return f"{ts} end: {rec.get('outcome', '?')}" + (f" → {rec['final_path']}" if rec.get("final_path") else "")
    if k == "error":
        return f"{ts} ERROR {rec.get('message', '')}"
    return None


def _last_segment(line: str) -> str:
    if "\r" not in line:
        return line
    parts = [p for p in line.split("\r") if p.strip()]
    return parts[-1] if parts else ""


class LogView(RichLog):
    """The log's lines; it follows the end (new lines scroll it) until the user scrolls up, and
    again once they scroll back to the end.  Whether it follows is kept, not read off the scroll
    position: a layout change that makes the view shorter (the run's end line appearing above it)
    leaves it a line or two short of the end, and it must keep following then."""

    following = True

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y:
            self.following = True
        elif new_value < old_value:  # moved up (a taller view only clamps it to the new end)
            self.following = False

    def on_resize(self, event: events.Resize) -> None:  # RichLog's own on_resize runs too (Textual: every class's)
        if self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_end(animate=False)


class LogTail(Vertical):
    """A titled log with a search box (hidden until :meth:`open_search`)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.term = ""
        self.total = 0
        self._pending: list[str] = []
        self._title_dirty = False

    def compose(self) -> ComposeResult:
        yield Static("Log", id="log-title", markup=False)
        yield Input(placeholder="search the log (Enter keeps it, Esc clears)", id="log-search")
        yield LogView(id="log-view", max_lines=SHOW_LINES, wrap=True, markup=False, auto_scroll=True)

    @property
    def view(self) -> LogView:
        return self.query_one("#log-view", LogView)

    def _styled(self, line: str) -> Text:
        t = Text(line)
        if _ERR.search(line):
            t.stylize("bold red")
        elif _WARN.search(line) or line.startswith("──── ↻"):  # (a Slurm requeue's mark: tui/screens/monitor.py)
            t.stylize("yellow")
        if self.term:
            t.highlight_words([self.term], style="reverse", case_sensitive=False)
        return t

    def on_mount(self) -> None:
        # each write to the view resizes it (a layout pass of the whole screen): batch them
        self.set_interval(FLUSH_S, self.flush)

    def add_lines(self, lines: Iterable[str], now: bool = False) -> None:
        # a carriage return redraws the line (progress bars): keep what a terminal would show
        new = [_last_segment(ln) for ln in lines]
        if not new:
            return
        self.lines.extend(new)
        self.total += len(new)
        self._pending.extend(new if not self.term else [ln for ln in new if self.term.lower() in ln.lower()])
        if self.term:
            self._title_dirty = True
        if now:
            self.flush()

    def flush(self) -> None:
        if self._title_dirty:
            self._title_dirty = False
            self._update_title()
        if not self._pending:
            return
        show = self._pending[-SHOW_LINES:]
        self._pending = []
        view = self.view
        follow = view.following
        view.write(Text("\n").join(self._styled(ln) for ln in show), scroll_end=follow)
        if follow:  # the first batch may land before the view has its size
            view.call_after_refresh(view.scroll_end, animate=False)

    # -- search --------------------------------------------------------------
    def open_search(self) -> None:
        self.add_class("-searching")
        self.query_one("#log-search", Input).focus()

    def close_search(self) -> None:
        inp = self.query_one("#log-search", Input)
        inp.value = ""
        self.remove_class("-searching")
        self.set_term("")

    def set_term(self, term: str) -> None:
        term = term.strip()
        if term == self.term:
            return
        self.term = term
        self._pending = []
        view = self.view
        view.clear()
        src = list(self.lines)
        show = [ln for ln in src if term.lower() in ln.lower()] if term else src
        show = show[-SHOW_LINES:]
        if show:
            view.write(Text("\n").join(self._styled(ln) for ln in show), scroll_end=True)
            view.call_after_refresh(view.scroll_end, animate=False)
        self._update_title()

    def matches(self) -> int:
        if not self.term:
            return len(self.lines)
        return sum(1 for ln in self.lines if self.term.lower() in ln.lower())

    def _update_title(self) -> None:
        title = self.query_one("#log-title", Static)
        if self.term:
            title.update(f"Log — {self.matches()} lines match “{self.term}”", layout=False)
        else:
            title.update("Log", layout=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-search":
            event.stop()
            self.set_term(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search":
            event.stop()
            self.view.focus()

    def on_key(self, event) -> None:  # escape inside the search box clears it
        if event.key == "escape" and self.has_class("-searching"):
            event.stop()
            event.prevent_default()
            self.close_search()
            self.view.focus()

"""The checkpoint table: step, time saved, complete, best."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.widgets import DataTable


class CheckpointTable(DataTable):
    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False, show_cursor=False)
        self._shown: list[tuple[Any, ...]] = []

    def on_mount(self) -> None:
        self.add_column("Step", key="step", width=5)
        self.add_column("Saved", key="time", width=8)
        self.add_column("Done", key="complete", width=4)
        self.add_column("Best", key="best", width=4)

    def show(self, rows: list[dict[str, Any]]) -> None:
        """Show ``rows`` (from RunState.checkpoint_rows); touches only the rows that changed."""
        key = [(int(r.get("step") or 0), r.get("t"), bool(r.get("complete", True)), bool(r.get("_best")))
               for r in rows]
        if key == self._shown:
            return
        old = {k[0]: k for k in self._shown}
        if [k[0] for k in self._shown] != [k[0] for k in key][: len(self._shown)]:
            self.clear()  # not an extension of what is shown: start over
            old = {}
        for k in key:
            step, t, complete, best = k
            prev = old.get(step)
            if prev == k:
                continue
            cells = self._cells(k)
            if prev is None:
                self.add_row(*cells, key=str(step))
            else:
                for col, value in zip(("step", "time", "complete", "best"), cells):
                    self.update_cell(str(step), col, value)
        added = len(key) > len(self._shown)
        self._shown = key
        if added:
            self.scroll_end(animate=False)

    @staticmethod
    def _cells(k: tuple[Any, ...]) -> tuple[Any, ...]:
        step, t, complete, best = k
        ts = time.strftime("%H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else "—"
        return (
            Text(str(step), justify="right"),
            ts,
            Text("✔", style="green") if complete else Text("…", style="yellow"),
            Text("★", style="bold yellow") if best else "",
        )

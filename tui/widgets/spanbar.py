"""The base of the one-line bars drawn as one widget (the key bar, the step bar)."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widget import Widget


class SpanBar(Widget, can_focus=False):
    """A one-line widget whose ``render`` records where each clickable item is drawn.

    ``render`` sets ``_spans`` to (start column, end column, item) for the items it drew; the
    item under the pointer is ``_hover`` (the subclass draws it highlighted), and ``item_at``
    answers a click.
    """

    ALLOW_SELECT = False

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spans: list[tuple[int, int, Any]] = []
        self._hover: Any = None

    def item_at(self, x: int) -> Any:
        for start, end, item in self._spans:
            if start <= x < end:
                return item
        return None

    def hover_changed(self, item: Any) -> None:
        """Called when the pointer moves onto another item (or off all of them: None)."""

    def on_mouse_move(self, event: events.MouseMove) -> None:
        item = self.item_at(event.x)
        if item != self._hover:
            self._hover = item
            self.hover_changed(item)
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.refresh()

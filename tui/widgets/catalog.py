"""A one-line-per-item pick list (the model step's catalog), lighter than Textual's ``OptionList``.

``OptionList`` lays out every option as wrapped rich content and keeps per-option renders: on the
model step's first screen (21 models, 8 lines shown) it cost about 45 ms of a 2-core machine's
start-up, more than the rest of the step's widgets together.  Here each item is one line, cut with
an ellipsis, and only the lines on screen are drawn (Textual's line API on a ``ScrollView``).

Keys: Up/Down, Home/End, PageUp/PageDown move the highlight; Enter picks it.  A click picks the
item under the pointer.  Picking posts :class:`CatalogList.Picked` with the item's id.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual.binding import Binding
from textual.content import Content
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


class CatalogList(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    CatalogList {
        height: auto;
        max-height: 100%;
        overflow-x: hidden;
        padding: 0 1;
        background: $surface;
        color: $foreground;
        & > .catalog-list--highlight {
            color: $foreground;
            background: $block-cursor-blurred-background;
        }
        &:focus > .catalog-list--highlight {
            color: $block-cursor-foreground;
            background: $block-cursor-background;
            text-style: $block-cursor-text-style;
        }
    }
    """
    COMPONENT_CLASSES = {"catalog-list--highlight"}
    BINDINGS = [
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "move(-1000000)", show=False),
        Binding("end", "move(1000000)", show=False),
        Binding("enter", "pick", "Pick", show=False),
    ]

    class Picked(Message):
        """An item was picked (Enter or a click)."""

        def __init__(self, catalog: "CatalogList", item_id: str) -> None:
            super().__init__()
            self.catalog = catalog
            self.item_id = item_id

        @property
        def control(self) -> "CatalogList":
            return self.catalog

    def __init__(self, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._items: list[tuple[str, Content]] = []
        self.highlighted: int | None = None

    # -- items --------------------------------------------------------------
    def set_items(self, items: Iterable[tuple[str, Any]]) -> None:
        """(id, prompt) pairs; a prompt is a str, a rich Text or a Content."""
        self._items = [(i, Content.from_text(p if isinstance(p, (str, Text, Content)) else str(p), markup=False))
                       for i, p in items]
        if self.highlighted is not None and self.highlighted >= len(self._items):
            self.highlighted = None
        self.virtual_size = Size(0, len(self._items))
        self.refresh()

    @property
    def item_ids(self) -> list[str]:
        return [i for i, _ in self._items]

    def highlight(self, index: int | None) -> None:
        if index is not None:
            index = max(0, min(len(self._items) - 1, index)) if self._items else None
        if index != self.highlighted:
            self.highlighted = index
            self.refresh()
        if index is not None:
            self.scroll_to_region(Region(0, index, 1, 1), animate=False, immediate=not self.is_mounted, force=True)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return len(self._items)

    # -- drawing ------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        if index == self.highlighted:
            style = self.get_visual_style("catalog-list--highlight")
        else:
            style = self.visual_style
        if not 0 <= index < len(self._items) or width <= 0:
            return Strip.blank(max(0, width), style.rich_style)
        line = self._items[index][1].truncate(max(0, width - 1), ellipsis=True)
        return Strip(line.render_segments(style)).extend_cell_length(width, style.rich_style)

    # -- input --------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        if not self._items:
            return
        start = self.highlighted if self.highlighted is not None else (-1 if delta > 0 else len(self._items))
        self.highlight(start + delta)

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.scrollable_content_region.height - 1))

    def action_pick(self) -> None:
        if self.highlighted is not None and self._items:
            self.post_message(self.Picked(self, self._items[self.highlighted][0]))

    def on_click(self, event: Any) -> None:
        index = event.y + self.scroll_offset.y
        if 0 <= index < len(self._items) and event.x < self.scrollable_content_region.width + 1:
            event.stop()
            self.highlight(index)
            self.action_pick()

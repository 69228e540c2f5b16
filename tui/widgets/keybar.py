"""The key footer as one widget.

Textual's ``Footer`` is a container of one ``FooterKey`` widget per key.  It composes nothing
until the screen first publishes its bindings, then builds its keys, and rebuilds them all
whenever the keys change: the first frame has no keys, they arrive a few hundred milliseconds
later with a layout pass and a repaint, and each rebuild is ~10 widgets to mount and style.
``KeyBar`` draws the same line (the keys of the focused widget and its ancestors, then the
palette key on the right, behind a thin bar) as one widget: the keys are on the first frame,
and a change repaints one line.  A click on a key presses it; the pointer highlights the key
under it; a disabled key is dimmed, and clicking it rings the bell, as with ``Footer``.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual import events
from textual.screen import Screen

from tui.widgets.spanbar import SpanBar


class Key(NamedTuple):
    key: str  # as bound (what a click simulates)
    display: str  # as shown (``^n``)
    description: str
    enabled: bool
    tooltip: str


class KeyBar(SpanBar):
    """One line of keys, docked at the bottom of a screen."""

    COMPONENT_CLASSES = {"keybar--key", "keybar--description", "keybar--hover", "keybar--separator"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
        & > .keybar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .keybar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .keybar--hover {
            background: $block-hover-background;
        }
        & > .keybar--separator {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: tuple[tuple[Key, ...], Key | None] | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, screen: Screen) -> None:
        if screen is self.screen and self.is_attached and self.keys() != self._shown:
            self.refresh()

    def keys(self) -> tuple[tuple[Key, ...], Key | None]:
        """The keys shown (one per action, in binding order) and the palette key."""
        app = self.app
        try:
            active = self.screen.active_bindings
        except Exception:  # noqa: BLE001 - not on a screen yet
            return (), None
        palette_key = app.COMMAND_PALETTE_BINDING
        keys: list[Key] = []
        actions: set[str] = set()
        palette: Key | None = None
        for key, (_node, b, enabled, tooltip) in active.items():
            if key == palette_key and app.ENABLE_COMMAND_PALETTE:
                palette = Key(b.key, app.get_key_display(b), b.description, enabled, b.tooltip or b.description)
                continue
            if not b.show or b.action in actions:
                continue
            actions.add(b.action)
            keys.append(Key(b.key, app.get_key_display(b), b.description, enabled, tooltip or b.tooltip))
        return tuple(keys), palette

    def render(self) -> Text:
        shown = self.keys()
        self._shown = shown
        keys, palette = shown
        key_style = self.get_component_rich_style("keybar--key", partial=True)
        desc_style = self.get_component_rich_style("keybar--description", partial=True)
        hover_style = self.get_component_rich_style("keybar--hover", partial=True)
        sep_style = self.get_component_rich_style("keybar--separator", partial=True)
        width = self.size.width
        tail = Text()
        if palette is not None:
            tail.append("▏", sep_style)
            tail.append(palette.display, key_style)
            tail.append(" " + palette.description + " ", desc_style)
        text = Text(no_wrap=True, overflow="crop")
        spans: list[tuple[int, int, Key]] = []
        room = max(0, width - tail.cell_len)
        for k in keys:
            part = Text()
            part.append(k.display, key_style)
            if k.description:
                part.append(" " + k.description, desc_style)
            if not k.enabled:
                part.stylize("dim")
            if k == self._hover:
                part.stylize(hover_style)
            if text.cell_len + part.cell_len > room:
                break
            start = text.cell_len
            text.append_text(part)
            spans.append((start, text.cell_len, k))
            text.append(" ")
        if palette is not None and width:
            text.append(" " * max(0, width - text.cell_len - tail.cell_len))
            start = text.cell_len
            if palette == self._hover:
                tail.stylize(hover_style, 1)
            text.append_text(tail)
            spans.append((start + 1, text.cell_len, palette))
        self._spans = spans
        return text

    def hover_changed(self, item: Key | None) -> None:
        self.tooltip = item.tooltip if item is not None and item.tooltip else None

    def on_mouse_down(self, event: events.MouseDown) -> None:
        k = self.item_at(event.x)
        if k is None:
            return
        event.stop()
        if not k.enabled:
            self.app.bell()
        else:
            self.app.simulate_key(k.key)

"""A ``Select`` that builds its drop-down list the first time it opens.

Textual's ``Select`` composes its drop-down (an ``OptionList`` overlay holding every option) with
the widget, although most selects on a form are never opened: the wizard has about fifteen.  Here
the closed select is the current-value line only; the overlay is mounted, filled and opened on
the first open (Enter, Space, Down or a click), and behaves as Textual's from then on.  Values
set in code, ``set_options`` and the ``Changed`` messages work with or without the overlay.

It relies on a few internals of Textual's ``Select`` (checked below); with a Textual that lacks
them, ``LazySelect`` is Textual's ``Select`` unchanged.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.content import Content
from textual.css.query import NoMatches
from textual.widgets import Select
from textual.widgets._select import SelectCurrent, SelectOverlay

_INTERNALS = ("_setup_options_renderables", "_watch_value", "_watch_expanded", "_watch_prompt",
              "action_show_overlay", "_init_selected_option")


class _Current(SelectCurrent):
    """Textual's current-value line as one widget: it draws the value (or the prompt) and the arrow
    itself, where ``SelectCurrent`` composes three ``Static`` children (four widgets a select)."""

    DEFAULT_CSS = """
    _Current > .current--placeholder {
        color: $foreground 50%;
    }
    _Current > .current--arrow {
        color: $foreground 50%;
    }
    """
    COMPONENT_CLASSES = {"current--placeholder", "current--arrow"}

    def compose(self) -> Any:
        return iter(())

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return 1  # one line, with no children to measure

    def update(self, label: Any) -> None:
        self.label = label
        self.has_value = label is not Select.NULL
        self.refresh()

    def render(self) -> Content:
        label = self.label
        if label is Select.NULL:
            text = Content.styled(str(self.placeholder), self.get_visual_style("current--placeholder"))
        else:
            text = Content.from_text(label if isinstance(label, (str, Text, Content)) else str(label), markup=False)
        width = self.content_region.width if self.is_mounted else 0
        expanded = getattr(self.parent, "expanded", False)
        arrow = Content.styled("▲" if expanded else "▼", self.get_visual_style("current--arrow"))
        if width <= 2:
            return text
        text = text.truncate(width - 2, ellipsis=True)
        return Content.assemble(text, " " * (width - 1 - text.cell_length), arrow)


class _LazySelect(Select):  # type: ignore[type-arg]
    def compose(self) -> Any:
        yield _Current(self.prompt)

    def _overlay(self) -> SelectOverlay | None:
        try:
            return self.query_one(SelectOverlay)
        except NoMatches:
            return None

    def _setup_options_renderables(self) -> None:
        # overrides Select._setup_options_renderables: it fills the overlay, which is not built yet
        if self._overlay() is not None:
            super()._setup_options_renderables()

    def _watch_value(self, value: Any) -> None:
        # overrides Select._watch_value: it highlights the value in the overlay (not built yet)
        if self._overlay() is not None:
            super()._watch_value(value)
            return
        # Select._watch_value without the overlay's highlight
        self._value = value
        try:
            current = self.query_one(SelectCurrent)
        except NoMatches:
            return
        if value == self.NULL:
            current.update(self.NULL)
        else:
            for prompt, option_value in self._options:
                if option_value == value:
                    current.update(prompt)
                    break
        self.post_message(self.Changed(self, value))

    def _watch_prompt(self, prompt: str) -> None:
        # overrides Select._watch_prompt: it updates the overlay's blank option (not built yet)
        if self._overlay() is not None:
            super()._watch_prompt(prompt)
        elif self.is_mounted:
            current = self.query_one(SelectCurrent)
            current.placeholder = prompt
            if self._allow_blank and self.value == self.NULL:
                current.update(self.NULL)

    def _watch_expanded(self, expanded: bool) -> None:
        # extends Select._watch_expanded (shows the overlay): builds the overlay on the first open
        for current in self.query(_Current):
            current.refresh()  # its arrow
        if expanded and self._overlay() is None:
            self.call_later(self._build_and_open)
            return
        super()._watch_expanded(expanded)

    def action_show_overlay(self) -> None:
        if self._overlay() is None:
            self.query_one(SelectCurrent).has_value = True
            self.expanded = True  # builds the overlay, then opens it
            return
        super().action_show_overlay()

    async def _build_and_open(self) -> None:
        if self._overlay() is None:
            overlay = SelectOverlay(type_to_search=self._type_to_search).data_bind(compact=Select.compact)
            await self.mount(overlay)
            super()._setup_options_renderables()
        if self.expanded:  # Select._watch_expanded highlights the current value
            super()._watch_expanded(True)
            overlay = self._overlay()
            if overlay is not None and overlay.highlighted is None:
                overlay.action_first()


LazySelect: type[Select] = _LazySelect if all(hasattr(Select, n) for n in _INTERNALS) else Select  # type: ignore[type-arg]

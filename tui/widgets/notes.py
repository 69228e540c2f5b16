"""The import notes: what an import ignored, converted or trains differently, kept on screen until dismissed."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, Static


class NotesPanel(Vertical):
    """A panel over the wizard's steps listing every note of the last import, one per line (wrapped);
    hidden until an import has notes, and until its Dismiss button (or the palette's command) after."""

    def __init__(self) -> None:
        super().__init__(id="notes-panel")
        self.notes: list[str] = []
        self.display = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="notes-head"):
            yield Label("", id="notes-title")
            yield Button("Dismiss", id="notes-dismiss", compact=True)
        yield Static("", id="notes-body")

    def show(self, source: str, notes: list[str]) -> None:
        self.notes = list(notes)
        self.source = source
        self.display = bool(self.notes)
        if self.is_mounted:
            self._fill()

    source = ""

    def on_mount(self) -> None:
        self._fill()

    def _fill(self) -> None:
        if not self.notes:
            return
        self.query_one("#notes-title", Label).update(
            f"Imported {self.source}: {len(self.notes)} note(s) — read before launching")
        body = Text()
        for i, n in enumerate(self.notes):
            body.append(("\n" if i else "") + "• ", "bold")
            body.append(n)
        self.query_one("#notes-body", Static).update(body)

    def dismiss(self) -> None:
        self.notes = []
        self.display = False

    @on(Button.Pressed, "#notes-dismiss")
    def _dismiss(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss()
        self.app.call_after_refresh(getattr(self.app, "_focus_first", lambda: None))

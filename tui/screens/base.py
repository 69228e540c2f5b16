"""The base of finetui's full screens."""

from __future__ import annotations

from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets._toast import ToastRack


class QuietScreen(Screen):
    """A screen that does not repaint itself whole when nothing on it needs it.

    - Textual's ``Screen.focused`` reactive repaints the entire screen whenever the focus
      moves, although the widgets that gain and lose the focus restyle and repaint themselves
      (``:focus``, ``:focus-within``).  Each Tab then sent the whole screen to the terminal:
      about 12 kB at 100×32, against 0.2–3 kB for the lines that change, which an SSH link feels.
    - The notifications' rack covers the whole screen; Textual hides it at the first resume
      ("no notifications"), which repaints the whole screen right after the first frame.  It
      starts hidden here, and shows with the first notification as before.
    """

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def _extend_compose(self, widgets: list[Widget]) -> None:
        super()._extend_compose(widgets)
        for w in widgets:
            if isinstance(w, ToastRack):
                w.styles.display = "none"

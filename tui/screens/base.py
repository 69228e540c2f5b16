"""The base of finetui's full screens."""

from __future__ import annotations

from typing import Any

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
    - A whole frame paints every widget, but the repaints widgets asked for before it stay
      queued (the first frame: every widget, while the screen was built) and are painted again
      with the next update: one more frame's worth of bytes.  They are dropped after a whole frame.

    The private parts of Textual used here are looked up defensively: without them, the screen
    behaves as a plain Textual screen.
    """

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # each action's first binding is named after it: a [keys] entry of the user's config rebinds it (tui/keys.py)
        if "BINDINGS" in cls.__dict__:
            from tui.keys import with_ids

            cls.BINDINGS = with_ids(cls.BINDINGS)
        super().__init_subclass__(**kwargs)

    def _compositor_refresh(self) -> None:
        # extends Screen._compositor_refresh: after a whole frame, drops the widgets' queued repaints
        # (Widget._repaint_regions), which Textual would paint again with the next update
        comp = getattr(self, "_compositor", None)
        try:
            full = comp.size.region in comp._dirty_regions  # type: ignore[union-attr]
        except AttributeError:
            full = False
        super()._compositor_refresh()
        if full:
            for w in self.walk_children(with_self=True):
                pending = getattr(w, "_repaint_regions", None)
                if pending is not None:
                    pending.clear()

    def _extend_compose(self, widgets: list[Widget]) -> None:
        # extends Screen._extend_compose (adds the ToastRack): the rack starts hidden, where Textual
        # hides it at the first resume with a whole-screen repaint
        super()._extend_compose(widgets)
        for w in widgets:
            if isinstance(w, ToastRack):
                w.styles.display = "none"

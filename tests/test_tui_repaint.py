"""What the wizard sends to the terminal: a focus change repaints the widgets that change, never
the whole screen again (tui/screens/base.py, tui/app.py WizardScreen)."""

from __future__ import annotations

from textual._compositor import Compositor

SIZE = (100, 32)


async def test_start_and_tab_do_not_repaint_the_whole_screen_again(make_app, monkeypatch):
    full: list[int] = []
    orig = Compositor.render_full_update

    def counted(self, *a, **k):
        full.append(1)
        return orig(self, *a, **k)

    monkeypatch.setattr(Compositor, "render_full_update", counted)
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause(0.3)
        await pilot.pause()
        assert len(full) == 1  # the first frame, and only it
        first_focus = app.focused
        for _ in range(4):
            await pilot.press("tab")
            await pilot.pause()
        assert app.focused is not first_focus  # the focus moved ...
        assert len(full) == 1  # ... and repainted only what changed
        # a notification shows (the notifications' rack starts hidden) and the screen still works
        app.notify("hello")
        await pilot.pause(0.2)
        rack = app.screen.query_one("ToastRack")
        assert rack.display
        assert "hello" in str(rack.query_one("Toast").render())

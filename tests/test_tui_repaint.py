"""What the wizard sends to the terminal: a focus change repaints the widgets that change, never
the whole screen again (tui/screens/base.py, tui/app.py WizardScreen)."""

from __future__ import annotations

from textual._compositor import Compositor

SIZE = (100, 32)


def count_full_frames(monkeypatch) -> list[int]:
    """From now on, one item per whole frame the compositor renders."""
    full: list[int] = []
    orig = Compositor.render_full_update

    def counted(self, *a, **k):
        full.append(1)
        return orig(self, *a, **k)

    monkeypatch.setattr(Compositor, "render_full_update", counted)
    return full


async def test_start_and_tab_do_not_repaint_the_whole_screen_again(make_app, monkeypatch):
    full = count_full_frames(monkeypatch)
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause(0.3)
        await pilot.pause()
        assert len(full) == 1  # the first frame, and only it
        first_focus = app.focused
        assert first_focus is not None and first_focus.id == "f-model-name_or_path"  # not the step's body
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


async def test_the_key_bar_is_on_the_first_frame_and_its_keys_click(make_app):
    from tui.widgets.keybar import KeyBar

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        bar = app.screen.query_one(KeyBar)
        await pilot.pause()
        text = str(bar.render())
        assert "^n Next" in text and "^q Quit" in text and text.rstrip().endswith("▏^p palette")
        assert len(bar.children) == 0  # one widget, not one per key
        assert app.step == "model"
        x = text.index("^n Next")
        await pilot.click(KeyBar, offset=(x + 3, 0))
        await pilot.pause()
        assert app.step == "data"
        # the pointer over a key highlights it and shows its tooltip; off the keys, nothing
        await pilot.hover(KeyBar, offset=(x + 1, 0))
        assert bar._hover is not None and bar._hover.description == "Next"
        assert bar.item_at(len(text.rstrip()) - 3).description == "palette"
        assert bar.item_at(x - 1) is None


async def test_steps_not_visited_are_built_hidden_while_the_user_reads(make_app, monkeypatch):
    import time

    from tui.widgets.step import STEP_IDS

    repainted: list = []
    orig = Compositor.render_partial_update

    def spy(self, *a, **k):
        repainted.extend(self._dirty_regions)
        return orig(self, *a, **k)

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        monkeypatch.setattr(Compositor, "render_partial_update", spy)
        focused = app.focused
        app._last_input = time.monotonic()  # a key just now: not yet
        assert app.prebuild_step() is False
        app._last_input = 0.0
        assert app.prebuild_step() is True  # one step; the next ones follow on timers, a second apart
        for _ in range(100):
            if all(app.panes[sid].ready for sid in STEP_IDS):
                break
            await pilot.pause(0.1)
        for sid in STEP_IDS[1:]:
            pane = app.panes[sid]
            assert pane.ready and not pane.display  # built, hidden
        assert app.step == "model" and app.focused is focused  # the user's step is untouched
        # ... and not painted again: building a hidden step repaints nothing of the one on screen
        step_area = app.switcher.region.area
        assert repainted == [] or max(r.area for r in repainted) < step_area / 4
        monkeypatch.setattr(Compositor, "render_partial_update", orig)
        # the job's values are in the hidden steps before their first visit
        app.job.values["general.learning_rate"] = 0.0005
        app._sync_hidden(app.panes["hyperparameters"])
        app.goto("hyperparameters")  # a switch, nothing to build
        assert app.switcher.current == "step-hyperparameters"
        await pilot.pause()
        assert app.query_one("#f-general-learning_rate").value == "0.0005"


async def test_the_step_bar_is_one_widget_and_its_steps_click(make_app):
    from tui.widgets.step import StepBar

    app = make_app()
    async with app.run_test(size=(120, 32)) as pilot:
        await pilot.pause()
        bar = app.query_one(StepBar)
        assert len(bar.children) == 0
        text = str(bar.render())
        assert "finetui" in text and "3 Trainer" in text and text.rstrip().endswith("native")
        await pilot.click(StepBar, offset=(text.index("3 Trainer") + 2, 0))
        await pilot.pause()
        assert app.step == "trainer"
        bar.update_steps("trainer", {"hyperparameters": 2})
        assert "4 Hyperparameters ✗2" in str(bar.render())
        await pilot.click(StepBar, offset=(2, 0))  # the name, not a step: nothing
        await pilot.pause()
        assert app.step == "trainer"


async def test_tab_in_a_dialog_does_not_repaint_the_whole_screen(make_app, monkeypatch):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_save_preset()
        await pilot.pause(0.3)
        dialog = app.screen
        assert dialog is not app.screen_stack[0]
        full = count_full_frames(monkeypatch)
        before = app.focused
        for _ in range(3):
            await pilot.press("tab")
            await pilot.pause()
        assert app.focused is not before and app.screen is dialog
        assert full == []

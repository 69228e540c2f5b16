"""Snapshot tests of the wizard's steps (pytest-textual-snapshot) at 80×24 and 120×40.

Update after an intended change: ``pytest tests/test_tui_snapshots.py --snapshot-update``;
``scripts/screenshots.py`` writes the same views to ``screenshots/``.
"""

from __future__ import annotations

import pytest

from tui.widgets.form import widget_id

STEPS = ("model", "data", "trainer", "hyperparameters", "launch")


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def steady_cursors(app) -> None:
    """A visible, non-blinking text cursor: the picture must not depend on when it is taken."""
    from textual.widgets import Input, TextArea

    for screen in app.screen_stack:
        for w in screen.query(Input):
            w.cursor_blink = False
        for w in screen.query(TextArea):
            w.cursor_blink = False


def show(step: str, then=None):
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.goto(step)
        await settle(pilot)
        if then is not None:
            await then(pilot)
            await settle(pilot)
        steady_cursors(pilot.app)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("step", STEPS)
def test_step(snap_compare, make_app, step, size):
    assert snap_compare(make_app(autosave=False), terminal_size=size, run_before=show(step))


def test_invalid_learning_rate(snap_compare, make_app):
    async def typed(pilot):
        inp = pilot.app.query_one(f"#{widget_id('general.learning_rate')}")
        inp.focus()
        inp.value = "1.5"

    assert snap_compare(make_app(autosave=False), terminal_size=(80, 24), run_before=show("hyperparameters", typed))


def test_data_report(snap_compare, make_app):
    async def check(pilot):
        await pilot.click("#data-check")
        await pilot.app.workers.wait_for_complete()
        pilot.app.panes["data"].query_one(".step-body").scroll_end(animate=False)

    assert snap_compare(make_app(autosave=False), terminal_size=(80, 24), run_before=show("data", check))


def test_help_dialog(snap_compare, make_app):
    async def help_(pilot):
        pilot.app.query_one(f"#{widget_id('general.batch_size')}").focus()
        await pilot.press("f1")

    assert snap_compare(make_app(autosave=False), terminal_size=(80, 24), run_before=show("hyperparameters", help_))


def test_light_theme_toml(snap_compare, make_app):
    async def toml(pilot):
        pilot.app.action_show_toml()

    assert snap_compare(make_app(autosave=False, theme="textual-light"), terminal_size=(80, 24),
                        run_before=show("hyperparameters", toml))


def test_save_export_dialog(snap_compare, make_app):
    async def save(pilot):
        pilot.app.action_export()

    from engine import presets

    # a relative preset path: the picture must not depend on where the checkout lives
    job = presets.load(presets.PRESETS_DIR / "demo.toml")
    assert snap_compare(make_app(demo=False, job=job, preset_path="demo.toml", autosave=False),
                        terminal_size=(80, 24), run_before=show("model", save))

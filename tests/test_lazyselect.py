"""LazySelect (tui/widgets/lazyselect.py): the drop-down list is built on first open, and the select
behaves as Textual's before and after."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Select
from textual.widgets._select import SelectCurrent, SelectOverlay

from tui.widgets.lazyselect import LazySelect, _LazySelect

OPTIONS = [("alpha", "a"), ("beta", "b"), ("gamma", "c")]


class Demo(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list = []

    def compose(self):
        yield LazySelect(OPTIONS, value="b", allow_blank=False, id="sel")

    def on_select_changed(self, event: Select.Changed) -> None:
        self.changes.append(event.value)


async def test_closed_it_has_no_overlay_and_values_work_without_it():
    assert LazySelect is _LazySelect  # the installed Textual has what it needs
    app = Demo()
    async with app.run_test() as pilot:
        sel = app.query_one("#sel", Select)
        await pilot.pause()
        assert not sel.query(SelectOverlay)  # not built
        assert str(sel.query_one(SelectCurrent).label) == "beta"
        sel.value = "c"
        await pilot.pause()
        assert str(sel.query_one(SelectCurrent).label) == "gamma" and app.changes[-1] == "c"
        sel.set_options([("one", 1), ("two", 2)])
        await pilot.pause()
        assert sel.value == 1 and str(sel.query_one(SelectCurrent).label) == "one"
        assert not sel.query(SelectOverlay)


async def test_keyboard_opens_it_at_the_current_value_and_picks():
    app = Demo()
    async with app.run_test() as pilot:
        sel = app.query_one("#sel", Select)
        sel.focus()
        await pilot.press("enter")
        await pilot.pause()
        overlay = sel.query_one(SelectOverlay)
        assert sel.expanded and overlay.display and overlay.has_focus
        assert overlay.highlighted == 1  # beta, the current value
        await pilot.press("down", "enter")
        await pilot.pause()
        assert sel.value == "c" and not sel.expanded and app.changes[-1] == "c"
        # opened again: Textual's own path now
        await pilot.press("enter")
        await pilot.pause()
        assert sel.expanded and sel.query_one(SelectOverlay).highlighted == 2
        await pilot.press("escape")
        await pilot.pause()
        assert not sel.expanded and sel.value == "c"


async def test_a_click_opens_it_and_a_click_picks():
    app = Demo()
    async with app.run_test() as pilot:
        await pilot.click("#sel")
        await pilot.pause()
        sel = app.query_one("#sel", Select)
        assert sel.expanded
        overlay = sel.query_one(SelectOverlay)
        await pilot.click(SelectOverlay, offset=(2, overlay.region.height - 2))  # the last option
        await pilot.pause()
        assert sel.value == "c" and not sel.expanded


async def test_a_form_field_picked_from_its_list_reaches_the_job(make_app):
    from tui.widgets.form import widget_id

    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.goto("hyperparameters")
        await pilot.pause(0.5)
        app.query_one("#hp-form").expand("runtime")
        await pilot.pause(0.3)
        sel = app.query_one(f"#{widget_id('runtime.lr_scheduler')}", Select)
        before = sel.value
        sel.focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert sel.expanded
        await pilot.press("down", "enter")
        await pilot.pause()
        assert sel.value != before
        assert app.job.values["runtime.lr_scheduler"] == sel.value


async def test_the_current_value_line_is_one_widget_drawing_value_and_arrow():
    app = Demo()
    async with app.run_test(size=(30, 12)) as pilot:
        sel = app.query_one("#sel", Select)
        cur = sel.query_one(SelectCurrent)
        assert not cur.children and cur.content_region.height == 1  # inside its border
        line = str(cur.render())
        assert line.startswith("beta") and line.endswith("▼")
        sel.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert sel.expanded and str(cur.render()).endswith("▲")
        await pilot.press("escape")
        await pilot.pause()
        assert not sel.expanded and str(cur.render()).endswith("▼")
        sel.set_options([("a very long option label that cannot fit", 1)])
        await pilot.pause()
        line = str(cur.render())
        assert "…" in line and line.endswith("▼") and len(line) == cur.content_region.width

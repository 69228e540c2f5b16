"""CatalogList (tui/widgets/catalog.py): the model step's one-line-per-item pick list."""

from __future__ import annotations

from textual.app import App

from tui.widgets.catalog import CatalogList

ITEMS = [(f"org/model-{i}", f"org/model-{i}" + ("-with-a-very-long-name" if i == 3 else "")) for i in range(20)]


class Demo(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.picked: list[str] = []

    def compose(self):
        yield CatalogList(id="cat")

    def on_mount(self) -> None:
        cat = self.query_one(CatalogList)
        cat.styles.height = 6
        cat.set_items(ITEMS)

    def on_catalog_list_picked(self, event: CatalogList.Picked) -> None:
        self.picked.append(event.item_id)


def lines(cat: CatalogList) -> list[str]:
    return [cat.render_line(y).text for y in range(cat.scrollable_content_region.height)]


async def test_keys_move_the_highlight_scroll_it_into_view_and_pick():
    app = Demo()
    async with app.run_test(size=(30, 10)) as pilot:
        cat = app.query_one(CatalogList)
        cat.focus()
        await pilot.pause()
        assert cat.highlighted is None and lines(cat)[0].startswith("org/model-0")
        await pilot.press("down", "down")
        assert cat.highlighted == 1
        await pilot.press("enter")
        await pilot.pause()
        assert app.picked == ["org/model-1"]
        await pilot.press("end")
        await pilot.pause()
        assert cat.highlighted == 19 and cat.scroll_offset.y == 14  # the last item is on screen
        assert lines(cat)[-1].startswith("org/model-19")
        await pilot.press("home", "pagedown")
        assert cat.highlighted == 5
        await pilot.press("up")
        assert cat.highlighted == 4


async def test_a_click_picks_the_item_under_the_pointer_and_long_names_are_cut():
    app = Demo()
    async with app.run_test(size=(30, 10)) as pilot:
        cat = app.query_one(CatalogList)
        await pilot.pause()
        line = lines(cat)[3]
        assert line.rstrip().endswith("…") and len(line) == cat.scrollable_content_region.width
        await pilot.click("#cat", offset=(3, 2))
        await pilot.pause()
        assert cat.highlighted == 2 and app.picked == ["org/model-2"]
        cat.highlight(12)  # set in code (the job's current model): scrolled into view
        await pilot.pause()
        assert cat.scroll_offset.y <= 12 < cat.scroll_offset.y + cat.scrollable_content_region.height
        cat.set_items(ITEMS[:5])  # a shorter list keeps a valid highlight only
        assert cat.highlighted is None and cat.item_ids == [i for i, _ in ITEMS[:5]]

"""The parsed-CSS cache between sessions (tui/csscache.py): what it loads is what Textual would parse,
and nothing about it can break a start."""

from __future__ import annotations

import pickle

from textual.css.stylesheet import Stylesheet

from tui import csscache

SIZE = (100, 40)


def _rules_css(rules) -> list[tuple]:
    return [(r.selectors, r.selector_names, sorted((k, repr(v)) for k, v in r.styles.get_rules().items()), r.is_default_rules, r.tie_breaker,
             r.pseudo_classes) for r in rules]


async def test_a_session_saves_its_parsed_css_and_the_next_start_uses_it(make_app, tui_state):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app._save_css()
        first = app.export_screenshot()
    path = csscache.cache_path(app.stylesheet)
    assert path.parent == tui_state / "cache" and path.exists()
    saved = pickle.loads(path.read_bytes())
    # app.tcss and the default CSS of every widget class the first screen shows
    names = {key[1][1] for key in saved}
    assert {"", "Select.DEFAULT_CSS", "Input.DEFAULT_CSS", "Button.DEFAULT_CSS"} <= names

    # each cached entry is exactly what Textual parses from the same text
    fresh = Stylesheet(variables=app.stylesheet._variables)
    for (css, read_from, is_default, tie_breaker, scope), rules in saved.items():
        assert _rules_css(rules) == _rules_css(fresh._parse_rules(css, read_from, is_default, tie_breaker, scope))

    # the next app starts with them: nothing to parse, and the same screen
    app2 = make_app()
    assert app2._css_loaded == set(saved)
    parsed = []
    orig = Stylesheet._parse_rules

    def spy(self, css, read_from, is_default_rules=False, tie_breaker=0, scope=""):
        if (css, read_from, is_default_rules, tie_breaker, scope) not in self._parse_cache.keys():
            parsed.append(read_from)
        return orig(self, css, read_from, is_default_rules, tie_breaker, scope)

    Stylesheet._parse_rules = spy
    try:
        async with app2.run_test(size=SIZE) as pilot:
            await pilot.pause()
            again = app2.export_screenshot()
    finally:
        Stylesheet._parse_rules = orig
    assert parsed == []
    assert again == first


async def test_nothing_new_writes_nothing_and_stale_entries_are_dropped(make_app, tui_state):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        ss = app.stylesheet
        written = csscache.save(ss)
        assert written
        assert csscache.save(ss, written) is None  # unchanged: no write
        # an entry for CSS that is no longer a source (an upgrade changed the text) is not kept
        ss._parse_cache[("Old { color: red; }", ("old.py", "Old.DEFAULT_CSS"), True, 0, "")] = []
        assert csscache.save(ss, set()) == written


async def test_css_of_a_screen_not_opened_this_time_is_kept_until_its_text_changes(make_app, tui_state):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        ss = app.stylesheet
        # loaded from the last save: a widget this session did not show (the runs screen's table),
        # and an older text of a file this session uses (an upgrade changed it)
        other = ("DataTable { height: 1fr; }", ("_data_table.py", "DataTable.DEFAULT_CSS"), True, 0, "")
        location = next(loc for loc in ss.source if loc[1] == "")
        old = ("Screen { color: red; }", location, False, 0, "")
        ss._parse_cache[other] = ss._parse_cache[old] = []
        written = csscache.save(ss, {other, old})
        assert other in written and old not in written
        assert {k[1] for k in written} >= set(ss.source)  # and everything this session parsed


def test_a_broken_or_foreign_cache_file_is_ignored(tui_state):
    ss = Stylesheet()
    path = csscache.cache_path(ss)
    path.parent.mkdir(parents=True)
    for content in (b"not a pickle", pickle.dumps(["a", "list"]), b""):
        path.write_bytes(content)
        assert csscache.load(ss) == set()
    path.unlink()
    assert csscache.load(ss) == set()  # absent


def test_the_file_name_follows_the_theme_variables(tui_state):
    a = Stylesheet(variables={"primary": "#004578"})
    b = Stylesheet(variables={"primary": "#ff0000"})
    assert csscache.cache_path(a) != csscache.cache_path(b)
    assert csscache.cache_path(a) == csscache.cache_path(Stylesheet(variables={"primary": "#004578"}))

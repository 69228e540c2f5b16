"""Step 4 — Hyperparameters: the schema's groups as Collapsibles, the raw TOML, the diff.

The TOML view stays in sync both ways: form edits rewrite it (unless it has the focus);
editing it re-parses on every change — valid TOML replaces the job and the form follows,
bad TOML shows one message and leaves the form untouched.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Button, ContentSwitcher, Static, TextArea

from engine.schema import FIELD_BY_NAME, JobConfig, _fmt, spec
from engine.errors import FinetuiError
from tui.screens.model import ProfileSelect
from tui.widgets.form import SchemaForm
from tui.widgets.step import StepPane, TomlEdited  # noqa: F401 - TomlEdited re-exported

GROUPS = ("general", "runtime", "preference", "adapter", "eval", "tracking")
VIEWS = ("form", "toml", "diff")


def diff_rows(job: JobConfig) -> list[tuple[str, Any, Any]]:
    """(field, profile default, value) for every explicit value that differs from the profile's default."""
    out = []
    res = job.resolved()
    for name in FIELD_BY_NAME:
        if name in job.values:
            d = spec(name, job.profile).default
            if res[name] != d:
                out.append((name, d, res[name]))
    return out


def diff_table(job: JobConfig, title: str | None = None) -> Table | Text:
    rows = diff_rows(job)
    if not rows:
        return Text(f"Every value is the {job.profile} profile's default.", "dim")
    t = Table(expand=True, show_edge=False, header_style="bold", title=title, title_justify="left")
    t.add_column("field", no_wrap=True, ratio=2)
    t.add_column(f"{job.profile} default", ratio=1, style="dim")
    t.add_column("value", ratio=1, style="bold")
    for name, d, v in rows:
        t.add_row(name, "unset" if d is None else _fmt(d), "unset" if v is None else _fmt(v))
    return t


class HyperparametersPane(StepPane):
    STEP = "hyperparameters"
    TITLE = "Hyperparameters"
    SUBTITLE = "checked as you type against the profile"

    def __init__(self) -> None:
        super().__init__()
        self.view = "form"
        self._toml_text = ""

    def compose(self) -> ComposeResult:
        yield self.header()
        with Horizontal(classes="hp-toolbar"):
            yield ProfileSelect(id="hp-profile")
            yield Button("Form", id="view-form", compact=True, classes="-textual-compact view-btn -active")
            yield Button("TOML", id="view-toml", compact=True, classes="-textual-compact view-btn")
            yield Button("Diff", id="view-diff", compact=True, classes="-textual-compact view-btn")
        with ContentSwitcher(initial="hp-form-view", id="hp-switcher"):
            with VerticalScroll(id="hp-form-view", classes="step-body"):
                yield SchemaForm(groups=GROUPS, grouped=True, id="hp-form",
                                 collapsed=("runtime", "preference", "eval", "tracking"))
            # the TOML and diff views are built on their first use (step switch time)
        yield self.nav()

    def on_mount(self) -> None:
        if self.view != "form":
            self.set_view(self.view)

    def _view_widget(self, view: str) -> Widget:
        """The view's container, built and mounted (hidden) the first time it is asked for."""
        switcher = self.query_one("#hp-switcher", ContentSwitcher)
        try:
            return switcher.get_child_by_id(f"hp-{view}-view")
        except NoMatches:
            pass
        if view == "toml":
            err = Static("", id="toml-error", classes="problem-text", markup=False)
            err.display = False
            w: Widget = Vertical(id="hp-toml-view")
            children: list[Widget] = [TextArea("", id="toml-editor", show_line_numbers=True, soft_wrap=False,
                                               tab_behavior="indent"), err]
        else:
            w = VerticalScroll(id="hp-diff-view", classes="step-body")
            children = [Static("", id="diff")]
        w.display = False
        switcher.mount(w)
        w.mount(*children)  # in the DOM now: the caller queries them right away
        return w

    def set_view(self, view: str) -> None:
        self.view = view
        if not self.children:
            return  # applied on mount
        self._view_widget(view)
        self.query_one("#hp-switcher", ContentSwitcher).current = f"hp-{view}-view"
        for v in VIEWS:
            self.query_one(f"#view-{v}", Button).set_class(v == view, "-active")
        self.app.refresh_views()  # type: ignore[attr-defined]
        if view == "toml":
            self.query_one("#toml-editor").focus()

    def focus_first(self) -> None:
        if self.view == "toml":
            self.query_one("#toml-editor").focus(scroll_visible=False)
        elif self.view == "form":
            super().focus_first()

    @on(Button.Pressed, ".view-btn")
    def _view(self, event: Button.Pressed) -> None:
        event.stop()
        self.set_view((event.button.id or "view-form").removeprefix("view-"))

    def sync(self, job: JobConfig, res: dict[str, Any], states: dict) -> None:
        self.query_one("#hp-profile", ProfileSelect).sync(job.profile)
        self._view_widget(self.view)
        if self.view == "form":
            self.query_one("#hp-form", SchemaForm).sync(job, states)
        elif self.view == "toml":
            ed = self.query_one("#toml-editor", TextArea)
            if not ed.has_focus or not self._toml_text:
                self.load_toml(job)
        else:
            self.query_one("#diff", Static).update(diff_table(job))

    def load_toml(self, job: JobConfig) -> None:
        from engine import presets

        text = presets.dumps(job)
        ed = self.query_one("#toml-editor", TextArea)
        if ed.text != text:
            self._toml_text = text
            with ed.prevent(TextArea.Changed):
                ed.load_text(text)
        self.query_one("#toml-error").display = False

    @on(TextArea.Changed, "#toml-editor")
    def _toml_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        from engine import presets

        text = event.text_area.text
        if text == self._toml_text:
            return
        self._toml_text = text
        err = self.query_one("#toml-error", Static)
        try:
            new = presets.loads(text, "TOML")
        except FinetuiError as e:
            err.update("✗ " + e.lines()[0] + "  — the form keeps the last valid TOML")
            err.display = True
            return
        err.display = False
        self.post_message(TomlEdited(new))

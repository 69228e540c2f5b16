"""Wizard chrome: the step bar, the help bar, and the base class of the step panes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import Click
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Static

from engine.schema import FIELD_BY_NAME, GROUP_FIELDS, JobConfig
from tui.widgets.spanbar import SpanBar

if TYPE_CHECKING:
    from tui.widgets.form import FieldState

#: (step id, title, schema groups it owns)
STEPS: list[tuple[str, str, tuple[str, ...]]] = [
    ("model", "Model", ("model",)),
    ("data", "Data", ("data",)),
    ("trainer", "Trainer", ("trainer",)),
    ("hyperparameters", "Hyperparameters", ("general", "runtime", "preference", "adapter", "eval", "tracking")),
    ("launch", "Launch", ("launch",)),
]
STEP_IDS = [s[0] for s in STEPS]
STEP_OF_GROUP = {g: s for s, _, gs in STEPS for g in gs}


def step_of_field(name: str) -> str:
    return STEP_OF_GROUP.get(name.split(".")[0], "hyperparameters")


def step_errors(states: dict[str, "FieldState"]) -> dict[str, int]:
    out = {s: 0 for s in STEP_IDS}
    for name, st in states.items():
        if st.problem is not None and st.problem.severity == "error" and (st.visible or st.explicit):
            out[step_of_field(name)] += 1
    return out


class TomlEdited(Message):
    """The TOML editor (Hyperparameters step) parsed to a new job."""

    def __init__(self, job: JobConfig) -> None:
        super().__init__()
        self.job = job


class StepBar(SpanBar):
    """One line: the app name, the five steps (each clickable, with its error count) and the status.

    Drawn as one widget (it was 12: a label per step, separator and status), so the first frame
    has fewer widgets to build and a step change repaints one line.  The look comes from
    ``app.tcss`` through component classes; on a narrow screen the name and the status are left
    out, as before.
    """

    COMPONENT_CLASSES = {"stepbar--brand", "stepbar--sep", "stepbar--tab", "stepbar--tab-hover",
                         "stepbar--tab-current", "stepbar--tab-invalid", "stepbar--tab-current-invalid",
                         "stepbar--status"}

    class Chosen(Message):
        def __init__(self, step: str) -> None:
            super().__init__()
            self.step = step

    def __init__(self) -> None:
        super().__init__(id="stepbar")
        self.current = STEP_IDS[0]
        self.errors: dict[str, int] = {s: 0 for s in STEP_IDS}
        self.status = ""

    def update_steps(self, current: str, errors: dict[str, int]) -> None:
        errors = {s: errors.get(s, 0) for s in STEP_IDS}
        if (current, errors) != (self.current, self.errors):
            self.current = current
            self.errors = errors
            self.refresh()

    def set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            self.refresh()

    def render(self) -> Text:
        def style(name: str) -> Any:  # the component's colours resolved against the bar's background
            return self.get_visual_style(name).rich_style

        narrow = self.screen.has_class("-narrow") if self.is_attached else False
        t = Text(no_wrap=True, overflow="ellipsis")
        if not narrow:
            t.append(" finetui ", style("stepbar--brand"))
            t.append(" ")
        spans: list[tuple[int, int, str]] = []
        for i, (sid, _title, _) in enumerate(STEPS):
            if i:
                t.append("›", style("stepbar--sep"))
            current, invalid = sid == self.current, self.errors.get(sid, 0) > 0
            cls = "stepbar--tab" + ("-current" if current else "") + ("-invalid" if invalid else "")
            if cls == "stepbar--tab" and sid == self._hover:
                cls = "stepbar--tab-hover"
            label = Text(f" {i + 1} {STEPS[i][1]}", style(cls))
            n = self.errors.get(sid, 0)
            if n:
                label.append(f" ✗{n}", "bold")
            label.append(" ")
            start = t.cell_len
            t.append_text(label)
            spans.append((start, t.cell_len, sid))
        if not narrow and self.status:
            status = self.status + " "
            pad = self.size.width - t.cell_len - len(status)
            if pad > 0:
                t.append(" " * pad)
                t.append(status, style("stepbar--status"))
        self._spans = spans
        return t

    def on_click(self, event: Click) -> None:
        sid = self.item_at(event.x)
        if sid is not None:
            event.stop()
            self.post_message(StepBar.Chosen(sid))


class HelpBar(Static):
    """One line above the footer: the focused field's help, or the app's status."""

    def __init__(self) -> None:
        super().__init__("", id="helpbar", markup=False)

    def show_text(self, title: str, text: str) -> None:
        """What a focused button or group title does (the bottom help line follows the focus)."""
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(title, "bold")
        t.append("  " + text)
        self.update(t)

    def show_field(self, name: str) -> None:
        f = FIELD_BY_NAME.get(name)
        if f is None:
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f.label, "bold")
        help = "  " + f.help.replace("\n", " ")
        room = (self.size.width or 80) - 2 - len(f.label)
        more = " … F1 for more"
        if len(help) > room > len(more) + 10:  # cut at a word, and said: the whole help is one key away
            help = help[: room - len(more)].rsplit(" ", 1)[0] + more
        t.append(help)
        self.update(t)


class StepPane(Vertical):
    """Base of the five step panes (one module each in ``tui/screens``)."""

    STEP = ""
    TITLE = ""
    SUBTITLE = ""

    def __init__(self) -> None:
        super().__init__(id=f"step-{self.STEP}", classes="step-pane")
        self.ready = False

    def on_mount(self) -> None:
        # panes are mounted on first visit; the subclass's on_mount has run by now
        self.ready = True
        if getattr(self.app, "step", None) == self.STEP:
            switcher = getattr(self.app, "switcher", None)
            if switcher is not None and self.parent is switcher and switcher.is_mounted \
                    and switcher.current != self.id:
                switcher.current = self.id
            self.app.refresh_views()  # type: ignore[attr-defined]
            self.call_after_refresh(self.focus_first)

    def header(self) -> Widget:
        t = Text()
        t.append(self.TITLE, "bold")
        if self.SUBTITLE:
            t.append("  " + self.SUBTITLE, "dim")
        return Static(t, classes="step-title")

    def nav(self, next_label: str | None = "Next ›", extra: list[Widget] | None = None) -> Horizontal:
        idx = STEP_IDS.index(self.STEP)
        children: list[Widget] = []
        if idx > 0:
            children.append(Button("‹ Back", id=f"back-{self.STEP}", classes="-textual-compact nav-back", compact=True))
        children.extend(extra or [])
        if next_label and idx < len(STEP_IDS) - 1:
            children.append(Button(next_label, id=f"next-{self.STEP}", classes="-textual-compact nav-next", variant="primary",
                                   compact=True))
        return Horizontal(*children, classes="nav-bar")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        if bid.startswith("back-"):
            event.stop()
            self.app.action_prev_step()  # type: ignore[attr-defined]
        elif bid.startswith("next-"):
            event.stop()
            self.app.action_next_step()  # type: ignore[attr-defined]

    FIRST: str | None = None  # DOM id of the widget focused on entry

    def focus_first(self) -> None:
        from tui.widgets.form import FieldRow, widget_id

        try:
            if self.FIRST:
                self.query_one(f"#{self.FIRST}").focus(scroll_visible=False)
                return
            rows = [r for r in self.query(FieldRow) if r.display]
            if rows:
                rows[0].input_widget.focus(scroll_visible=False)
        except Exception:
            pass

    def sync(self, job: JobConfig, res: dict[str, Any], states: dict[str, "FieldState"]) -> None:
        """Re-read the job; called when the job changed while this pane is shown, and on entry."""


def group_names(*groups: str) -> list[str]:
    return [f.name for g in groups for f in GROUP_FIELDS.get(g, [])]

"""The schema-driven form: one :class:`FieldRow` per schema field, a widget by kind.

``FieldRow`` never touches the job itself: edits are posted as :class:`FieldEdited`
and the app applies them, then calls :meth:`SchemaForm.sync` on the visible forms,
which re-reads the job (values, the profile's ranges and choices, visibility rules
and problems) and updates every row.  A value is checked as typed: an out-of-range
number is stored as typed (so the launch stays disabled) and its one-line message is
shown under the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Select, Static, Switch

from engine.schema import (FIELD_BY_NAME, GROUP_FIELDS, GROUP_TITLES, JobConfig, Problem, _fmt,
                           cross_field_problems, spec)
from tui.widgets.lazyselect import LazySelect

if TYPE_CHECKING:
    from textual.widgets import Collapsible


def widget_id(name: str) -> str:
    """DOM id of a field's input widget: ``general.learning_rate`` → ``f-general-learning_rate``."""
    return "f-" + name.replace(".", "-")


def row_id(name: str) -> str:
    return "row-" + name.replace(".", "-")


def format_value(name: str, value: Any) -> str:
    """A value as the Input shows it."""
    return FIELD_BY_NAME[name].kind.format(value)


def hint_for(name: str, profile: str) -> str:
    """The short allowed-range hint shown right of an input."""
    sp = spec(name, profile)
    return sp.field.kind.hint(sp.field, sp.range)


def parse_input(name: str, text: str) -> Any:
    """Typed text → the value stored in the job (as typed when it does not parse)."""
    f = FIELD_BY_NAME[name]
    return f.kind.parse_input(f, text)


@dataclass
class FieldState:
    """What the form shows for one field, computed once per sync."""

    value: Any
    visible: bool
    explicit: bool
    changed: bool  # differs from the profile's default
    problem: Problem | None


class FieldEdited(Message):
    """A field widget was edited by the user (bubbles to the app)."""

    def __init__(self, name: str, value: Any) -> None:
        super().__init__()
        self.name = name
        self.value = value


class FieldFocused(Message):
    """A field widget got the focus (its help goes to the help bar)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def compute_states(job: JobConfig) -> tuple[dict[str, Any], dict[str, FieldState]]:
    """Resolved values and each field's visibility, change mark and first problem."""
    res = job.resolved()
    probs = job.problems(include_warnings=True)
    if any(p.severity == "error" for p in probs):
        # problems() skips the cross-field rules while a value is invalid; show them anyway
        try:
            probs = probs + cross_field_problems(job, res)
        except Exception:
            pass
    first: dict[str, Problem] = {}
    for p in probs:
        cur = first.get(p.field)
        if cur is None or (cur.severity == "warning" and p.severity == "error"):
            first[p.field] = p
    states = {}
    md = job.model_defaults(res)  # the profile's defaults for this base model, where it has some
    for name, f in FIELD_BY_NAME.items():
        default = md[name] if name in md else spec(name, job.profile).default
        states[name] = FieldState(
            value=res[name],
            visible=f.is_visible(res) or name in job.values and first.get(name) is not None,
            explicit=name in job.values,
            changed=name in job.values and res[name] != default,
            problem=first.get(name),
        )
    return res, states


def problem_text(p: Problem) -> str:
    icon = "✗" if p.severity == "error" else "⚠"
    s = f"{icon} {p.message}"
    if p.allowed:
        s += f" — allowed: {p.allowed}"
    return s


_UNSYNCED = object()


class FieldRow(Widget):
    """One field: its label, input widget and range hint on one line, its problem on the next.

    The input widget (and the problem line, mounted the first time there is one) are the row's
    only children: the label and the hint are drawn by the row itself, left and right of the
    input, in the margins the stylesheet gives it (``FieldRow > .field-input``).  Two widgets fewer
    per field: the hyperparameters step has dozens of fields, and each widget costs styling,
    layout and messages when a step is built (start-up and first visits)."""

    DEFAULT_CLASSES = "field-row"
    COMPONENT_CLASSES = {"field-row--label", "field-row--hint"}

    def __init__(self, name: str, profile: str = "native") -> None:
        super().__init__(id=row_id(name))
        self.field_name = name
        self.field = FIELD_BY_NAME[name]
        self._profile = profile
        self._options: tuple[Any, ...] | None = None
        self._shown: Any = _UNSYNCED  # what the last sync put in the widget
        self._label_text = self.field.label
        self._hint_text = hint_for(name, profile) if self.field.kind.widget != "switch" else "off"
        self._problem_text = ""
        self._input: Widget | None = None
        self._generation = 0

    # -- building ---------------------------------------------------------
    def _make_widget(self) -> Widget:
        f = self.field
        wid = widget_id(f.name)
        sp = spec(f.name, self._profile)
        if f.kind.widget == "switch":
            return Switch(value=bool(sp.default), id=wid, classes="field-input")
        if f.kind.widget == "select":
            self._options = tuple(sp.choices or ())
            return LazySelect([(_fmt(c), c) for c in self._options], value=sp.default, allow_blank=False,
                          id=wid, compact=True, classes="-textual-compact field-input")
        placeholder = "unset" if sp.default is None else format_value(f.name, sp.default)
        # "-valid": the class Input sets on its first validation (no validators: always valid); given
        # here, that first validation changes no class and restyles nothing
        # the text is selected on focus: typing replaces the value, as in the dialogs (an arrow key keeps it)
        return Input(value=format_value(f.name, sp.default), placeholder=placeholder, id=wid, compact=True,
                     classes="-textual-compact field-input -valid", password=f.secret, select_on_focus=True)

    def compose(self) -> ComposeResult:
        self._input = self._make_widget()
        yield self._input

    # -- the label and the hint -------------------------------------------
    @property
    def label_text(self) -> str:
        """The label as shown (``● `` first when the value differs from the profile's default)."""
        return self._label_text

    @property
    def hint_text(self) -> str:
        """The allowed-range hint shown right of the input."""
        return self._hint_text

    def _columns(self) -> tuple[int, int]:
        """Widths of the label and hint columns: the input's left and right margins."""
        if self._input is None:
            return 26, 16
        m = self._input.styles.margin
        return m.left, m.right

    def _hint_lines(self, width: int) -> list[str]:
        """The hint wrapped to its column (one cell of it is the gap after the input)."""
        words, lines, cur = self._hint_text.split(), [], ""
        for w in words:
            if cur and len(cur) + 1 + len(w) > width:
                lines.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}" if cur else w
        if cur:
            lines.append(cur)
        return lines

    def render(self) -> Content:
        lw, hw = self._columns()
        width = self.size.width
        label = self._label_text
        if len(label) > lw - 1:
            label = label[: max(0, lw - 2)] + "…"
        hints = self._hint_lines(max(1, hw - 1))
        label_style = self.get_visual_style("field-row--label")
        hint_style = self.get_visual_style("field-row--hint")
        gap = max(0, width - lw - hw)
        parts: list[Content] = []
        for i in range(max(1, len(hints))):
            left = Content.styled(label.ljust(lw), label_style) if i == 0 else Content(" " * lw)
            hint = hints[i] if i < len(hints) else ""
            right = Content.styled((" " + hint).ljust(hw), hint_style) if hw > 0 else Content("")
            parts.append(Content.assemble(left, " " * gap, right))
        return Content("\n").join(parts)

    _hint_line_count = 1

    def _hint_changed(self) -> None:
        lines = max(1, len(self._hint_lines(max(1, self._columns()[1] - 1))))
        if lines == self._hint_line_count:
            return
        self._hint_line_count = lines
        # a hint wrapped over two lines keeps them both clear of the problem line
        self.styles.min_height = lines if lines > 1 else None
        try:
            self.query_one(".field-problem").styles.margin = (lines - 1, 0, 0, 0)
        except NoMatches:
            pass

    def on_resize(self) -> None:
        self._hint_changed()

    def on_click(self, event: Any) -> None:
        # a click on the label or the hint focuses the field's input
        if event.widget is self and self._input is not None and self._input.focusable:
            self._input.focus()

    @property
    def input_widget(self) -> Widget:
        return self.query_one(f"#{widget_id(self.field_name)}")

    # -- events -----------------------------------------------------------
    def _user_edit(self, widget: Any, value: Any) -> bool:
        """True for an edit by the user: not stale (the widget still shows it), not our own sync."""
        if self._shown is _UNSYNCED or value != widget.value or value == self._shown:
            return False
        self._shown = value
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._user_edit(event.input, event.value):
            self.post_message(FieldEdited(self.field_name, parse_input(self.field_name, event.value)))

    def _show_on_off(self, on: bool) -> None:
        """A switch says its state in words, right of it (colour alone is not enough)."""
        text = "on" if on else "off"
        if self._hint_text != text:
            self._hint_text = text
            self.refresh()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._show_on_off(event.value)
        if self._user_edit(event.switch, event.value):
            self.post_message(FieldEdited(self.field_name, event.value))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.BLANK and self._user_edit(event.select, event.value):
            self.post_message(FieldEdited(self.field_name, event.value))

    def on_descendant_focus(self, event: Any) -> None:
        self.post_message(FieldFocused(self.field_name))

    _pending: tuple[str, FieldState] | None = None

    def on_mount(self) -> None:
        self._apply_pending()

    def _apply_pending(self) -> None:
        if self._pending is not None and self.is_attached:
            pending, self._pending = self._pending, None
            self.sync(*pending)

    # -- sync from the job ------------------------------------------------
    def sync(self, profile: str, st: FieldState) -> None:
        if self.display != st.visible:
            self.display = st.visible
        if not st.visible:
            return
        try:
            w = self.input_widget
        except NoMatches:
            w = None
        if w is None or not w.is_mounted:
            self._pending = (profile, st)  # mounted but not composed yet: applied once it is
            self.call_after_refresh(self._apply_pending)
            return
        label_text = ("● " if st.changed else "") + self.field.label
        if label_text != self._label_text:
            self._label_text = label_text
            self.refresh()
        self.set_class(st.changed, "-changed")
        if profile != self._profile:
            self._profile = profile
            hint = hint_for(self.field_name, profile)
            if hint != self._hint_text:
                self._hint_text = hint
                self._hint_changed()
                self.refresh()
        sp = spec(self.field_name, profile)
        if isinstance(w, Input):
            w.placeholder = "unset" if sp.default is None else format_value(self.field_name, sp.default)
            # the focused field keeps what is being typed, unless the whole job was replaced since the last
            # sync (an open, an import, the TOML view: FinetuiApp.set_job counts them)
            generation = getattr(self.app, "job_generation", 0)
            replaced, self._generation = generation != self._generation, generation
            if not w.has_focus or self._shown is _UNSYNCED or replaced:
                text = format_value(self.field_name, st.value)
                if w.value != text:
                    with w.prevent(Input.Changed):
                        w.value = text
                self._shown = text
        elif isinstance(w, Switch):
            v = bool(st.value) if isinstance(st.value, bool) else False
            if w.value != v:
                with w.prevent(Switch.Changed):
                    w.value = v
            self._shown = v
            self._show_on_off(v)
        elif isinstance(w, Select):
            opts = tuple(sp.choices or ())
            cur = st.value
            if cur not in opts:
                opts = opts + (cur,)
            if opts != self._options:
                self._options = opts
                labels = [(_fmt(c) if c in (sp.choices or ()) else f"{_fmt(c)} (not offered)", c) for c in opts]
                with w.prevent(Select.Changed):
                    w.set_options(labels)
            if w.value != cur:
                with w.prevent(Select.Changed):
                    w.value = cur
            self._shown = cur
        p = st.problem
        self.set_class(p is not None and p.severity == "error", "-invalid")
        self.set_class(p is not None and p.severity == "warning", "-warning")
        w.set_class(p is not None and p.severity == "error", "-bad")
        text = problem_text(p) if p else ""
        if text != self._problem_text:
            self._problem_text = text
            try:
                prob = self.query_one(".field-problem", Static)
            except NoMatches:
                prob = Static(text, classes="field-problem", markup=False)
                prob.styles.margin = (self._hint_line_count - 1, 0, 0, 0)  # below a two-line hint
                self.mount(prob)
            else:
                prob.update(text)
                prob.display = p is not None


class SchemaForm(Vertical):
    """Rows for the given fields; with ``grouped`` each schema group is a Collapsible."""

    DEFAULT_CLASSES = "schema-form"

    def __init__(self, names: Iterable[str] | None = None, groups: Iterable[str] | None = None,
                 grouped: bool = False, profile: str = "native", collapsed: Iterable[str] = (),
                 id: str | None = None) -> None:
        super().__init__(id=id)
        if groups is not None:
            self.groups = list(groups)
            self.names = [f.name for g in self.groups for f in GROUP_FIELDS.get(g, [])]
        else:
            self.names = list(names or [])
            self.groups = list(dict.fromkeys(n.split(".")[0] for n in self.names))
        self.grouped = grouped
        self.profile = profile
        self.collapsed = set(collapsed)
        self._populated: set[str] = set()

    def compose(self) -> ComposeResult:
        if not self.grouped:
            for n in self.names:
                yield FieldRow(n, self.profile)
            return
        from textual.widgets import Collapsible  # grouped forms only (none on the first screen)

        for g in self.groups:
            names = [n for n in self.names if n.split(".")[0] == g]
            with Collapsible(title=GROUP_TITLES.get(g, g), collapsed=g in self.collapsed, id=f"group-{g}",
                             classes="field-group"):
                # rows of a collapsed group are mounted when it is first expanded (fast start)
                if g not in self.collapsed:
                    for n in names:
                        yield FieldRow(n, self.profile)
        self._populated = {g for g in self.groups if g not in self.collapsed}

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        coll = event.collapsible
        g = (coll.id or "").removeprefix("group-")
        if g in self.groups and g not in self._populated:
            self._populated.add(g)
            names = [n for n in self.names if n.split(".")[0] == g]
            from textual.widgets import Collapsible

            coll.query_one(Collapsible.Contents).mount(*[FieldRow(n, self.profile) for n in names])
            self.call_after_refresh(self.app.refresh_views)  # type: ignore[attr-defined]

    def expand(self, group: str) -> None:
        from textual.widgets import Collapsible

        self.query_one(f"#group-{group}", Collapsible).collapsed = False

    def rows(self) -> list[FieldRow]:
        return list(self.query(FieldRow))

    def sync(self, job: JobConfig, states: dict[str, FieldState] | None = None) -> None:
        if states is None:
            _, states = compute_states(job)
        self.profile = job.profile
        for row in self.query(FieldRow):
            row.sync(job.profile, states[row.field_name])
        if self.grouped:
            from textual.widgets import Collapsible

            for g in self.groups:
                names = [n for n in self.names if n.split(".")[0] == g]
                coll = self.query_one(f"#group-{g}", Collapsible)
                coll.display = any(states[n].visible for n in names)
                bad = sum(1 for n in names if states[n].visible and states[n].problem
                          and states[n].problem.severity == "error")
                title = GROUP_TITLES.get(g, g)
                coll.title = f"{title}  ✗ {bad}" if bad else title
                coll.set_class(bad > 0, "-invalid")


class FoldedFields(Widget, can_focus=True):
    """Rarely changed fields behind one line: their title and current values (``▸ Dropout overrides
    hidden unset · attention 0.1``); Enter, Space or a click opens it into their rows (a
    :class:`SchemaForm` mounted on the first open).  It opens by itself when one of the fields is
    set or has a problem, so nothing set is ever out of sight.  The line is drawn by the widget, the
    rows go below it (the form's top margin)."""

    DEFAULT_CLASSES = "folded-fields"
    COMPONENT_CLASSES = {"folded-fields--title", "folded-fields--summary"}
    BINDINGS = [Binding("enter,space", "toggle", "Open / close", show=False)]

    def __init__(self, title: str, names: dict[str, str], form_id: str, id: str | None = None) -> None:
        """``names``: field name → its short name in the summary."""
        super().__init__(id=id)
        self.title = title
        self.names = dict(names)
        self.form_id = form_id
        self.expanded = False
        self._summary = ""
        self._profile = "native"

    @property
    def form(self) -> SchemaForm | None:
        try:
            return self.query_one(f"#{self.form_id}", SchemaForm)
        except NoMatches:
            return None

    def render(self) -> Content:
        arrow = "▾" if self.expanded else "▸"
        title = Content.styled(f"{arrow} {self.title}", self.get_visual_style("folded-fields--title"))
        if self.expanded or not self._summary:
            return title
        return Content.assemble(title, "   ", Content.styled(self._summary, self.get_visual_style("folded-fields--summary")))

    def action_toggle(self) -> None:
        self.set_expanded(not self.expanded)

    def on_click(self, event: Any) -> None:
        if event.widget is self and event.y == 0:
            event.stop()
            self.focus()
            self.action_toggle()

    def set_expanded(self, expanded: bool) -> None:
        if expanded == self.expanded:
            return
        self.expanded = expanded
        self.set_class(expanded, "-expanded")
        form = self.form
        if expanded and form is None:
            self.mount(SchemaForm(list(self.names), profile=self._profile, id=self.form_id))
            self.call_after_refresh(self.app.refresh_views)  # type: ignore[attr-defined]
        elif form is not None:
            form.display = expanded
        self.refresh(layout=True)

    def sync(self, job: JobConfig, states: dict[str, FieldState]) -> None:
        self._profile = job.profile
        parts = [f"{short} {format_value(n, states[n].value) or 'unset'}" for n, short in self.names.items()]
        summary = " · ".join(parts)
        if summary != self._summary:
            self._summary = summary
            self.refresh()
        if any(states[n].explicit or states[n].problem is not None for n in self.names):
            self.set_expanded(True)  # the step syncs the rows with its other forms

"""Step 1 — Model: the profile, the base model (catalog, local folder or id) and what config.json says."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Select, Static

from engine.schema import profiles as P
from engine.schema import FIELD_BY_NAME, TINY_MODEL, JobConfig
from tui.widgets.form import FieldEdited, FieldRow, FoldedFields, SchemaForm, row_id
from tui.widgets.lazyselect import LazySelect
from tui.widgets.step import StepPane, group_names


class ProfileSelect(Horizontal):
    """Profile picker used on the Model and Hyperparameters steps."""

    DEFAULT_CLASSES = "profile-row"

    def __init__(self, id: str) -> None:
        super().__init__(id=id)
        self._shown: str | None = None

    def compose(self) -> ComposeResult:
        # the "Profile" label is drawn by the row, in the select's left margin (one widget fewer)
        yield LazySelect([(f"{p.title}", p.name) for p in P.PROFILES.values()], value="native", allow_blank=False,
                     compact=True, classes="-textual-compact profile-select")

    def render(self) -> str:
        return "Profile"

    @on(Select.Changed)
    def _changed(self, event: Select.Changed) -> None:
        event.stop()
        # ignore stale events (the Select shows something else by now) and our own sync
        if event.value is Select.BLANK or self._shown is None or event.value != event.select.value \
                or event.value == self._shown:
            return
        self._shown = str(event.value)
        self.post_message(FieldEdited("profile", str(event.value)))

    def sync(self, profile: str) -> None:
        sel = self.query_one(Select)
        if sel.value != profile:
            with sel.prevent(Select.Changed):
                sel.value = profile
        self._shown = profile


def catalog(profile: str) -> list[str]:
    """Models offered: the demo model, the profile's catalog, then the FPT pipeline catalog."""
    out = [TINY_MODEL]
    out += [m for m in P.get(profile).models if m not in out]
    out += [m for m in P.FPT_PIPELINE_MODELS if m not in out]
    return out


def catalog_legend(profile: str) -> str:
    """What the catalog's rows are, as they are marked for ``profile`` (a ● only where the profile has a catalog)."""
    prof = P.get(profile)
    if prof.models:
        others = "the others: models finetui knows the shape of" + (
            "" if prof.allow_own_models else f" (not accepted by {prof.title})")
        return f"● in the {prof.title} catalog; {others}."
    return "Models finetui knows the shape of (first: the built-in demo model); any model id can be typed."


def info_table(info: Any) -> Table:
    """An engine.modelinfo.ModelInfo (or a dict of its fields: the tests' fake) as a two-column table;
    a field it does not know shows as —."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()

    def g(name: str) -> Any:
        v = info.get(name) if isinstance(info, dict) else getattr(info, name, None)
        return None if v in ("", []) else v

    arch = g("architecture")
    params = g("num_params")
    if isinstance(params, (int, float)):
        params = _human(params)
    ctx = g("context_length")
    vision = g("vision")
    targets = g("default_target_modules")
    layers, hidden = g("layers"), g("hidden")
    shape = f"{layers} layers, hidden {hidden:,}" if isinstance(layers, int) and isinstance(hidden, int) else None
    rows = [("Architecture", arch), ("Parameters", params), ("Shape", shape), ("Context", f"{ctx:,} tokens" if isinstance(ctx, int) else ctx),
            ("Vision", None if vision is None else ("yes" if vision else "no")),
            ("LoRA targets", ", ".join(targets) if isinstance(targets, (list, tuple)) else targets)]
    for k, v in rows:
        t.add_row(k, "—" if v is None else str(v))
    src = g("source")
    if src:
        t.add_row("Read from", Text(str(src), "dim"))
    return t


def _human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


class ModelInfo(Widget):
    """What config.json says (a title line, the details table) and, under it, the catalog note or the
    base model's problem: one widget for what were a title, the details and the note."""

    COMPONENT_CLASSES = {"model-info--title", "model-info--note"}

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.details: Any = Text("")
        self.note: Text | None = None

    def set_details(self, details: Any) -> None:
        self.details = details
        self.refresh(layout=True)

    def set_note(self, note: Text | None) -> None:
        key = (note.plain, str(note.style)) if note is not None and note.plain else None
        old = (self.note.plain, str(self.note.style)) if self.note is not None else None
        if key != old:
            self.note = note if key is not None else None
            self.refresh(layout=True)

    def render(self) -> Group:
        # built here, not kept: the title's and the note's colours follow the theme
        parts: list[Any] = [Text("From config.json", self.get_component_rich_style("model-info--title")), self.details]
        if self.note is not None:
            own = self.note.style if isinstance(self.note.style, Style) else Style.parse(str(self.note.style) or "none")
            # the note's colour (a warning's) under its own style (the catalog's green)
            parts += [Text(""), Text(self.note.plain, self.get_component_rich_style("model-info--note") + own)]
        return Group(*parts)


class ModelPane(StepPane):
    STEP = "model"
    TITLE = "Model"
    SUBTITLE = "which rules, which base model"
    FIRST = "f-model-name_or_path"

    def __init__(self) -> None:
        super().__init__()
        self._info_for: str | None = None

    def compose(self) -> ComposeResult:
        yield self.header()
        with VerticalScroll(classes="step-body"):
            yield ProfileSelect(id="model-profile")
            yield Static("", id="profile-desc", classes="muted")
            with Horizontal(classes="model-path-row"):
                yield FieldRow("model.name_or_path")  # synced with the forms below (sync)
                # the profile's catalog opens in a dialog (CatalogDialog): the step starts faster and
                # the model's details below get the whole width
                yield Button("Catalog…", id="model-catalog", compact=True, classes="-textual-compact browse")
                yield Button("Browse…", id="model-browse", compact=True, classes="-textual-compact browse")
            yield ModelInfo(id="model-info")
            rest = [n for n in group_names("model") if n != "model.name_or_path"]
            dropouts = [n for n in rest if n.endswith("_dropout")]
            yield SchemaForm([n for n in rest if n not in dropouts], id="model-form")
            # rarely changed: one line with their values; opens when clicked, or by itself once one is set
            yield FoldedFields("Dropout overrides", {n: FIELD_BY_NAME[n].label.removesuffix(" dropout") for n in dropouts},
                               form_id="model-dropout-form", id="model-dropout")
        yield self.nav()

    def sync(self, job: JobConfig, res: dict[str, Any], states: dict) -> None:
        self.query_one("#model-profile", ProfileSelect).sync(job.profile)
        prof = P.get(job.profile)
        self.query_one("#profile-desc", Static).update(prof.description)
        self.query_one(f"#{row_id('model.name_or_path')}", FieldRow).sync(job.profile, states["model.name_or_path"])
        for f in self.query(SchemaForm):  # the folded dropout rows too, once opened
            f.sync(job, states)
        self.query_one("#model-dropout", FoldedFields).sync(job, states)
        name = str(res["model.name_or_path"])
        info = self.query_one("#model-info", ModelInfo)
        st = states.get("model.name_or_path")
        if st is not None and st.problem is not None:
            info.set_note(Text(("✗ " if st.problem.severity == "error" else "⚠ ") + st.problem.message, "bold"))
        elif prof.models and name in prof.models:
            info.set_note(Text(f"● in the {prof.title} catalog", "green"))
        else:
            info.set_note(None)
        if self._info_for != name:
            self._info_for = name
            # after the next paint: the worker thread (engine.modelinfo's import) would otherwise
            # compete with the first paint of the step (start-up time)
            self.call_after_refresh(self._load_info_if_current, name)

    def _load_info_if_current(self, name: str) -> None:
        if name == self._info_for:
            self.load_info(name)

    @work(exclusive=True, thread=True, group="model-info")
    def load_info(self, name: str) -> None:
        describe = self.app.services.describe_model  # type: ignore[attr-defined]
        try:
            info = describe(name)
            out: Any = info_table(info)
        except Exception as e:  # one sentence, never a traceback
            out = Text(f"Cannot read config.json: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}",
                       "dim")
        self.app.call_from_thread(self._show_info, name, out)

    def _show_info(self, name: str, out: Any) -> None:
        if name == self._info_for:
            self.query_one("#model-info", ModelInfo).set_details(out)

    def catalog_items(self, profile: str) -> list[tuple[str, Text]]:
        """The catalog dialog's rows: the profile's own models marked with a green ●."""
        own = set(P.get(profile).models)
        return [(m, Text.assemble(("● " if m in own else "  ", "green"), m)) for m in catalog(profile)]

    @on(Button.Pressed, "#model-catalog")
    def _catalog(self, event: Button.Pressed) -> None:
        event.stop()
        from tui.widgets.dialogs import CatalogDialog

        job = self.app.job  # type: ignore[attr-defined]

        def done(model: str | None) -> None:
            if model:
                self.post_message(FieldEdited("model.name_or_path", model))

        self.app.push_screen(CatalogDialog(f"Models — {P.get(job.profile).title} profile", self.catalog_items(job.profile),
                                           str(job.resolved()["model.name_or_path"]),
                                           legend=catalog_legend(job.profile)), done)

    @on(Button.Pressed, "#model-browse")
    def _browse(self, event: Button.Pressed) -> None:
        event.stop()
        from tui.widgets.dialogs import FilePickerDialog

        def done(path: str | None) -> None:
            if path:
                self.post_message(FieldEdited("model.name_or_path", path))

        self.app.push_screen(FilePickerDialog("Choose a model folder (with config.json)", ".", folders=True), done)

"""Modal dialogs: confirm, open / save preset, file picker, field help."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from engine.schema import FIELD_BY_NAME, spec
from tui.screens.base import QuietScreen
from tui.widgets.lazyselect import LazySelect


def short_path(path: str) -> str:
    """``path`` relative to the current folder when inside it, else with ``~`` for the home folder."""
    if not path:
        return path
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        pass
    home = str(Path.home())
    return "~" + path[len(home):] if path.startswith(home + "/") else path


class Dialog(QuietScreen, ModalScreen[Any]):
    """Base: escape cancels (dismisses with None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CLASSES = "dialog-screen"

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(Dialog):
    """A question with buttons; dismisses with the chosen button's key (None on escape).  ``y`` answers with
    the first button (focused: Enter too), ``n`` with ``no`` (default: the cancel button, else the last)."""

    BINDINGS = [Binding("y", "answer('yes')", "Yes", show=False), Binding("n", "answer('no')", "No", show=False)]

    def __init__(self, title: str, message: str, buttons: Iterable[tuple[str, str]] = (("yes", "Yes"), ("no", "No")),
                 id: str | None = None, no: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.message = message
        self.buttons = list(buttons)
        keys = [k for k, _ in self.buttons]
        self.answers = {"yes": keys[0], "no": no or ("cancel" if "cancel" in keys else keys[-1])}

    def action_answer(self, which: str) -> None:
        self.dismiss(self.answers[which])

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.message, classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                for i, (key, label) in enumerate(self.buttons):
                    yield Button(label, id=f"btn-{key}", variant="primary" if i == 0 else "default", compact=True)
            yield Static(f"y {self.buttons[0][1].lower()} · n {dict(self.buttons)[self.answers['no']].lower()}"
                         " · Esc cancel", classes="dialog-keys", markup=False)

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss((event.button.id or "btn-").removeprefix("btn-"))


class FolderTree(DirectoryTree):
    """A DirectoryTree without dot folders and files (.git, .venv, .cache…)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")]


class FilePickerDialog(Dialog):
    """A tree of the files to pick one (or a folder): ``↑ Parent`` (or Backspace in the tree) goes up, dot
    folders are hidden, and a path typed below takes the tree to its folder."""

    BINDINGS = [Binding("backspace", "parent", "Parent folder", show=False)]

    def __init__(self, title: str = "Choose a file", start: str | Path = ".", folders: bool = False,
                 suffixes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.title_text = title
        self.start = Path(start).expanduser().resolve()
        if not self.start.is_dir():
            self.start = self.start.parent if self.start.parent.is_dir() else Path.cwd()
        self.folders = folders
        self.suffixes = suffixes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-tall"):
            yield Label(self.title_text, classes="dialog-title")
            with Horizontal(classes="picker-where"):
                yield Button("↑ Parent", id="picker-up", compact=True)
                yield Label(str(self.start), id="picker-folder", classes="muted")
            yield FolderTree(self.start, id="picker-tree")
            yield Input(placeholder="path (a folder typed here opens in the tree)", id="picker-path", compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Choose", id="picker-ok", variant="primary", compact=True)
                yield Button("Cancel", id="picker-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#picker-tree").focus()

    def go(self, folder: Path) -> None:
        """Show ``folder`` in the tree."""
        tree = self.query_one("#picker-tree", FolderTree)
        if folder.is_dir() and folder != Path(tree.path):
            tree.path = folder
            self.query_one("#picker-folder", Label).update(str(folder))

    @on(Button.Pressed, "#picker-up")
    def action_parent(self) -> None:
        tree = self.query_one("#picker-tree", FolderTree)
        if self.focused is not None and self.focused.id == "picker-path":
            return  # (Backspace edits the path there)
        self.go(Path(tree.path).resolve().parent)

    @on(Input.Changed, "#picker-path")
    def _typed(self, event: Input.Changed) -> None:
        if not self.query_one("#picker-path", Input).has_focus:
            return  # (a pick in the tree wrote it)
        p = Path(event.value.strip()).expanduser() if event.value.strip() else None
        if p is None:
            return
        if not p.is_absolute():
            p = Path.cwd() / p
        self.go(p if p.is_dir() else p.parent)

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#picker-path", Input).value = str(event.path)
        if not self.folders:
            self.dismiss(str(event.path))

    @on(DirectoryTree.DirectorySelected)
    def _dir(self, event: DirectoryTree.DirectorySelected) -> None:
        self.query_one("#picker-path", Input).value = str(event.path)

    @on(Input.Submitted, "#picker-path")
    @on(Button.Pressed, "#picker-ok")
    def _ok(self) -> None:
        v = self.query_one("#picker-path", Input).value.strip()
        if v:
            self.dismiss(v)

    @on(Button.Pressed, "#picker-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class OpenPresetDialog(Dialog):
    """Shipped and recent presets, or a typed path: a TOML preset opens, a LLaMA-Factory / Nova YAML or an
    FPT / OCI / watsonx JSON is imported (the app tells which from the content: engine.interop.file_kind)."""

    def __init__(self, shipped: list[Path], recent: list[Path]) -> None:
        super().__init__()
        self.shipped = shipped
        self.recent = recent

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-tall"):
            yield Label("Open a preset or import a config", classes="dialog-title")
            opts: list[Option | None] = []
            for p in self.recent:
                opts.append(Option(Text.assemble(("recent   ", "dim"), p.name, ("  " + str(p.parent), "dim")), id=str(p)))
            for p in self.shipped:
                if p not in self.recent:
                    opts.append(Option(Text.assemble(("shipped  ", "dim"), p.name), id=str(p)))
            yield OptionList(*opts, id="preset-list")
            yield Input(placeholder="…or a path: a .toml preset, a LLaMA-Factory / Nova YAML, an FPT / OCI / watsonx JSON",
                        id="preset-path", compact=True)
            yield Static("", id="preset-error", classes="field-problem", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Open", id="preset-open", variant="primary", compact=True)
                yield Button("Browse…", id="preset-browse", compact=True)
                yield Button("Cancel", id="preset-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#preset-error").display = False
        ol = self.query_one("#preset-list", OptionList)
        if ol.option_count:
            ol.highlighted = 0
            ol.focus()
        else:
            self.query_one("#preset-path").focus()

    @on(OptionList.OptionHighlighted, "#preset-list")
    def _hl(self, event: OptionList.OptionHighlighted) -> None:
        self.query_one("#preset-path", Input).value = short_path(event.option.id or "")

    @on(OptionList.OptionSelected, "#preset-list")
    def _sel(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(("open", event.option.id))

    @on(Input.Submitted, "#preset-path")
    @on(Button.Pressed, "#preset-open")
    def _open(self) -> None:
        v = self.query_one("#preset-path", Input).value.strip()
        if v:
            self.dismiss(("open", v))

    @on(Button.Pressed, "#preset-browse")
    def _browse(self) -> None:
        def picked(path: str | None) -> None:
            if path:
                self.query_one("#preset-path", Input).value = path
                self.query_one("#preset-path", Input).focus()

        self.app.push_screen(FilePickerDialog("A preset (.toml) or a file to import (.yaml / .json)", "."), picked)

    @on(Button.Pressed, "#preset-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def show_error(self, msg: str) -> None:
        e = self.query_one("#preset-error", Static)
        e.update(msg)
        e.display = True


EXPORT_CHOICES = (("LLaMA-Factory YAML", "llamafactory"), ("Nova recipe YAML", "nova"),
                  ("FPT AI Studio JSON", "fpt_studio"), ("OCI hyperparameters JSON", "oci"),
                  ("watsonx tuning JSON", "watsonx"))
EXPORT_SUFFIX = {"llamafactory": ".yaml", "nova": ".yaml", "fpt_studio": ".json", "oci": ".json", "watsonx": ".json"}


class SavePresetDialog(Dialog):
    """Save the job as a TOML preset, or export it to another tool's format (engine.interop).

    Dismisses with ``("save", path)`` or ``("export:<format>", path)``; choosing a format puts
    that format's suffix on the path."""

    def __init__(self, path: str, export: bool = False) -> None:
        super().__init__()
        self.path = path
        self.export_first = export
        self._fmt = "llamafactory"  # the Select's initial value: its first Changed is not a choice

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Save or export the job", classes="dialog-title")
            yield Static("Secrets are never written; a preset names the environment variable instead.",
                         classes="dialog-body")
            yield Input(self.path, placeholder="path/to/preset.toml", id="save-path", compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save TOML", id="save-ok", variant="primary", compact=True)
                yield Button("Cancel", id="save-cancel", compact=True)
            with Horizontal(classes="dialog-buttons export-row"):
                yield Label("Export as ", classes="muted")
                yield LazySelect(EXPORT_CHOICES, value="llamafactory", allow_blank=False, compact=True, id="export-format")
                yield Button("Export", id="save-export", compact=True)

    def on_mount(self) -> None:
        if self.export_first:
            self._suffix("llamafactory")
            self.query_one("#export-format").focus()
        else:
            self.query_one("#save-path").focus()

    def _suffix(self, fmt: str) -> None:
        inp = self.query_one("#save-path", Input)
        v = inp.value.strip()
        if v:
            inp.value = str(Path(v).with_suffix(EXPORT_SUFFIX[fmt]))

    @on(Select.Changed, "#export-format")
    def _format(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str) and event.value != self._fmt:
            self._fmt = event.value
            self._suffix(event.value)

    @on(Input.Submitted, "#save-path")
    @on(Button.Pressed, "#save-ok")
    def _ok(self) -> None:
        v = self.query_one("#save-path", Input).value.strip()
        if v:
            self.dismiss(("save", str(Path(v).with_suffix(".toml")) if Path(v).suffix in EXPORT_SUFFIX.values() else v))

    @on(Button.Pressed, "#save-export")
    def _export(self) -> None:
        fmt = str(self.query_one("#export-format", Select).value)
        self.dismiss((f"export:{fmt}", self.query_one("#save-path", Input).value.strip()))

    @on(Button.Pressed, "#save-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


KEYS_HELP = """\
Tab / Shift+Tab   next / previous field (typing replaces it)
Ctrl+N / Ctrl+B   next / previous step (Esc: back a step)
F1                help (? too, outside text fields)
Ctrl+O / Ctrl+S   open or import / save or export
Ctrl+T            the job as TOML (again: the form)
Ctrl+L            the launch step's review; again: launch
Ctrl+R            runs          Ctrl+P   every action
q / Ctrl+Q        quit (asks when there are unsaved changes)"""


class HelpDialog(Dialog):
    """The focused field's help: label, dotted name, allowed values, visibility rule, aliases."""

    BINDINGS = [Binding("escape,f1,question_mark,q", "cancel", "Close")]

    def __init__(self, field_name: str | None, profile: str = "native",
                 keys: list[tuple[str, str]] | None = None) -> None:
        """``keys``: another screen's keys (runs, a dashboard), listed instead of the wizard's."""
        super().__init__()
        self.field_name = field_name
        self.profile = profile
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-help"):
            if self.field_name and self.field_name in FIELD_BY_NAME:
                f = FIELD_BY_NAME[self.field_name]
                sp = spec(f.name, self.profile)
                yield Label(f"{f.label}  ·  {f.name}", classes="dialog-title")
                yield Static(f.help, classes="dialog-body", markup=False)
                t = Text()
                t.append("allowed  ", "bold")
                t.append(sp.allowed() + (f"  (profile {self.profile})" if sp.overridden else ""))
                t.append("\ndefault  ", "bold")
                t.append("unset" if sp.default is None else str(sp.default))
                if f.visible_text:
                    t.append("\nshown    ", "bold")
                    t.append(f"when {f.visible_text}")
                if f.aliases:
                    t.append("\naliases  ", "bold")
                    t.append(", ".join(f.aliases))
                yield Static(t, classes="dialog-body")
            else:
                yield Label("finetui — keys" if self.keys is None else "Keys of this screen", classes="dialog-title")
            keys = KEYS_HELP if self.keys is None else "\n".join(f"{k:<17} {d}" for k, d in self.keys)
            user = getattr(self.app, "user_keys", None)
            if user is not None and self.keys is None:
                from tui.keys import describe

                keys = keys.rstrip("\n") + ("\n\n" + describe(user) if describe(user) else "")
            yield Static(keys, classes="dialog-body dialog-keys", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="help-close", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#help-close").focus()

    @on(Button.Pressed, "#help-close")
    def _close(self) -> None:
        self.dismiss(None)


class CatalogDialog(Dialog):
    """A profile's model catalog: Enter or a click on a model dismisses with its id (None on escape).
    ``items`` are (model id, shown text) pairs; the current model is highlighted when listed."""

    def __init__(self, title: str, items: list[tuple[str, Any]], current: str | None = None,
                 legend: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.items = items
        self.current = current
        self.legend = legend  # what the rows' marks mean, as they are

    def compose(self) -> ComposeResult:
        from tui.widgets.catalog import CatalogList

        with Vertical(classes="dialog dialog-catalog"):
            yield Label(self.title_text, classes="dialog-title")
            yield CatalogList(id="catalog-list")
            yield Static(f"{self.legend}  ↑↓ move · Enter picks · Esc closes".strip(), classes="dialog-keys",
                         markup=False)

    def on_mount(self) -> None:
        from tui.widgets.catalog import CatalogList

        cat = self.query_one(CatalogList)
        cat.set_items(self.items)
        ids = cat.item_ids
        cat.highlight(ids.index(self.current) if self.current in ids else 0)
        cat.focus()

    def on_catalog_list_picked(self, event: Any) -> None:
        event.stop()
        self.dismiss(event.item_id)

"""Step 2 — Data: source (local file / folder or S3), format, and the validation report.

The report comes from ``finetui data check PATH --format FMT --trainer T --max-length N --json``
run in a subprocess from a thread worker (the data engine may import heavy tokenizer code;
the TUI process never does).  S3 credentials come from the environment or are typed here,
masked, and kept only in memory (``JobConfig.secrets``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, ProgressBar, Static

from engine.schema import JobConfig
from tui.widgets.form import FieldEdited, SchemaForm
from tui.widgets.step import StepPane, group_names

SOURCE_FIELDS = ["data.train_path", "data.format", "data.validation_path"]


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.1f}" if v != int(v) else f"{int(v):,}"
    return str(v)


def check_progress_text(p: dict[str, Any]) -> str:
    """A progress line of ``finetui data check --progress lines`` as ``1,200,000 rows · 950,000 rows/s · about
    3 s left`` (the time left by the bytes read), beside the bar."""
    from engine.data.tokcache import reading_text

    return reading_text(int(p.get("rows") or 0), int(p.get("bytes") or 0), int(p.get("total") or 0),
                        float(p.get("seconds") or 0))


def _where(r: dict[str, Any]) -> str:
    if r.get("location"):
        return str(r["location"])
    return f"{r.get('file', '')}:{r.get('line', '')}".strip(":")


ROLE_STYLE = {"chosen": "bold green", "rejected": "bold red"}


def preview_row(role: str, content: str) -> Table:
    """One message of the preview: its role right-aligned in a column of its own, the text wrapped beside it
    (a multi-line message stays in its column)."""
    t = Table.grid(expand=True)
    t.add_column(width=9, justify="right", no_wrap=True)
    t.add_column(width=3, no_wrap=True)
    t.add_column(ratio=1)
    t.add_row(Text(role, ROLE_STYLE.get(role, "bold cyan")), Text(" │ ", "bold cyan"), Text(content))
    return t


def render_report(rep: dict[str, Any]) -> Group:
    """``finetui data check --json`` as the verdict, row counts, errors and warnings, the invalid
    rows (where, field, reason), token lengths and a preview of the rows as conversations."""
    parts: list[Any] = []
    ok = rep.get("ok", rep.get("valid"))
    if isinstance(ok, bool):
        parts.append(Text("✓ the data is valid" if ok else "✗ the data check failed",
                          "bold green" if ok else "bold red"))
    rows = next((rep[k] for k in ("rows", "totals") if isinstance(rep.get(k), dict)), None)
    if rows:
        t = Text()
        for i, (k, v) in enumerate(rows.items()):
            if k == "invalid_pct":
                continue
            t.append(("  ·  " if i else "") + str(k).replace("_", " ") + " ", "dim")
            t.append(_num(v), "bold red" if k == "invalid" and v else "bold")
        if rows.get("invalid") and "invalid_pct" in rows:
            allowed = rep.get("allowed_invalid_pct")
            t.append(f" ({rows['invalid_pct']:.1f}%" + (f", {allowed:g}% allowed)" if allowed is not None else ")"),
                     "dim")
        parts.append(t)
    def here(line: str) -> str:  # the CLI's advice, said as the form's
        if line == rep.get("hint"):
            return line.replace("use --format ", "set Data format to ")
        return line

    for e in rep.get("errors") or []:
        parts.append(Text(f"✗ {here(e)}", "red"))
    for w in rep.get("warnings") or []:
        parts.append(Text(f"⚠ {here(w)}", "yellow"))
    if rep.get("message"):
        parts.append(Text(str(rep["message"])))
    bad = next((rep[k] for k in ("invalid_rows", "invalid", "problems") if isinstance(rep.get(k), list)), [])
    if bad:
        more = int(rep.get("invalid_more") or 0)
        t = Table(title=f"Invalid rows ({len(bad) + more})", title_justify="left", expand=True, show_edge=False,
                  header_style="bold")
        t.add_column("where", no_wrap=True, overflow="ellipsis", max_width=48)
        t.add_column("field", no_wrap=True)
        t.add_column("reason", ratio=1)
        for r in bad[:20]:
            if isinstance(r, dict):
                t.add_row(_where(r), str(r.get("field") or ""), str(r.get("reason", r.get("message", ""))))
            else:
                t.add_row("", "", str(r))
        parts.append(t)
        if len(bad) > 20 or more:
            parts.append(Text(f"… and {len(bad) - 20 + more if len(bad) > 20 else more} more", "dim"))
    tok = next((rep[k] for k in ("tokens", "token_stats") if isinstance(rep.get(k), dict)), None)
    if tok:
        stats = {k: v for k, v in tok.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and k not in ("sampled_rows", "max_length")}
        t = Table(title="Tokens per row", title_justify="left", show_edge=False, header_style="bold")
        for k in stats:
            t.add_column(str(k).replace("_", " "), justify="right")
        t.add_row(*[_num(v) for v in stats.values()])
        parts.append(t)
        about = [f"tokenizer {tok['tokenizer']}" if tok.get("tokenizer") else "",
                 f"max length {tok['max_length']:,}" if isinstance(tok.get("max_length"), int) else ""]
        if any(about):
            parts.append(Text("  ·  ".join(a for a in about if a), "dim"))
    prev = next((rep[k] for k in ("preview", "samples", "example") if rep.get(k)), None)
    if rep.get("loss_mask") is not None:
        # the rows as the worker tokenizes them: trained tokens highlighted, the prompt dimmed
        from rich.panel import Panel

        from tui.widgets.maskview import mask_preview

        name = (rep.get("tokens") or {}).get("tokenizer") or "the model's tokenizer"
        parts.append(Panel(mask_preview(rep, rows=3, width_chars=1200), title=f"What the loss trains on — {name}",
                           title_align="left", border_style="dim"))
    elif prev:
        convs = prev if isinstance(prev, list) else [prev]
        parts.append(Text("Preview", "bold"))
        if not rep.get("tokens"):
            parts.append(Text("(the tokens the loss trains on show here once the model's tokenizer is on this "
                              "machine: a model folder, finetui:tiny-llama, or a Hub model in the local cache)",
                              "dim"))
        for conv in convs[:3]:
            where = conv.get("location") if isinstance(conv, dict) else None
            if where:
                parts.append(Text(f"── {where}", "dim"))
            if isinstance(conv, dict) and isinstance(conv.get("messages"), list):
                conv = conv["messages"]
            if isinstance(conv, list):
                for m in conv[:6]:
                    if isinstance(m, dict):
                        role = str(m.get("role", m.get("from", "")))
                        content = str(m.get("content", m.get("value", "")))
                        parts.append(preview_row(role, content[:300]))
            elif isinstance(conv, dict):
                for k, v in list(conv.items())[:6]:
                    parts.append(Text.assemble((f"{k:>11} │ ", "bold cyan"), str(v)[:300]))
            else:
                parts.append(Text(str(conv)[:600]))
    return Group(*parts)


class DataPane(StepPane):
    STEP = "data"
    TITLE = "Data"
    SUBTITLE = "what to train on, and is it valid"
    FIRST = "f-data-train_path"

    def compose(self) -> ComposeResult:
        yield self.header()
        with VerticalScroll(classes="step-body"):
            with Horizontal(classes="model-path-row"):
                yield SchemaForm(["data.train_path"], id="data-train-form")
                yield Button("Browse…", id="data-browse", compact=True, classes="-textual-compact browse")
                yield Button("Add…", id="data-add", compact=True, classes="-textual-compact browse browse-s3",
                             tooltip="Add another file of the same format: its rows are read after the others")
                yield Button("S3…", id="data-s3", compact=True, classes="-textual-compact browse browse-s3")
            yield SchemaForm([n for n in SOURCE_FIELDS if n != "data.train_path"], id="data-source-form")
            with Horizontal(id="data-detect"):
                yield Static("", id="data-detect-text", markup=False)
                yield Button("Use", id="data-use-format", compact=True, classes="-textual-compact")
            with Vertical(id="s3-box"):
                yield SchemaForm([n for n in group_names("data") if n.startswith("data.s3_")], id="data-s3-form")
                with Horizontal(classes="field-line", id="s3-access-line"):
                    yield Label("Access key", classes="field-label")
                    yield Input(password=True, id="s3-access", compact=True, classes="-textual-compact field-input",
                                placeholder="kept in memory only")
                    yield Label("", id="s3-access-hint", classes="field-hint")
                with Horizontal(classes="field-line", id="s3-secret-line"):
                    yield Label("Secret key", classes="field-label")
                    yield Input(password=True, id="s3-secret", compact=True, classes="-textual-compact field-input",
                                placeholder="kept in memory only")
                    yield Label("", id="s3-secret-hint", classes="field-hint")
            yield SchemaForm([n for n in group_names("data") if n not in SOURCE_FIELDS and not n.startswith("data.s3_")],
                             id="data-form")
            with Horizontal(classes="check-row"):
                yield Button("Check data", id="data-check", compact=True, variant="primary", classes="-textual-compact")
                yield ProgressBar(total=None, show_eta=False, id="data-check-bar")
                yield Button("Stop", id="data-check-stop", compact=True, classes="-textual-compact",
                             tooltip="Stop the check (as Ctrl-C would the CLI's)")
                yield Static("", id="data-check-status", classes="muted", markup=False)
            yield Static("", id="data-report")
        yield self.nav()

    _check_on_mount = False

    def on_mount(self) -> None:
        self.query_one("#data-report").display = False
        self._checking(False)
        self.query_one("#data-detect").display = False
        if self._check_on_mount:
            self.call_after_refresh(self.run_check)

    def sync(self, job: JobConfig, res: dict[str, Any], states: dict) -> None:
        for f in self.query(SchemaForm):
            f.sync(job, states)
        self._show_detected(res)
        s3 = any(states[n].visible for n in group_names("data") if n.startswith("data.s3_"))
        self.query_one("#s3-box").display = s3
        if s3:
            for which, field in (("access", "data.s3_access_key_env"), ("secret", "data.s3_secret_key_env")):
                var = str(res.get(field) or "")
                line = self.query_one(f"#s3-{which}-line")
                hint = self.query_one(f"#s3-{which}-hint", Label)
                inp = self.query_one(f"#s3-{which}", Input)
                if var and os.environ.get(var):
                    hint.update(f"from ${var} ✓")
                    inp.disabled = True
                else:
                    hint.update(f"${var} unset" if var else "")
                    inp.disabled = False
                line.display = True

    # -- what the data looks like (its first rows) ------------------------------------------
    _sniffed: dict[str, list[Any] | None] = {}  # train path → its first rows (None: being read)

    def _show_detected(self, res: dict[str, Any]) -> None:
        """The format the first rows look like when it is not the chosen one (with a button to use it), and
        what the rows' extra keys (system, tools, images…) will be used for."""
        from engine.data.formats import FORMAT_WORDS, detect_format, extra_keys

        path = str(res.get("data.train_path") or "").strip()
        box = self.query_one("#data-detect")
        if not path or path.startswith("s3://"):
            box.display = False
            return
        if path not in self._sniffed:
            self._sniffed = {**self._sniffed, path: None}
            self._sniff_worker(path, res)
        rows = self._sniffed.get(path)
        if not rows:
            box.display = False
            return
        fmt, stage = str(res.get("data.format")), str(res.get("trainer.stage"))
        found = detect_format(rows)
        t = Text()
        self._suggested = found if found and found != fmt else None
        if self._suggested:
            from engine.schema import STAGES
            from engine.data.loader import allowed_formats

            t.append(f"⚠ The first rows look like {FORMAT_WORDS.get(found, found)}, not {fmt}.", "bold")
            stages = [st for st in STAGES if found in allowed_formats(st, self.app.job.profile)]  # type: ignore[attr-defined]
            if stages and stage not in stages:
                which = stages[0] if len(stages) == 1 else f"{', '.join(stages[:-1])} or {stages[-1]}"
                t.append(f" It trains {which}, not {stage}: choose the trainer in the Trainer step too.")
            self.query_one("#data-use-format", Button).label = f"Use {found}"
        for k, use in extra_keys(self._suggested or fmt, rows).items():
            t.append(("\n" if t.plain else "") + f"key `{k}`: {use}", "dim")
        self.query_one("#data-use-format").display = bool(self._suggested)
        self.query_one("#data-detect-text", Static).update(t)
        box.display = bool(t.plain)

    _suggested: str | None = None

    @work(thread=True, group="data-sniff")
    def _sniff_worker(self, path: str, res: dict[str, Any]) -> None:
        rows = self.app.services.sniff_data(path, res)  # type: ignore[attr-defined]
        self.app.call_from_thread(self._sniffed_rows, path, rows)

    def _sniffed_rows(self, path: str, rows: list[Any]) -> None:
        self._sniffed = {**self._sniffed, path: rows}
        if self.is_mounted:
            self.app.refresh_views()  # type: ignore[attr-defined]

    @on(Button.Pressed, "#data-use-format")
    def _use_format(self, event: Button.Pressed) -> None:
        event.stop()
        if self._suggested:
            self.post_message(FieldEdited("data.format", self._suggested))

    @on(Input.Changed, "#s3-access, #s3-secret")
    def _secret(self, event: Input.Changed) -> None:
        event.stop()
        job: JobConfig = self.app.job  # type: ignore[attr-defined]
        field = "data.s3_access_key_env" if event.input.id == "s3-access" else "data.s3_secret_key_env"
        var = str(job.resolved().get(field) or "")
        if var:
            if event.value:
                job.secrets[var] = event.value
            else:
                job.secrets.pop(var, None)

    @on(Button.Pressed, "#data-browse, #data-add")
    def _browse(self, event: Button.Pressed) -> None:
        event.stop()
        from engine.datapaths import data_paths, join_paths
        from tui.widgets.dialogs import FilePickerDialog

        add = event.button.id == "data-add"
        have = [p for p in data_paths(self.app.job.resolved()["data.train_path"]) if p != "s3://"]  # type: ignore[attr-defined]

        def done(path: str | None) -> None:
            if path:
                self.post_message(FieldEdited("data.train_path", join_paths([*have, path]) if add else path))

        title = ("Add a training file (read after the others, in the same format)" if add and have else
                 "Choose the training data (.json / .jsonl / .zip or a folder)")
        self.app.push_screen(FilePickerDialog(title, "."), done)

    @on(Button.Pressed, "#data-s3")
    def _s3(self, event: Button.Pressed) -> None:
        """Switch the source to S3: an ``s3://`` path, and the connection fields appear below it."""
        event.stop()
        job: JobConfig = self.app.job  # type: ignore[attr-defined]
        if not str(job.resolved()["data.train_path"] or "").startswith("s3://"):
            self.post_message(FieldEdited("data.train_path", "s3://"))

        def focus_path() -> None:
            from tui.widgets.form import widget_id

            inp = self.query_one(f"#{widget_id('data.train_path')}", Input)
            inp.focus()
            inp.cursor_position = len(inp.value)

        self.call_after_refresh(focus_path)

    @on(Button.Pressed, "#data-check")
    def _check(self, event: Button.Pressed) -> None:
        event.stop()
        self.run_check()

    def run_check(self) -> None:
        if not self.is_mounted or not self.children:
            self._check_on_mount = True
            return
        job: JobConfig = self.app.job  # type: ignore[attr-defined]
        res = job.resolved()
        if not str(res["data.train_path"] or "").strip():
            self.query_one("#data-check-status", Static).update("Choose the training data first.")
            return
        self.query_one("#data-check-status", Static).update("Checking…")
        self._checking(True)
        if self._cancel is not None:  # (a check of what was there before: stopped, its result never shown)
            self._cancel.set()
        self._cancel = threading.Event()
        self._check_worker(job.copy(), self._cancel)

    def _checking(self, on: bool) -> None:
        """The check row while a check runs (its bar and Stop) or not (Check data)."""
        self.query_one("#data-check", Button).disabled = on
        bar = self.query_one("#data-check-bar", ProgressBar)
        if on:
            bar.update(total=None, progress=0)
        bar.display = on
        stop = self.query_one("#data-check-stop", Button)
        stop.display, stop.disabled = on, False

    @on(Button.Pressed, "#data-check-stop")
    def _stop_check(self, event: Button.Pressed) -> None:
        event.stop()
        if self._cancel is not None:
            self._cancel.set()
            event.button.disabled = True
            self.query_one("#data-check-status", Static).update("Stopping…")

    _cancel: threading.Event | None = None

    @work(exclusive=True, thread=True, group="data-check")
    def _check_worker(self, job: JobConfig, cancel: threading.Event) -> None:
        from tui.workers import Stopped

        def progress(p: dict[str, Any]) -> None:
            if not cancel.is_set():
                self.app.call_from_thread(self._progress, p, cancel)

        try:
            rep = self.app.services.data_check(job, progress=progress, cancel=cancel)  # type: ignore[attr-defined]
            out: Any = render_report(rep)
            status = ""
            self.app.call_from_thread(self.app.remember_data_report, job, rep)  # type: ignore[attr-defined]
        except Stopped:
            out, status = None, "Check stopped."
        except Exception as e:
            out = None
            status = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        self.app.call_from_thread(self._show, out, status, cancel)

    def _progress(self, p: dict[str, Any], cancel: threading.Event) -> None:
        """A progress line of the check: the bar by bytes read, rows, rows/s and the time left (not of a check
        stopped or replaced since it was said)."""
        if cancel is not self._cancel or cancel.is_set():
            return
        self.query_one("#data-check-bar", ProgressBar).update(total=p.get("total") or None, progress=p.get("bytes", 0))
        self.query_one("#data-check-status", Static).update(check_progress_text(p))

    def _show(self, out: Any, status: str, cancel: threading.Event | None = None) -> None:
        if cancel is not None and cancel is not self._cancel:
            return  # (a check another one replaced)
        self._checking(False)
        self._cancel = None
        self.query_one("#data-check-status", Static).update(status)
        rep = self.query_one("#data-report", Static)
        if out is not None:
            rep.update(out)
            rep.display = True

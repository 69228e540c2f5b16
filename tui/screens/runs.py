"""Every local and remote run, with status; attach, stop, delete, reopen a config, overlay two runs.

Listing goes through :func:`tui.runsource.list_runs` (``engine.launch.list_runs``
when present) in a thread worker; so do stop and delete, behind a confirmation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.schema import is_local_host
from engine.errors import FinetuiError, one_line, report_crash
from tui import runsource
from tui.runsource import RunRow
from tui.screens.base import QuietScreen
from tui.keys import copy_path
from tui.screens.sweep import name_cell
from tui.widgets.keybar import KeyBar
from tui.widgets.metrics import OUTCOME_TEXT, RunState, fmt_duration, fmt_num

STATUS_ICON = {
    "pending": "…", "running": "▶", "completed": "✔", "early_stopped": "✔", "stopped": "■",
    "failed": "✖", "lost": "?", "scheduled": "◷", "damaged": "⚠", "timeout": "⌛", "cancelled": "■",
    "preempted": "■",
}
STATUS_COLOR = {  # theme colour names
    "running": "primary", "completed": "success", "early_stopped": "success", "stopped": "warning",
    "failed": "error", "lost": "error", "scheduled": "secondary", "pending": "secondary", "damaged": "error",
    "timeout": "warning", "cancelled": "warning", "preempted": "warning",
}
AUTO_REFRESH_S = 3.0


def resume_question(name: str, host: str, ck: dict[str, Any] | None, total_steps: int = 0) -> str:
    """The resume dialog's question: which checkpoint, at which step."""
    if ck is None:
        where = "its newest complete checkpoint"
    else:
        of = f" of {total_steps}" if total_steps else ""
        where = f"{Path(str(ck.get('path'))).name} (step {ck.get('step')}{of})"
    return (f"Resume run {name}{f' on {host}' if host not in ('', 'local') else ''} from {where}?\n\nA new run starts "
            "beside it at that step, with the optimizer and schedule restored; this one is kept as it is.")


def short(name: str, width: int) -> str:
    """``name`` cut in the middle to ``width`` characters."""
    if len(name) <= width:
        return name
    if width <= 1:
        return name[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return name[:head] + "…" + (name[-tail:] if tail else "")


class RunsScreen(QuietScreen):
    """The runs table.  ``runs_dir``: where local runs live (default ``runs``)."""

    CSS_PATH = "dashboard.tcss"
    BINDINGS = [
        Binding("enter", "attach", "Attach"),
        Binding("s", "stop", "Stop"),
        Binding("x,delete", "delete", "Delete"),
        Binding("u", "resume", "Resume"),
        Binding("c", "open_config", "As new job"),
        Binding("space", "mark", "Mark"),
        Binding("o", "overlay", "Overlay"),
        Binding("w", "sweep", "Sweep", show=False),
        Binding("y", "copy_path", "Copy path", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape,q", "back", "Back", show=False),
    ]

    def __init__(self, runs_dir: str = "runs", *, clock: Callable[[], float] = time.time,
                 auto_refresh: bool = True, name: str | None = None, id: str | None = None,
                 classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.runs_dir = runs_dir
        self.clock = clock
        self.refresh_running = auto_refresh
        self.rows: list[RunRow] = []
        self.marked: list[str] = []  # row keys, at most two
        self.loaded = False
        self._width_cols: int | None = None
        self._busy = False
        self.problem: str | None = None
        self.cards: dict[str, Any] = {}  # row key → engine.compare.run_card

    @property
    def active_bindings(self) -> dict:  # type: ignore[override]
        from tui.screens.monitor import dashboard_bindings

        return dashboard_bindings(self, super().active_bindings)

    def compose(self) -> ComposeResult:
        yield Static("Runs", id="runs-title", markup=False)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(f"No runs yet in {self.runs_dir}/ — launch one from the wizard, or "
                     "`finetui train FILE --detach`.", id="runs-empty", markup=False)
        yield Static("", id="runs-detail", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#runs-table", DataTable).focus()
        if self.refresh_running:
            self.set_interval(AUTO_REFRESH_S, self._auto)

    def on_screen_resume(self) -> None:
        if not self.is_current:  # covered as soon as pushed (finetui --attach): listed once shown
            return
        if self.loaded:
            self.action_refresh()
        else:  # after the first paint: the listing thread imports the launcher (GIL) and may use SSH
            self.call_after_refresh(self.action_refresh)

    def _auto(self) -> None:
        # not while a dashboard covers it (remote runs are listed over SSH): it lists when shown again
        if self.is_current and any(r.status in ("running", "pending", "scheduled") for r in self.rows):
            self.action_refresh()

    # -- data ------------------------------------------------------------------
    def action_refresh(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _load(self) -> None:
        rows, problem = runsource.list_runs_safe(self.runs_dir)
        from engine.compare import card_of_dir

        cards = {}
        for r in rows or []:  # eval losses, tokens, wall time, cost (cached while the files do not change)
            try:
                cards[self.key(r)] = card_of_dir(runsource.run_dir(r.ref) if r.ref is not None else None)
            except Exception:  # noqa: BLE001 - a card is optional
                pass
        self.cards = cards
        self.app.call_from_thread(self._show_rows, rows, problem)

    def _show_rows(self, rows: list[RunRow] | None, problem: str | None = None) -> None:
        if problem and problem != self.problem:
            self.notify(problem, severity="error", timeout=8)
        self.problem = problem
        if rows is not None:
            self.rows = rows
            keys = {self.key(r) for r in rows}
            self.marked = [k for k in self.marked if k in keys]
        self.loaded = True
        self._fill()

    @staticmethod
    def key(r: RunRow) -> str:
        return r.name if is_local_host(r.host) else f"{r.name}@{r.host}"

    def _columns(self, width: int) -> list[tuple[str, str, int]]:
        wide = width >= 110
        cols = [("", "mark", 1)]
        fixed = [("Kind", "kind", 9), ("Status", "status", 15), ("Step", "step", 9), ("Loss", "loss", 7),
                 ("Took", "took", 8)]
        if wide:
            fixed.insert(0, ("Host", "host", 12))
            fixed.append(("Started", "started", 11))
        used = 3 + sum(w + 2 for _, _, w in fixed) + 2 + 1  # mark, fixed, name padding, scrollbar
        cols.append(("Name", "name", max(12, width - used)))
        return cols + fixed

    def _fill(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        width = max(40, self.size.width or 80)
        cols = self._columns(width)
        cursor_key = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            try:
                cursor_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            except Exception:  # noqa: BLE001 - the table changed under the cursor: no row to keep
                cursor_key = None
        table.clear(columns=True)
        for label, key, w in cols:
            table.add_column(label, key=key, width=w)
        name_w = next(w for _, k, w in cols if k == "name")
        theme = self.app.current_theme
        for i, r in enumerate(self.rows):
            k = self.key(r)
            color = getattr(theme, STATUS_COLOR.get(r.status, "secondary"), None) or theme.foreground
            status = Text(f"{STATUS_ICON.get(r.status, '•')} {OUTCOME_TEXT.get(r.status, r.status)}",
                          style=Style(color=color))
            cells: dict[str, Any] = {
                "mark": Text("●", style="bold") if k in self.marked else "",
                "name": short(("↻ " if r.parent else "") + (r.name if r.sweep is None else name_cell(
                    r, i == 0 or self.rows[i - 1].sweep != r.sweep,
                    i + 1 == len(self.rows) or self.rows[i + 1].sweep != r.sweep)), name_w),
                "kind": short(r.kind or "—", 9),
                "host": short(r.host, 12),
                "status": status,
                "step": Text(f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step), justify="right"),
                "loss": Text(fmt_num(r.last_loss, 3), justify="right"),
                "took": Text(fmt_duration(r.duration), justify="right"),
                "started": time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "—",
            }
            table.add_row(*[cells[key] for _, key, _ in cols], key=k)
        self._width_cols = width
        if cursor_key is not None:
            try:
                table.move_cursor(row=table.get_row_index(cursor_key), animate=False)
            except Exception:  # noqa: BLE001 - the row is gone (run deleted): the cursor stays where it is
                pass
        running = sum(1 for r in self.rows if r.status == "running")
        self.query_one("#runs-title", Static).update(
            f"Runs — {len(self.rows)} in {self.runs_dir}/" + (f", {running} running" if running else "")
            + (f" · marked {len(self.marked)}/2" if self.marked else ""))
        self.set_class(not self.rows, "-empty")
        self._show_detail()

    def on_resize(self, event: events.Resize) -> None:
        if self.loaded and self._width_cols != event.size.width:
            self._fill()

    def current(self) -> RunRow | None:
        table = self.query_one("#runs-table", DataTable)
        if not self.rows or table.row_count == 0:
            return None
        try:
            k = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no row under the cursor (the table is being rebuilt)
            return None
        return next((r for r in self.rows if self.key(r) == k), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_attach()

    def _show_detail(self) -> None:
        r = self.current()
        detail = self.query_one("#runs-detail", Static)
        if r is None:
            detail.update("")
            return
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "not started"
        where = runsource.run_dir(r.ref) if r.ref is not None else None
        if where is not None:
            try:
                where = where.resolve().relative_to(Path.cwd().resolve())
            except (ValueError, OSError):
                pass
        line1 = f"{r.name} · {r.kind or '?'} · {r.host} · started {started}" + (f" · {where}" if where else "")
        links = ([f"↻ resumed from {r.parent} at step {r.parent_step}"] if r.parent else []) + (
            [f"resumed as {', '.join(r.children)}"] if r.children else [])
        if r.sweep is not None:
            links.insert(0, f"trial {r.trial} of sweep {r.sweep}{' — its best' if r.best else ''} · w: the sweep's "
                            f"table")
        line2 = f"✖ {r.error}" if r.error and r.status == "failed" else (
            " · ".join(links + ([f"Slurm: {r.note}"] if r.note else []))
            or "enter attach · space mark two runs, o overlays their loss · r refresh · esc back")
        from engine.compare import card_line

        card = self.cards.get(self.key(r))
        line_card = card_line(card) if card else ""
        width = max(20, detail.size.width - 2)  # (a long path is cut, not wrapped over the second line)
        detail.update("\n".join(ln if len(ln) <= width else ln[: width - 1] + "…"
                                 for ln in (line1, line_card, line2)))

    # -- actions ---------------------------------------------------------------
    def _ref(self, r: RunRow) -> Any:
        if r.ref is not None:
            return r.ref
        return runsource.resolve(r.name, self.runs_dir)

    def action_attach(self) -> None:
        r = self.current()
        if r is None:
            return
        from tui.screens.monitor import MonitorScreen

        self.app.push_screen(MonitorScreen(self._ref(r), clock=self.clock))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.dismiss(None)
        else:
            self.app.exit()

    def action_mark(self) -> None:
        r = self.current()
        if r is None:
            return
        k = self.key(r)
        if k in self.marked:
            self.marked.remove(k)
        else:
            self.marked.append(k)
            self.marked = self.marked[-2:]
        self._fill()

    def action_overlay(self) -> None:
        keys = list(self.marked)
        cur = self.current()
        if len(keys) < 2 and cur is not None and self.key(cur) not in keys:
            keys.append(self.key(cur))
        if len(keys) < 2:
            self.notify("Mark two runs with space, then press o.", severity="warning")
            return
        rows = [next(r for r in self.rows if self.key(r) == k) for k in keys[:2]]
        self.app.push_screen(OverlayScreen([(r.name, self._ref(r)) for r in rows]))

    def action_copy_path(self) -> None:
        r = self.current()
        d = runsource.run_dir(self._ref(r)) if r is not None else None
        if d is not None:
            copy_path(self, d)

    def action_sweep(self) -> None:
        r = self.current()
        if r is None or r.sweep is None:
            self.notify("Not a sweep's run: w shows the table of the sweep a run belongs to.")
            return
        from engine.sweep import find
        from tui.screens.sweep import SweepScreen

        d = find(r.sweep, self.runs_dir)
        if d is not None:
            self.app.push_screen(SweepScreen(d), lambda _: self.action_refresh())

    def action_stop(self) -> None:
        r = self.current()
        if r is None:
            return
        if r.status not in ("running", "pending", "scheduled"):
            self.notify(f"{r.name} is not running ({OUTCOME_TEXT.get(r.status, r.status)}).")
            return
        self._ask_then("stop", r, f"Stop run {r.name} on {r.host}?", "Stop run")

    def action_delete(self) -> None:
        r = self.current()
        if r is None:
            return
        if r.status in ("running", "pending"):
            self.notify(f"{r.name} is running: stop it before deleting.", severity="warning")
            return
        self._ask_then("delete", r, f"Delete run {r.name} on {r.host}?\n\nIts directory — events, logs, checkpoints "
                       "and the final model — is removed for good.", "Delete")

    def action_resume(self) -> None:
        r = self.current()
        if r is None:
            return
        if r.status in ("running", "pending", "scheduled"):
            self.notify(f"{r.name} is {OUTCOME_TEXT.get(r.status, r.status)}: stop it before resuming.",
                        severity="warning")
            return
        if r.status == "completed":
            self.notify(f"{r.name} completed: nothing to resume (c opens its config as a new job).")
            return
        self._ask_then("resume", r, resume_question(r.name, r.host, runsource.newest_checkpoint(self._ref(r)),
                                                    r.total_steps), "Resume")

    def _ask_then(self, what: str, r: RunRow, question: str, yes: str) -> None:
        """``what`` (stop, delete, resume) on ``r`` once the user says yes."""
        from tui.widgets.confirm import ConfirmScreen

        def answered(ok: bool | None) -> None:
            if ok:
                self._act(what, r)

        self.app.push_screen(ConfirmScreen(question, yes=yes), answered)

    @work(thread=True, group="runs-act", exit_on_error=False)
    def _act(self, what: str, r: RunRow) -> None:
        try:
            if what == "stop":
                res = runsource.stop_run(self._ref(r))
                msg = f"Stop {r.name}: {res}"
            elif what == "resume":
                ref, ck = runsource.resume_run(self._ref(r), self.runs_dir)
                msg = f"Resumed {r.name} from step {ck.get('step')} as {runsource.run_name(ref)}"
                from tui.screens.monitor import MonitorScreen

                self.app.call_from_thread(self.app.push_screen, MonitorScreen(ref, clock=self.clock))
            else:
                runsource.delete_run(self._ref(r))
                msg = f"Deleted {r.name}"
        except Exception as e:  # noqa: BLE001 - said in the screen (a bug with its crash log); the list stays up
            why = one_line(e) if isinstance(e, (FinetuiError, OSError)) else report_crash(e)
            self.app.call_from_thread(self.notify, f"Could not {what} {r.name}: {why}", severity="error", timeout=8)
        else:
            self.app.call_from_thread(self.notify, msg)
        self.app.call_from_thread(self.action_refresh)

    def action_open_config(self) -> None:
        r = self.current()
        if r is None:
            return
        try:
            job = runsource.load_config(self._ref(r))
        except (FinetuiError, OSError) as e:
            self.notify(one_line(e), severity="error", timeout=8)
            return
        open_job = getattr(self.app, "open_job", None)
        set_job = getattr(self.app, "set_job", None)
        if callable(open_job):
            open_job(job)
        elif callable(set_job):
            # the wizard app: load the job as a new, unsaved one and go back to the wizard; unsaved edits
            # of the job there are not dropped silently (asked, as Open and Quit do)
            job.values.pop("launch.run_name", None)

            def go() -> None:
                set_job(job, preset_path=None)
                while len(self.app.screen_stack) > 1:
                    self.app.pop_screen()
                self.app.notify(f"Opened the config of {r.name} as a new job.")

            confirm = getattr(self.app, "confirm_discard", None)
            if getattr(self.app, "dirty", False) and callable(confirm):
                confirm(go)
            else:
                go()
        else:
            self.notify(f"Loaded the config of {r.name}, but this app cannot open jobs.", severity="warning")


class OverlayScreen(QuietScreen, ModalScreen[None]):
    """The loss curves of two runs on one plot."""

    BINDINGS = [Binding("escape,q,o", "close", "Close")]
    COLORS = (("primary", "secondary"), ("warning", "error"))

    def __init__(self, runs: list[tuple[str, Any]]):
        super().__init__()
        self.runs = runs
        self.states: list[RunState] | None = None
        self.comparison: dict[str, Any] | None = None  # engine.compare.compare of the two run directories

    def compose(self) -> ComposeResult:
        from tui.widgets.plot import MetricPlot

        with Vertical(id="overlay-box"):
            yield Static(" vs ".join(n for n, _ in self.runs), id="overlay-title", markup=False)
            yield MetricPlot("loss", id="overlay-plot")
            yield Static("", id="overlay-diff")
            yield Static("train loss (line) and eval loss per run · Esc closes", id="overlay-hint", markup=False)

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="overlay-load", exit_on_error=False)
    def _load(self) -> None:
        states = []
        for name, ref in self.runs:
            st = RunState(name=name)
            try:
                st.update(runsource.read_history(ref))
            except Exception as e:  # noqa: BLE001 - one run's unreadable history is shown on its own, not fatal
                st.error = one_line(e)
            states.append(st)
        self.comparison = None
        dirs = [runsource.run_dir(ref) if ref is not None else None for _, ref in self.runs]
        if all(dirs):
            from engine.compare import compare

            try:
                self.comparison = compare(dirs[0], dirs[1])
            except ValueError as e:
                self.comparison = {"error": str(e)}
        self.app.call_from_thread(self._show, states)

    def _show(self, states: list[RunState]) -> None:
        from tui.widgets.plot import Line, MetricPlot

        self.states = states
        lines = []
        tags = "AB"
        for i, st in enumerate(states):
            tx, ty = st.train_loss.points()
            ex, ey = st.eval_series.points()
            c_train, c_eval = self.COLORS[i % 2]
            lines.append(Line(f"{tags[i]} train", tx, ty, c_train))
            if ex:
                lines.append(Line(f"{tags[i]} eval", ex, ey, c_eval))
        plot = self.query_one("#overlay-plot", MetricPlot)
        desc = "   ".join(f"{tags[i]}: {st.name} ({fmt_num(st.loss, 3)})" for i, st in enumerate(states))
        self.query_one("#overlay-title", Static).update(desc)
        plot.set_lines(lines, title="loss")
        plot.redraw()
        rep = self.comparison
        if rep:
            from rich.text import Text

            from tui.widgets.rundiff import diff_table

            self.query_one("#overlay-diff", Static).update(Text(rep["error"], "red") if "error" in rep
                                                            else diff_table(rep, names=False))
        errs = [f"{st.name}: {st.error}" for st in states if st.error and not st.train_loss.last]
        if errs:
            self.notify("; ".join(errs), severity="error")

    def action_close(self) -> None:
        self.dismiss(None)

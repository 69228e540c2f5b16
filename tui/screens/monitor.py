"""The run dashboard: progress, metric plots, checkpoints and the log of one run.

A thread worker (``@work(thread=True, exclusive=True)``) polls the run's event
source (local file or SSH, via :mod:`tui.runsource`) and posts one
:class:`RunUpdate` per batch; the handler folds the batch into a
:class:`RunState` (bounded series) and updates the text widgets at once.  Plots
are redrawn from the series by a timer at most ``PLOT_HZ`` times a second, so a
run streaming hundreds of events a second costs a few plot builds a second.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from engine.schema import is_local_host
from tui import runsource
from tui.screens.base import QuietScreen
from tui.widgets.keybar import KeyBar
from tui.widgets.metrics import OUTCOME_TEXT, RunState, fmt_duration, fmt_num

PLOT_HZ = 2.0
POLL_ACTIVE = 0.01  # seconds between reads while records are arriving
POLL_IDLE = 0.25  # ... when the run is quiet
POLL_ENDED = 1.0  # ... after its end record (the log may still grow)
SWITCH_INTERVAL = 0.0005  # seconds; see MonitorScreen.on_mount

STATUS_ICON = {
    "pending": "…",
    "running": "▶",
    "completed": "✔",
    "early_stopped": "✔",
    "stopped": "■",
    "failed": "✖",
    "lost": "?",
    "scheduled": "◷",
}


APP_KEYS_SHOWN = ("quit", "app.quit", "help", "app.help", "command_palette", "app.command_palette")


def dashboard_bindings(screen: Screen, bindings: dict) -> dict:
    """The footer of a dashboard screen: its own keys, and of the app's only quit, help and the palette.

    (The wizard's keys stay bound; they are just not listed, so the footer fits 80 columns.)
    """
    app = screen.app
    return {k: b for k, b in bindings.items() if b.node is not app or b.binding.action in APP_KEYS_SHOWN}


def _set(w: Static, text: str, layout: bool = False) -> None:
    """Update a Static only when its text changes; no layout pass for fixed-height lines."""
    if getattr(w, "_shown_text", None) != text:
        w._shown_text = text  # type: ignore[attr-defined]
        w.update(text, layout=layout)


class RunUpdate(Message):
    """A batch of new records and log lines from the tail worker."""

    def __init__(self, records: list[dict[str, Any]], lines: list[str] | None, caught_up: bool):
        super().__init__()
        self.records = records
        self.lines = lines
        self.caught_up = caught_up
        self.read_at = time.time()


class FeedProblem(Message):
    """The source cannot be read, or (``lost``) the run's processes are gone without an end record."""

    def __init__(self, text: str, lost: bool = False):
        super().__init__()
        self.text = text
        self.lost = lost


PREFERENCE_MIN_SPAN = 0.1  # rewards start near zero: a smaller y-span would draw noise as a trend


def preference_lines(st: RunState) -> list[tuple[str, list[Any]]]:
    """The two side plots of a preference (DPO / KTO) or reward run: (title, lines) each — the rewards of the
    chosen and rejected answers with their margin, then the accuracy (chosen rewarded above rejected)."""
    from tui.widgets.plot import Line

    def line(key: str, label: str, color: str) -> list[Any]:
        s = st.extra.get(key)
        if s is None:
            return []
        xs, ys = s.points()
        return [Line(label, xs, ys, color)]

    def last(key: str) -> str:
        s = st.extra.get(key)
        return fmt_num(s.last[1] if s is not None and s.last else None)

    if "rewards_chosen" in st.extra or "rewards_margins" in st.extra:
        rewards = (f"margin {last('rewards_margins')} · chosen {last('rewards_chosen')} · "
                   f"rejected {last('rewards_rejected')}",
                   line("rewards_chosen", "chosen", "success") + line("rewards_rejected", "rejected", "error")
                   + line("rewards_margins", "margin", "primary"))
        acc = (f"accuracy {last('rewards_accuracies')}", line("rewards_accuracies", "", "accent"))
    else:  # a reward model
        rewards = (f"reward {last('mean_reward')} · margin {last('margin')}",
                   line("mean_reward", "mean", "success") + line("margin", "margin", "primary"))
        acc = (f"accuracy {last('accuracy')}", line("accuracy", "", "accent"))
    return [rewards, acc]


#: the batch script's lines about a requeue in worker.log (engine/launch/slurm.py)
REQUEUED_LINE = re.compile(r"^finetui: job \S+ requeued\s*$")
RESTARTED_LINE = re.compile(r"^finetui: job \S+ restarted \(")


def requeue_mark(rec: dict[str, Any], st: RunState) -> str | None:
    """The log pane's mark of a Slurm requeue (the job's ``requeued`` status) and of the resumed start after it."""
    if rec.get("kind") == "status" and rec.get("phase") == "requeued":
        return f"──── ↻ requeued at step {rec.get('step', 0)}: the job waits in Slurm's queue, then resumes ────"
    if rec.get("kind") == "start":
        g = next((g for g in st.gaps if g["to"] == rec.get("t")), None)
        if g is not None:
            return (f"──── ↻ resumed after {fmt_duration(g['to'] - g['from'])} requeued (from the checkpoint at step "
                    f"{g['step']}) ────")
    return None


class MonitorScreen(QuietScreen):
    """Live (or finished) run dashboard.  ``run_ref``: a RunRef, a run directory or a run name."""

    CSS_PATH = "dashboard.tcss"
    BINDINGS = [
        Binding("d", "detach", "Detach"),
        Binding("escape,q", "detach", "Detach", show=False),
        Binding("s", "stop", "Stop run"),
        Binding("slash", "search", "Search log"),
        Binding("l", "toggle_log", "Wide log", show=False),
        Binding("t", "try_model", "Try the model", show=False),  # (said on the end line: the footer fits 80 columns)
        Binding("u", "resume", "Resume", show=False),
        Binding("y", "copy_path", "Copy path", show=False),
    ]

    def __init__(self, run_ref: Any, *, clock: Callable[[], float] = time.time, name: str | None = None,
                 id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.run_ref = runsource.resolve(run_ref)
        self.clock = clock
        self.state = RunState(name=runsource.run_name(self.run_ref))
        self._plots_version = -1
        self._last_plot = 0.0
        self._log_mode: str | None = None  # "file" (worker.log) or "events"
        self.batches = 0
        self.loaded = False  # True once the history available at attach time has been read
        self.stop_requested = False
        self.problem: str | None = None
        self._classes_for: tuple = ()
        self._ckpt_shown: tuple = ()
        self._gpus_shown = -1  # the state's gpu_version last shown

    @property
    def active_bindings(self) -> dict:  # type: ignore[override]
        """The footer follows the run: while it runs, Detach and Stop; once it has ended, Back (no Stop),
        Try the model when it saved one, Resume when it can be resumed."""
        shown = dashboard_bindings(self, super().active_bindings)
        st = self.state
        if not st.finished:
            return shown
        from dataclasses import replace

        out = {}
        for k, ab in shown.items():
            b = ab.binding
            if b.action == "stop":
                continue
            if b.action == "detach" and b.show:
                b = replace(b, description="Back")
            elif b.action == "try_model" and st.status in ("completed", "early_stopped") and st.final_path:
                b = replace(b, show=True)
            elif b.action == "resume" and st.status not in ("completed", "early_stopped") and self._resumable():
                b = replace(b, show=True)
            out[k] = ab._replace(binding=b)
        return out

    _footer_finished = False

    def _footer_follows(self) -> None:
        if self.state.finished != self._footer_finished:
            self._footer_finished = self.state.finished
            self.refresh_bindings()

    # -- layout ----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        from tui.widgets.checkpoints import CheckpointTable
        from tui.widgets.logtail import LogTail
        from tui.widgets.plot import MetricPlot
        from tui.widgets.progress import RunProgress

        yield Static("", id="mon-title", markup=False)
        yield RunProgress(id="mon-progress")
        yield Static("", id="mon-stats", markup=False)
        yield Static("", id="mon-gpus")
        yield Static("", id="mon-end", markup=False)
        with Horizontal(id="mon-plots"):
            yield MetricPlot("loss", id="plot-loss")
            with Vertical(id="mon-side-plots"):
                yield MetricPlot("learning rate", id="plot-lr")
                yield MetricPlot("grad norm", id="plot-grad")
        with Horizontal(id="mon-bottom"):
            with Vertical(id="mon-ckpts"):
                yield Static("Checkpoints", id="ckpt-title")
                yield CheckpointTable(id="ckpt-table")
            yield LogTail(id="mon-log")
        yield KeyBar()

    def on_mount(self) -> None:
        # Plot figures are built on a background thread (pure Python, holding the GIL for
        # 10-30 ms); a short switch interval lets the tail thread and the event loop in
        # promptly meanwhile (event-to-screen p95 halves).  Restored on unmount.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL))
        self._show_text()
        self.set_interval(1.0 / PLOT_HZ, self._tick)
        self._tail()

    # -- the tail worker (a thread: event sources may block on files or SSH) ---
    @work(thread=True, exclusive=True, group="monitor-tail", exit_on_error=False)
    def _tail(self) -> None:
        worker = get_current_worker()
        self._parent_history()
        try:
            feed = runsource.open_feed(self.run_ref)
        except Exception as e:  # unreachable host, missing run
            self.post_message(FeedProblem(f"{runsource.run_name(self.run_ref)}: {e}"))
            return
        loaded = False
        ended = False
        errors = 0
        idle = 0
        while not worker.is_cancelled:
            try:
                recs, lines = feed.read()
                errors = 0
            except Exception as e:
                errors += 1
                if errors in (1, 10) or errors % 60 == 0:
                    self.post_message(FeedProblem(f"reading {runsource.run_name(self.run_ref)}: {e}"))
                time.sleep(min(5.0, 0.5 * errors))
                continue
            if recs or lines or not loaded:
                caught_up = not recs  # an empty read: the history so far is all in
                self.post_message(RunUpdate(recs, lines, caught_up))
                loaded = loaded or caught_up
            if not ended and not recs and runsource.feed_lost(feed):
                ended = True
                self.post_message(FeedProblem("", lost=True))
            if recs:
                idle = 0
                ended = ended or any(r.get("kind") == "end" for r in recs)
                if not loaded:
                    continue  # attaching: read the history as fast as it comes
                time.sleep(POLL_ACTIVE)
            else:
                idle += 1
                time.sleep(POLL_ENDED if ended else min(POLL_IDLE, POLL_ACTIVE * (1.5 ** idle)))

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch)

    resumed_from: tuple[str, int] | None = None  # (the run this one resumed, the step it resumed at)

    def _parent_history(self) -> None:
        """A resumed run: its parent's curves up to the resume point go first (in the tail thread)."""
        kind, parent, step = runsource.run_kind(self.run_ref)
        d = runsource.run_dir(self.run_ref)
        if not parent or step is None or d is None:
            return
        recs = runsource.history_before(parent, step, d.parent)
        self.app.call_from_thread(self._show_parent, parent, step, recs)

    def _show_parent(self, parent: str, step: int, recs: list[dict[str, Any]]) -> None:
        self.resumed_from = (parent, step)
        self.state.history(recs)
        self._show_text()
        self._redraw_plots(force=True)

    def on_run_update(self, msg: RunUpdate) -> None:
        msg.stop()
        self.batches += 1
        st = self.state
        if msg.records:
            st.update(msg.records)
        self._feed_log(msg)
        self._show_text()
        self._footer_follows()
        if msg.caught_up and not self.loaded:
            self.loaded = True
            self._redraw_plots(force=True)
        elif self._last_plot == 0.0 and st.train_loss.last is not None:
            self._redraw_plots(force=True)

    def on_feed_problem(self, msg: FeedProblem) -> None:
        msg.stop()
        if msg.lost:
            if not self.state.finished:
                self.state.status = "lost"
                self.state.version += 1
        else:
            self.problem = msg.text
        self.loaded = True
        self._show_text()
        self._footer_follows()

    def _feed_log(self, msg: RunUpdate) -> None:
        from tui.widgets.logtail import LogTail, event_line

        log = self.query_one("#mon-log", LogTail)
        if self._log_mode is None and (msg.lines or msg.records):
            self._log_mode = "file" if msg.lines else "events"
        first = not self.loaded
        if self._log_mode == "file":
            if msg.lines:
                log.add_lines(self._requeue_marks(msg.lines), now=first)
        elif self._log_mode == "events" and msg.records:
            lines = []
            for r in msg.records:
                if r.get("kind") == "log" and r.get("step", 0) % 10:
                    continue  # every 10th training log line is enough without a worker.log
                ln = requeue_mark(r, self.state) or event_line(r)
                if ln:
                    lines.append(ln)
            log.add_lines(lines, now=first)

    _requeues_seen = 0
    _restarts_seen = 0

    def _requeue_marks(self, lines: list[str]) -> list[str]:
        """worker.log's lines with a mark after the batch script's ``job N requeued`` and before its ``job N
        restarted`` (a Slurm requeue: where the run stopped and where it went on)."""
        if not any(ln.startswith("finetui: job ") for ln in lines):
            return lines
        gaps = self.state.gaps
        out = []
        for ln in lines:
            if RESTARTED_LINE.match(ln):
                g = gaps[self._restarts_seen] if self._restarts_seen < len(gaps) else None
                self._restarts_seen += 1
                out.append(requeue_mark({"kind": "start", "t": g["to"]}, self.state) if g and g["to"] is not None
                           else "──── ↻ the requeued job starts again ────")
            out.append(ln)
            if REQUEUED_LINE.match(ln):
                g = gaps[self._requeues_seen] if self._requeues_seen < len(gaps) else None
                self._requeues_seen += 1
                out.append(requeue_mark({"kind": "status", "phase": "requeued", "step": g["step"] if g else "?"},
                                        self.state) or "")
        return out

    # -- drawing ---------------------------------------------------------------
    def _tick(self) -> None:
        self._show_text(clock_only=True)
        self._redraw_plots()

    def _show_text(self, clock_only: bool = False) -> None:
        from tui.widgets.progress import RunProgress, stats_text

        st = self.state
        now = self.clock()
        self.query_one("#mon-progress", RunProgress).show(st, now)
        if clock_only:
            return
        status = st.status
        icon = STATUS_ICON.get(status, "•")
        label = OUTCOME_TEXT.get(status, status)
        host = runsource.run_host(self.run_ref)
        extra = []
        if st.method or st.model:
            extra.append(" ".join(x for x in (st.method, st.model) if x))
        if st.world_size > 1:
            extra.append(f"{st.world_size} ranks")
        title = self.query_one("#mon-title", Static)
        more = f"  ({', '.join(extra)})" if extra else ""
        if self.resumed_from is not None:  # (what it trains is its parent's: the link says more)
            more = f"  ↻ resumed from {self.resumed_from[0]} at step {self.resumed_from[1]}"
        _set(title, f"{icon} {label}  {st.name}" + (f" @ {host}" if not is_local_host(host) else "") + more)
        _set(self.query_one("#mon-stats", Static), stats_text(st))
        if st.gpu_version != self._gpus_shown:  # GPU telemetry (engine/telemetry.py) once the first sample is in
            from tui.widgets.gpupanel import gpu_panel

            self._gpus_shown = st.gpu_version
            panel = gpu_panel(st)
            gw = self.query_one("#mon-gpus", Static)
            gw.display = panel is not None
            gw.update(panel or "")
        end = self.query_one("#mon-end", Static)
        msg = self._end_text()
        _set(end, msg or "", layout=True)
        end_class = status if not self.problem or st.finished else "problem"
        if (status, end_class, bool(msg)) != self._classes_for:
            self._classes_for = (status, end_class, bool(msg))
            for s in STATUS_ICON:
                title.set_class(s == status, f"-{s}")
            for s in ("completed", "early_stopped", "stopped", "failed", "lost", "problem"):
                end.set_class(s == end_class, f"-{s}")
            end.display = bool(msg)
        ck = (st.ckpt_version, len(st.eval_series) if st.ckpt_version else 0)
        if st.ckpt_version and ck != self._ckpt_shown:
            from tui.widgets.checkpoints import CheckpointTable

            self._ckpt_shown = ck
            self.query_one("#ckpt-table", CheckpointTable).show(st.checkpoint_rows())

    def _end_text(self) -> str:
        st = self.state
        took = fmt_duration(st.elapsed(self.clock()))
        if st.gaps and st.finished:
            from tui.widgets.progress import requeue_text

            took += f"; {requeue_text(st, self.clock())}"
        if st.status in ("completed", "early_stopped"):
            what = "Completed" if st.status == "completed" else "Stopped early (no more improvement)"
            final = f" · final model: {st.final_path}" if st.final_path else ""
            tryit = " · t: try it" if st.final_path and not runsource.is_remote(self.run_ref) else ""
            return f"✔ {what} at step {st.step} in {took}{final}{tryit}"
        resume = " · u: resume from the last checkpoint" if self._resumable() else ""
        if st.status == "stopped":
            return f"■ Stopped at step {st.step} after {took}{resume}"
        if st.status == "failed":
            why = st.error or st.error_tail or "see the log"
            return f"✖ Failed at step {st.step}: {why}{resume}"
        if st.status == "lost":
            return f"? Lost: the run's processes are gone without an end record{resume}"
        if self.problem:
            return f"! {self.problem}"
        if self.stop_requested:
            return "■ Stopping… (the run saves and exits)"
        return ""

    def _redraw_plots(self, force: bool = False) -> None:
        st = self.state
        if st.version == self._plots_version and not force:
            return
        now = time.monotonic()
        if not force and now - self._last_plot < 1.0 / PLOT_HZ * 0.9:
            return
        from tui.widgets.plot import Line, MetricPlot

        self._plots_version = st.version
        self._last_plot = now
        loss = self.query_one("#plot-loss", MetricPlot)
        tx, ty = st.train_loss.points()
        ex, ey = st.eval_series.points()
        title = f"loss {fmt_num(st.loss)}" + (f" · eval {fmt_num(st.eval_loss)}" if st.eval_loss is not None else "")
        if st.gaps:  # (the plots mark the step; the title says what the mark is)
            title += f" · ↻ requeued at step {', '.join(str(g['step']) for g in st.gaps)}"
        loss.set_lines([Line("train", tx, ty, "primary"), Line("eval", ex, ey, "warning")], title=title)
        lr = self.query_one("#plot-lr", MetricPlot)
        gn = self.query_one("#plot-grad", MetricPlot)
        if st.extra:  # DPO / KTO / reward: their own metrics beside the loss
            side = preference_lines(st)
            lr.set_lines(side[0][1], title=side[0][0])
            gn.set_lines(side[1][1], title=side[1][0])
            lr.min_abs, gn.ylim = PREFERENCE_MIN_SPAN, (0.0, 1.0)
        else:
            lx, ly = st.lr_series.points()
            lr.set_lines([Line("", lx, ly, "success")], title=f"learning rate {fmt_num(st.lr)}")
            gx, gy = st.grad_series.points()
            gn.set_lines([Line("", gx, gy, "accent")], title=f"grad norm {fmt_num(st.grad_norm)}")
        # one x-range for every plot: from the first point drawn to the step reached
        firsts = [ln.xs[0] for p in (loss, lr, gn) for ln in p.lines if len(ln.xs)]
        lasts = [ln.xs[-1] for p in (loss, lr, gn) for ln in p.lines if len(ln.xs)]
        xlim = (min(firsts), max([*lasts, float(st.step)])) if firsts else None
        marks = [(float(g["step"]), "warning") for g in st.gaps]  # where a Slurm requeue stopped the run
        for p in (loss, lr, gn):
            p.xlim = xlim
            p.vlines = marks
        loss.redraw()
        # the side plots change slowly: half the rate of the loss plot
        self._side_turn = not getattr(self, "_side_turn", False)
        if force or self._side_turn or st.finished:
            lr.redraw()
            gn.redraw()

    # -- actions ---------------------------------------------------------------
    def action_detach(self) -> None:
        """Leave the dashboard; the run goes on."""
        from tui.widgets.logtail import LogTail

        log = self.query_one("#mon-log", LogTail)
        if log.has_class("-searching") and self.focused is not None and self.focused.id == "log-search":
            log.close_search()
            return
        self.workers.cancel_group(self, "monitor-tail")
        if len(self.app.screen_stack) > 1:
            self.dismiss(None)
        else:
            self.app.exit()

    def action_search(self) -> None:
        from tui.widgets.logtail import LogTail

        self.query_one("#mon-log", LogTail).open_search()

    def action_toggle_log(self) -> None:
        self.toggle_class("-log-wide")

    def action_stop(self) -> None:
        st = self.state
        if st.finished:
            self.notify(f"The run has already ended ({OUTCOME_TEXT.get(st.status, st.status)}).")
            return
        from tui.widgets.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.stop_requested = True
                self._show_text()
                self._stop_worker()

        self.app.push_screen(
            ConfirmScreen(f"Stop run {st.name}?\n\nIt saves a checkpoint if it can and exits; "
                          "the run directory is kept.", yes="Stop run"),
            answered,
        )

    def _resumable(self) -> bool:
        return any(c.get("complete", True) for c in self.state.checkpoints)

    def action_try_model(self) -> None:
        st = self.state
        if st.status not in ("completed", "early_stopped") or not st.final_path:
            self.notify("The model can be tried once the run has finished and saved it.")
            return
        if runsource.is_remote(self.run_ref):
            self.notify(f"The model is on {runsource.run_host(self.run_ref)}: try it there with "
                        f"finetui generate {st.name} --prompt …", timeout=8)
            return
        from tui.screens.try_model import TryScreen

        self.app.push_screen(TryScreen(runsource.run_dir(self.run_ref), st.name))

    def action_copy_path(self) -> None:
        from tui.keys import copy_path

        d = runsource.run_dir(self.run_ref)
        if d is not None:
            copy_path(self, d)

    def action_resume(self) -> None:
        st = self.state
        if not st.finished or st.status in ("completed", "early_stopped") or not self._resumable():
            self.notify("Resume is for a stopped, failed or lost run with a complete checkpoint.")
            return
        from tui.widgets.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._resume_worker()

        from tui.screens.runs import resume_question

        ck = next((c for c in reversed(st.checkpoints) if c.get("complete", True) and c.get("path")), None)
        self.app.push_screen(ConfirmScreen(resume_question(st.name, runsource.run_host(self.run_ref), ck,
                                                           st.total_steps), yes="Resume", danger=False), answered)

    @work(thread=True, exclusive=True, group="monitor-resume", exit_on_error=False)
    def _resume_worker(self) -> None:
        try:
            ref, ck = runsource.resume_run(self.run_ref)
        except Exception as e:
            self.app.call_from_thread(self.notify, f"Could not resume: {e}", severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, f"Resumed from step {ck.get('step')} as {runsource.run_name(ref)}")
        self.app.call_from_thread(self.app.switch_screen, MonitorScreen(ref, clock=self.clock))

    @work(thread=True, exclusive=True, group="monitor-stop", exit_on_error=False)
    def _stop_worker(self) -> None:
        try:
            result = runsource.stop_run(self.run_ref)
        except Exception as e:
            self.app.call_from_thread(self.notify, f"Could not stop the run: {e}", severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, f"Stop: {result}")

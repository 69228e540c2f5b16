"""A sweep on the runs screen: its trials grouped together (the best one marked) and, on ``w``, the table
of swept values against the objective (the rows of ``finetui sweep show``, from engine.sweep.table).

No torch: engine.sweep reads ``sweep.json`` files only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.screens.base import QuietScreen

BEST = "★"


def group_sweeps(rows: list[Any], runs_dir: str | Path) -> list[Any]:
    """Mark each row that is a sweep's trial (``sweep``, ``trial``, ``best``) and put a sweep's trials together,
    in trial order, where its newest trial stands; other rows keep their order."""
    from engine import sweep as S

    try:
        trials = S.trial_runs(runs_dir)
    except OSError:
        return rows
    if not trials:
        return rows
    groups: dict[str, list[Any]] = {}
    for r in rows:
        hit = trials.get(r.name) if r.host in ("", "local") or r.ref is not None else None
        if hit is not None:
            r.sweep, r.trial, r.best = hit
            groups.setdefault(r.sweep, []).append(r)
    out: list[Any] = []
    placed: set[str] = set()
    for r in rows:
        if r.sweep is None:
            out.append(r)
        elif r.sweep not in placed:
            placed.add(r.sweep)
            out += sorted(groups[r.sweep], key=lambda x: x.trial or 0)
    return out


def name_cell(r: Any, first: bool, last: bool) -> str:
    """A trial's name in the runs table: a bracket joining the sweep's rows, the best one starred."""
    glyph = "┌" if first and not last else "└" if last and not first else "─" if first and last else "├"
    return f"{glyph}{BEST if r.best else ' '}{r.name}"


class SweepScreen(QuietScreen, ModalScreen[None]):
    """One sweep: status, objective, and its trials' swept values against the objective (best marked)."""

    BINDINGS = [Binding("escape,q,w", "close", "Close"), Binding("s", "stop", "Stop sweep")]

    def __init__(self, sweep_dir: Path):
        super().__init__()
        self.sweep_dir = Path(sweep_dir)
        self.rec: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="sweep-box"):
            yield Static(f"sweep {self.sweep_dir.name}", id="sweep-title", markup=False)
            yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
            yield Static(f"{BEST} best trial · s stops the sweep (its running trial, and no more) · Esc closes",
                         id="sweep-hint", markup=False)

    def on_mount(self) -> None:
        self.refresh_table()

    def refresh_table(self) -> None:
        from engine import sweep as S

        self.rec = S.read(self.sweep_dir)
        head, rows = S.table(self.rec)
        b = S.best(self.rec)
        t = self.query_one("#sweep-table", DataTable)
        t.clear(columns=True)
        keep = [i for i, h in enumerate(head) if h != "run"]  # (a trial's run is <sweep>-tNN: the title names it)
        for i in keep:
            t.add_column(head[i], key=f"c{i}")
        for row in rows:
            t.add_row(*[(BEST if row[0] else "") if i == 0 else row[i] for i in keep], key=row[1])
        n = len(rows)
        done = sum(1 for x in self.rec.get("trials", []) if x.get("status") in S.TRIAL_DONE)
        self.query_one("#sweep-title", Static).update(
            f"sweep {self.sweep_dir.name} — {S.status(self.rec)}, {done}/{n} trials done · "
            f"{self.rec.get('goal', 'minimize')} {self.rec.get('objective', 'eval_loss')}"
            + (f" · best: trial {b}" if b else ""))

    def action_stop(self) -> None:
        from engine import sweep as S

        if S.status(self.rec) != "running":
            self.notify(f"sweep {self.sweep_dir.name} is {S.status(self.rec)}.")
            return
        from tui.widgets.confirm import ConfirmScreen

        def answered(ok: bool | None) -> None:
            if ok:
                self._stop()

        self.app.push_screen(ConfirmScreen(f"Stop sweep {self.sweep_dir.name}?\n\nIts running trial is stopped and "
                                           "no further trial starts.", yes="Stop sweep"), answered)

    @work(thread=True, group="sweep-stop", exit_on_error=False)
    def _stop(self) -> None:
        from engine import sweep as S

        try:
            st = S.stop(self.sweep_dir)
        except Exception as e:  # noqa: BLE001 - said in a notification
            self.app.call_from_thread(self.notify, f"Could not stop the sweep: {e}", severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, f"Sweep {self.sweep_dir.name}: {st}")
        self.app.call_from_thread(self.refresh_table)

    def action_close(self) -> None:
        self.dismiss(None)


def launch_sweep(app: Any) -> None:
    """Start the app's job's ``[sweep]`` (Launch sweep in the palette): the base job and every trial are checked
    first (the first problem said, nothing started), then the driver starts detached in a thread and the runs
    screen opens, where the trials appear as they start."""
    from engine import sweep as S
    from tui import state

    job = app.job
    if not job.sweep:
        app.notify("This job has no [sweep] table. Add one in the TOML view (Ctrl+T), e.g. [sweep.parameters] "
                   "\"general.learning_rate\" = [1e-4, 1e-3]", title="No sweep", severity="warning", timeout=8)
        return
    probs = [str(p) for p in job.problems()] or S.trial_problems(job)
    if probs:
        app.notify(probs[0], title=f"Cannot start the sweep: {len(probs)} to fix", severity="error", timeout=8)
        return
    n = len(S.trials(job))
    runs_dir = state.runs_dir(job)

    def start() -> None:
        try:
            d = S.start(job.copy(), runs_dir=runs_dir)
        except Exception as e:  # noqa: BLE001 - said in a notification
            app.call_from_thread(app.notify, str(e).splitlines()[0], title="The sweep did not start",
                                 severity="error", timeout=8)
            return
        array = S.read(d).get("slurm_array")
        how = f"Slurm job array {array}" if array else "one after another"
        app.call_from_thread(app.notify, f"Started sweep {d.name}: {n} trials, {how}. It goes on when "
                                         f"you close finetui; w on a trial shows the sweep.", timeout=8)
        app.call_from_thread(app.action_runs)

    app.run_worker(start, thread=True, group="sweep-start", exit_on_error=False)

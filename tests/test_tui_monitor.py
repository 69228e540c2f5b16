"""The run dashboard (MonitorScreen): history on attach, live updates, stop, detach, search; snapshots."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.events import summarize

from tests.fake_run import (T0, FakeRunWriter, click_when_shown, fake_records, harness_app, plots_settled, wait_for,
                            write_fake_run)
from tui import runsource
from tui.screens.monitor import MonitorScreen
from tui.widgets.metrics import RunState, Series

FIXED_NOW = T0 + 200.0


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "ft_tiny-llama_20261118-101320"
    write_fake_run(d, steps=80)
    return d


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "ft_tiny-llama_20261118-111320"
    write_fake_run(d, steps=120, outcome="failed", end_at=42, t0=T0 + 3600, seed=1)
    return d


@pytest.fixture
def live_writer(tmp_path: Path):
    writers: list[FakeRunWriter] = []

    def make(**kw) -> FakeRunWriter:
        d = tmp_path / "runs" / f"ft_live_{len(writers)}"
        w = FakeRunWriter(d, **kw)
        writers.append(w)
        return w

    yield make
    for w in writers:
        w.close()


# -- the model behind the widgets -------------------------------------------------


def test_series_keeps_whole_history_in_bounded_memory():
    s = Series(cap=64)
    for i in range(10_000):
        s.append(float(i), float(i % 7))
    assert len(s) < 64
    xs, _ = s.points()
    assert xs[0] == 0.0 and xs[-1] == 9999.0  # first and latest points survive decimation
    xs2, _ = s.points(max_points=10)
    assert len(xs2) <= 11 and xs2[-1] == 9999.0


def test_run_state_from_records():
    st = RunState()
    st.update(fake_records(steps=80))
    assert st.status == "completed" and st.step == 80 and st.total_steps == 80
    assert len(st.train_loss) == 80 and len(st.eval_series) == 8
    assert st.rows_dropped == 3 and st.world_size == 2
    rows = st.checkpoint_rows()
    assert [r["step"] for r in rows] == [20, 40, 60, 80]
    assert sum(r["_best"] for r in rows) == 1
    assert st.elapsed(T0 + 10_000) == pytest.approx(st.ended - st.started)
    assert st.eta(T0) is None  # finished
    # the runs list's duration (engine.events.summarize) is the dashboard's elapsed: from the first
    # record (loading data), not from the training loop's start
    recs = [{"t": T0 - 30, "kind": "status", "step": 0, "phase": "loading data"}, *fake_records(steps=80)]
    st2, summary = RunState(), summarize(recs)
    st2.update(recs)
    assert summary.started == st2.started == T0 - 30
    assert summary.ended - summary.started == pytest.approx(st2.elapsed(T0 + 10_000))


def test_run_state_failed_and_eta():
    st = RunState()
    st.update(fake_records(steps=120, outcome="failed", end_at=42))
    assert st.status == "failed" and st.error.startswith("CUDA out of memory")
    live = RunState()
    live.update(fake_records(steps=100, end=False, end_at=50, dt=2.0))
    assert live.status == "running"
    assert live.eta(0) == pytest.approx(50 * 2.0, rel=0.05)


# -- Pilot ----------------------------------------------------------------------------


async def test_attach_to_finished_run_shows_whole_history_and_end_state(finished_run):
    app = harness_app(lambda: MonitorScreen(finished_run, clock=lambda: FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        assert isinstance(scr, MonitorScreen)
        await wait_for(pilot, lambda: scr.loaded)
        await pilot.pause()
        st = scr.state
        assert st.status == "completed" and st.step == 80
        xs, _ = st.train_loss.points()
        assert xs[0] == 1 and xs[-1] == 80 and len(xs) == 80  # the full curve
        loss_plot = scr.query_one("#plot-loss")
        assert loss_plot.draws >= 1 and loss_plot.lines[0].xs[-1] == 80
        await wait_for(pilot, lambda: plots_settled(scr))
        assert loss_plot.builds >= 1
        end = scr.query_one("#mon-end")
        assert end.display and "Completed at step 80" in str(end.render())
        assert "step 80/80" in str(scr.query_one("#run-steps").render())
        assert scr.query_one("#ckpt-table").row_count == 4
        assert scr.query_one("#mon-log").total > 80  # worker.log lines


async def test_failed_run_shows_the_error_line(failed_run):
    app = harness_app(lambda: MonitorScreen(failed_run, clock=lambda: FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        text = str(scr.query_one("#mon-end").render())
        assert "Failed at step 42" in text and "CUDA out of memory" in text
        assert scr.query_one("#mon-end").has_class("-failed")


async def test_events_become_log_lines_without_worker_log(tmp_path):
    d = tmp_path / "runs" / "nolog"
    write_fake_run(d, steps=40, log=False)
    app = harness_app(lambda: MonitorScreen(d, clock=lambda: FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        log = scr.query_one("#mon-log")
        assert any("end: completed" in ln for ln in log.lines)
        assert any("checkpoint" in ln for ln in log.lines)


async def test_live_run_updates_progress_and_plots_at_bounded_rate(live_writer):
    w = live_writer(rate=200, steps=5000)
    w.start()
    await_start = time.monotonic()
    while not w.written and time.monotonic() - await_start < 5:
        time.sleep(0.01)
    app = harness_app(lambda: MonitorScreen(w.run_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded and scr.state.step > 0)
        plot = scr.query_one("#plot-loss")
        step0, draws0, t0 = scr.state.step, plot.draws, time.monotonic()
        label0 = str(scr.query_one("#run-steps").render())
        await pilot.pause(1.2)
        dt = time.monotonic() - t0
        assert scr.state.status == "running"
        assert scr.state.step > step0 + 50  # ~200 records/s streamed in
        assert str(scr.query_one("#run-steps").render()) != label0
        draws = plot.draws - draws0
        assert 1 <= draws <= 4.0 * dt + 2  # plots redrawn at most ~4 Hz
        assert plot.lines[0].xs[-1] > step0
        # the process stayed responsive: a key press is handled at once
        await pilot.press("slash")
        assert scr.query_one("#mon-log").has_class("-searching")


async def test_stop_asks_for_confirmation_then_stops(live_writer, monkeypatch):
    from tui.widgets.confirm import ConfirmScreen

    w = live_writer(rate=10, steps=100_000, guard=True)
    w.start()
    calls = []
    real_stop = runsource.stop_run

    def spy(ref, grace=15.0):
        calls.append(ref)
        return real_stop(ref, grace=grace)

    monkeypatch.setattr(runsource, "stop_run", spy)
    app = harness_app(lambda: MonitorScreen(w.run_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded and scr.state.status == "running")
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # cancel: nothing happens
        assert app.screen is scr and not calls
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await click_when_shown(pilot, "#confirm-yes")
        await wait_for(pilot, lambda: scr.state.status == "stopped", timeout=20)
        assert len(calls) == 1
        assert "Stopped at step" in str(scr.query_one("#mon-end").render())
    w.join(5)  # the writer notices its process group is gone at its next record (10 a second)
    assert w.killed or not w.is_alive()


async def test_detach_leaves_the_run_going(live_writer):
    w = live_writer(rate=20, steps=100_000)
    w.start()
    app = harness_app(lambda: MonitorScreen(w.run_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded and scr.state.step > 0)
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(app.screen, MonitorScreen)
        n = w.count
        await pilot.pause(0.2)
        assert w.is_alive() and w.count > n


async def test_log_search_filters_and_clears(finished_run):
    app = harness_app(lambda: MonitorScreen(finished_run, clock=lambda: FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        log = scr.query_one("#mon-log")
        await pilot.press("slash")
        await pilot.press(*"saved")
        await pilot.pause()
        assert log.term == "saved" and log.matches() == 4
        assert "4 lines match" in str(scr.query_one("#log-title").render())
        await pilot.press("escape")  # clears the search, stays on the dashboard
        assert log.term == "" and app.screen is scr


async def test_missing_run_says_so(tmp_path):
    app = harness_app(lambda: MonitorScreen(runsource.resolve(tmp_path / "nope")))
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        assert scr.problem == f"nope: no run directory at {tmp_path / 'nope'}"
        assert str(scr.query_one("#mon-end").render()) == f"! {scr.problem}"
        assert scr.state.status == "pending"  # nothing is made up: no step, no outcome


# -- snapshots (fixed clock, fixed run data) ----------------------------------------------


def _mon_snapshot_app(run_dir: Path, theme: str | None = None):
    return harness_app(lambda: MonitorScreen(run_dir, clock=lambda: FIXED_NOW), theme=theme)


async def _loaded(pilot):
    scr = pilot.app.screen
    await wait_for(pilot, lambda: getattr(scr, "loaded", False))
    await pilot.pause()
    await wait_for(pilot, lambda: plots_settled(scr))
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_monitor_completed(snap_compare, finished_run, utc, size):
    assert snap_compare(_mon_snapshot_app(finished_run), terminal_size=size, run_before=_loaded)


def test_snapshot_monitor_failed_light(snap_compare, failed_run, utc):
    assert snap_compare(_mon_snapshot_app(failed_run, theme="textual-light"), terminal_size=(80, 24),
                        run_before=_loaded)


def test_snapshot_monitor_running(snap_compare, tmp_path, utc):
    d = tmp_path / "runs" / "ft_tiny-llama_20261118-101320"
    write_fake_run(d, steps=200, end=False, end_at=90)
    # a live run, half-way: fixed clock 10 s after its last record
    now = json.loads((d / "events.jsonl").read_text().splitlines()[-1])["t"] + 10

    app = harness_app(lambda: MonitorScreen(d, clock=lambda: now))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_loaded)


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_fits_80x24_without_horizontal_scrolling(finished_run, theme):
    from textual.widget import Widget

    app = harness_app(lambda: MonitorScreen(finished_run, clock=lambda: FIXED_NOW), theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded and plots_settled(scr))
        await pilot.pause()
        assert scr.max_scroll_x == 0 and scr.max_scroll_y == 0
        for w in scr.query(Widget):
            assert not w.show_horizontal_scrollbar, f"{w!r} scrolls horizontally"
            assert w.region.right <= 80


async def test_log_follows_the_end_through_the_runs_end_until_scrolled_up(live_writer):
    from tui.widgets.logtail import LogView

    w = live_writer(rate=40, steps=120, log=True)
    w.start()
    app = harness_app(lambda: MonitorScreen(w.run_dir))
    async with app.run_test(size=(110, 32)) as pilot:
        scr = app.screen
        view = scr.query_one("#log-view", LogView)
        # the run ends: its end line takes a row from the log, which still shows the last line
        await wait_for(pilot, lambda: scr.state.finished, timeout=20)
        await pilot.pause(0.8)
        assert view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y
        last = (w.run_dir / "worker.log").read_text().splitlines()[-1].rstrip()
        assert view.lines[-1].text.strip() and last.endswith(view.lines[-1].text.strip())
        # scrolled up by the user: new lines do not move it
        view.scroll_to(y=0, animate=False)
        await pilot.pause()
        assert not view.following
        scr.query_one("#mon-log").add_lines([f"late line {i}" for i in range(20)], now=True)
        await pilot.pause(0.3)
        assert view.scroll_y == 0
        # back at the end: it follows again
        view.scroll_end(animate=False)
        await pilot.pause()
        assert view.following
        scr.query_one("#mon-log").add_lines(["the very last line"], now=True)
        await pilot.pause(0.3)
        assert view.scroll_y == view.max_scroll_y and "the very last line" in view.lines[-1].text


async def test_u_resumes_a_failed_run_and_watches_the_new_one(failed_run, finished_run, monkeypatch):
    asked = []

    def resume_run(ref, runs_dir="runs"):
        asked.append(runsource.run_name(ref))
        return runsource.resolve(finished_run), {"step": 40, "path": "checkpoint-40"}

    monkeypatch.setattr(runsource, "resume_run", resume_run)
    app = harness_app(lambda: MonitorScreen(failed_run))
    async with app.run_test(size=(100, 30)) as pilot:
        mon = app.screen
        await wait_for(pilot, lambda: mon.loaded)
        assert mon._end_text().endswith(" · u: resume from the last checkpoint")
        await pilot.press("t")  # nothing to try: it failed
        assert app.screen is mon
        await pilot.press("u")
        await click_when_shown(pilot, "#confirm-yes")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen is not mon)
        assert asked == [failed_run.name] and app.screen.run_ref.run_dir == finished_run.resolve()
        new = app.screen
        await wait_for(pilot, lambda: new.loaded)
        await pilot.press("u")  # a completed run: nothing to resume, nothing asked
        await pilot.pause()
        assert app.screen is new and asked == [failed_run.name]


def requeued_run(d: Path, steps: int = 80, at: int = 40, wait: float = 130.0) -> Path:
    """A Slurm run requeued at step ``at`` (SIGUSR1: checkpoint, ``preempted``, ``requeued``), started again
    ``wait`` seconds later from that checkpoint, then completed."""
    from tests.fake_run import _prepare, log_line

    _prepare(d, slurm_job_id="42")
    recs, shift = [], 0.0
    for r in fake_records(steps=steps, ckpt_every=at):
        r = {**r, "t": r["t"] + shift}
        recs.append(r)
        if r["kind"] == "checkpoint" and r["step"] == at:
            t = r["t"]
            recs += [{"t": t + 0.1, "kind": "status", "step": at, "phase": "preempted",
                      "text": "SIGUSR1: stopped at a checkpoint; the job is requeued and resumes from it"},
                     {"t": t + 1.0, "kind": "status", "step": at, "phase": "requeued", "by": "launcher",
                      "text": "SIGUSR1: checkpoint saved, job 42 requeued"},
                     {"t": t + 0.1 + wait, "kind": "start", "step": at, "world_size": 2, "total_steps": steps},
                     {"t": t + 0.2 + wait, "kind": "status", "step": at, "phase": "resuming",
                      "checkpoint": r["path"]}]
            shift = wait + 0.5
    with open(d / "events.jsonl", "w") as fe, open(d / "worker.log", "w") as fl:
        for r in recs:
            fe.write(json.dumps(r) + "\n")
            if r["kind"] == "start" and r["step"]:  # (the batch script's lines: engine/launch/slurm.py)
                fl.write("finetui: job 42 restarted (1): resuming from the newest complete checkpoint\n")
            fl.write(log_line(r) + "\n")
            if r.get("phase") == "requeued":
                fl.write("finetui: job 42 requeued\n")
    return d


def test_a_requeue_is_a_gap_of_the_run_state():
    st = RunState()
    st.update(fake_records(steps=20, end=False))
    st.update([{"t": T0 + 100, "kind": "status", "step": 20, "phase": "preempted"},
               {"t": T0 + 101, "kind": "status", "step": 20, "phase": "requeued"}])
    assert st.gaps == [{"step": 20, "from": T0 + 100, "to": None}]
    assert st.lost_s(T0 + 160) == 60  # still waiting in the queue
    st.update([{"t": T0 + 190, "kind": "start", "step": 20, "total_steps": 40},
               {"t": T0 + 192, "kind": "log", "step": 21, "loss": 1.0},
               {"t": T0 + 194, "kind": "log", "step": 22, "loss": 1.0}])
    assert st.gaps[0]["to"] == T0 + 190 and st.lost_s(T0 + 500) == 90
    assert st.eta(T0 + 194) == pytest.approx(18 * 2.0)  # the resumed pace, not the wait


async def test_the_dashboard_marks_a_slurm_requeue_and_the_time_it_lost(tmp_path):
    d = requeued_run(tmp_path / "runs" / "ft_slurm_requeued")
    app = harness_app(lambda: MonitorScreen(d, clock=lambda: FIXED_NOW + 400))
    async with app.run_test(size=(120, 40)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        st = scr.state
        assert st.status == "completed" and [g["step"] for g in st.gaps] == [40]
        assert "↻ requeued at step 40: 2:10 lost" in str(scr.query_one("#run-steps").render())
        assert "↻ requeued at step 40: 2:10 lost" in str(scr.query_one("#mon-end").render())
        for pid in ("#plot-loss", "#plot-lr", "#plot-grad"):
            assert scr.query_one(pid).vlines == [(40.0, "warning")]
        assert "↻ requeued at step 40" in scr.query_one("#plot-loss").plot_title
        log = scr.query_one("#mon-log")
        i = log.lines.index("finetui: job 42 requeued")  # the marks where worker.log says it
        j = next(k for k, ln in enumerate(log.lines) if ln.startswith("finetui: job 42 restarted"))
        assert log.lines[i + 1].startswith("──── ↻ requeued at step 40") and i < j
        assert log.lines[j - 1] == "──── ↻ resumed after 2:10 requeued (from the checkpoint at step 40) ────"
    (d / "worker.log").unlink()  # without a worker.log the events are the log: the same marks
    app = harness_app(lambda: MonitorScreen(d, clock=lambda: FIXED_NOW + 400))
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot)
        marks = [ln for ln in app.screen.query_one("#mon-log").lines if "↻" in ln]
        assert marks[0].startswith("──── ↻ requeued at step 40") and "resumed after 2:10" in marks[1]


def test_snapshot_monitor_requeued(snap_compare, tmp_path, utc):
    d = requeued_run(tmp_path / "runs" / "ft_slurm_requeued")
    assert snap_compare(harness_app(lambda: MonitorScreen(d, clock=lambda: FIXED_NOW + 400)),
                        terminal_size=(120, 40), run_before=_loaded)


async def test_preparing_data_has_the_bar_until_the_first_step(tmp_path):
    """Before the first step the run's bar follows a phase that says how far it is (the first pass reading the
    rows, tokenizing): `preparing data 34%`, its rows/s and time left in the stats line; then the steps again."""
    from textual.widgets import ProgressBar

    from tests.fake_run import _prepare

    d = tmp_path / "runs" / "ft_preparing"
    _prepare(d)
    text = "tokenizing: 3,400 / 10,000 rows · 1,700 rows/s · about 4 s left"
    recs = [{"t": T0, "kind": "status", "step": 0, "phase": "loading model"},
            {"t": T0 + 1, "kind": "status", "step": 0, "phase": "preparing data", "text": text, "fraction": 0.34}]
    (d / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    app = harness_app(lambda: MonitorScreen(d, clock=lambda: T0 + 5))
    async with app.run_test(size=(120, 40)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: getattr(scr, "loaded", False))
        await wait_for(pilot, lambda: "preparing data 34%" in str(scr.query_one("#run-steps").render()))
        bar = scr.query_one("#run-bar", ProgressBar)
        assert bar.total == 1000 and bar.progress == 340
        assert text in str(scr.query_one("#mon-stats").render())
        st = scr.state
        st.update([{"t": T0 + 6, "kind": "start", "step": 0, "total_steps": 40},
                   {"t": T0 + 8, "kind": "log", "step": 1, "loss": 2.0}])
        scr.query_one("#mon-progress").show(st, T0 + 9)
        await pilot.pause()
        assert "step 1/40" in str(scr.query_one("#run-steps").render()) and bar.total == 40 and bar.progress == 1

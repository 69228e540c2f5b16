"""The runs screen: statuses, attach, stop/delete behind a confirmation, config → new job, overlay; snapshots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.schema import JobConfig
from tests.fake_run import T0, FakeRunWriter, click_when_shown, harness_app, plots_settled, wait_for, write_fake_run
from tui import runsource, state
from tui.screens.monitor import MonitorScreen
from tui.screens.runs import OverlayScreen, RunsScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import widget_id
from tui.widgets.step import StepBar

NAMES = {
    "completed": "ft_tiny-llama_20261118-101320",
    "failed": "ft_tiny-llama_20261118-111320",
    "stopped": "ft_tiny-llama_20261118-121320",
    "early_stopped": "ft_tiny-llama_20261118-131320",
}


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    d = tmp_path / "runs"
    write_fake_run(d / NAMES["completed"], steps=80)
    write_fake_run(d / NAMES["failed"], steps=120, outcome="failed", end_at=42, t0=T0 + 3600, seed=1)
    write_fake_run(d / NAMES["stopped"], steps=120, outcome="stopped", end_at=77, t0=T0 + 7200, seed=2)
    write_fake_run(d / NAMES["early_stopped"], steps=100, outcome="early_stopped", end_at=60, t0=T0 + 10800,
                   seed=3)
    yield d
    monkeypatch.undo()
    time.tzset()


def _app(runs_dir: Path, **kw):
    return harness_app(lambda: RunsScreen("runs", clock=lambda: T0 + 20_000, auto_refresh=False), **kw)


async def _loaded(pilot):
    scr = pilot.app.screen
    await wait_for(pilot, lambda: getattr(scr, "loaded", False))
    await pilot.pause()


def _statuses(scr: RunsScreen) -> dict[str, str]:
    return {r.name: r.status for r in scr.rows}


async def _goto(pilot, scr: RunsScreen, name: str) -> None:
    table = scr.query_one("#runs-table")
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()


async def test_lists_every_run_with_its_status(runs_dir):
    app = _app(runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        assert _statuses(scr) == {v: k for k, v in NAMES.items()}
        table = scr.query_one("#runs-table")
        assert table.row_count == 4
        # newest first
        assert [r.name for r in scr.rows][0] == NAMES["early_stopped"]
        await _goto(pilot, scr, NAMES["failed"])
        assert "CUDA out of memory" in str(scr.query_one("#runs-detail").render())


async def test_running_run_is_listed_and_stopped_after_confirmation(runs_dir):
    w = FakeRunWriter(runs_dir / "ft_live", rate=10, steps=100_000, guard=True)
    w.start()
    try:
        app = _app(runs_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            scr = app.screen
            await _loaded(pilot)
            assert _statuses(scr)["ft_live"] == "running"
            await _goto(pilot, scr, "ft_live")
            await pilot.press("s")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: _statuses(scr).get("ft_live") == "stopped", timeout=20)
            # the writer notices its process group is gone at its next record (10 a second)
            await wait_for(pilot, lambda: w.killed or not w.is_alive(), timeout=5)
    finally:
        w.close()


async def test_delete_asks_first(runs_dir):
    app = _app(runs_dir)
    target = runs_dir / NAMES["stopped"]
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["stopped"])
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")  # cancel keeps it
        assert target.exists() and app.screen is scr
        await pilot.press("x")
        await click_when_shown(pilot, "#confirm-yes")
        await wait_for(pilot, lambda: NAMES["stopped"] not in _statuses(scr))
        assert not target.exists()
        assert scr.query_one("#runs-table").row_count == 3


async def test_attach_opens_the_monitor_and_comes_back(runs_dir):
    app = _app(runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["completed"])
        await pilot.press("enter")
        mon = app.screen
        assert isinstance(mon, MonitorScreen)
        await wait_for(pilot, lambda: mon.loaded)
        assert mon.state.status == "completed" and mon.state.step == 80
        await pilot.press("d")
        assert app.screen is scr


async def test_open_config_as_a_new_job(runs_dir):
    opened = []
    app = _app(runs_dir, open_job=opened.append)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["completed"])
        await pilot.press("c")
        assert len(opened) == 1
        job = opened[0]
        assert job.values["general.batch_size"] == 8 and job.profile == "native"


async def test_resume_asks_first_then_watches_the_new_run(runs_dir, monkeypatch):
    """u on a stopped run: a confirmation, then the new run's dashboard (the resume itself, with a real
    worker, is tests/test_launch_real.py's); u on a completed run only says there is nothing to resume."""
    asked = []

    def resume_run(ref, runs_dir_):
        asked.append((runsource.run_name(ref), runs_dir_))
        return runsource.resolve(NAMES["early_stopped"], runs_dir_), {"step": 76, "path": "checkpoint-76"}

    monkeypatch.setattr(runsource, "resume_run", resume_run)
    app = _app(runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["completed"])
        await pilot.press("u")
        assert app.screen is scr and not asked
        await _goto(pilot, scr, NAMES["stopped"])
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert app.screen is scr and not asked
        await pilot.press("u")
        await click_when_shown(pilot, "#confirm-yes")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
        assert asked == [(NAMES["stopped"], "runs")]
        assert runsource.run_name(app.screen.run_ref) == NAMES["early_stopped"]


async def test_open_config_missing_says_so(runs_dir):
    (runs_dir / NAMES["failed"] / "config.toml").unlink()
    opened = []
    app = _app(runs_dir, open_job=opened.append)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["failed"])
        await pilot.press("c")
        assert not opened
        said = [n.message for n in app._notifications]
        assert len(said) == 1 and "config.toml" in said[0] and NAMES["failed"] in said[0], said


async def test_overlay_two_runs(runs_dir):
    app = _app(runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        await pilot.press("o")  # one run is not enough
        assert app.screen is scr
        await _goto(pilot, scr, NAMES["completed"])
        await pilot.press("space")
        await _goto(pilot, scr, NAMES["failed"])
        await pilot.press("space")
        assert len(scr.marked) == 2
        await pilot.press("o")
        ov = app.screen
        assert isinstance(ov, OverlayScreen)
        await wait_for(pilot, lambda: ov.states is not None)
        plot = ov.query_one("#overlay-plot")
        labels = [ln.label for ln in plot.lines]
        assert labels == ["A train", "A eval", "B train", "B eval"]
        assert plot.lines[0].xs[-1] == 80 and plot.lines[2].xs[-1] == 42
        assert NAMES["completed"] in str(ov.query_one("#overlay-title").render())
        await pilot.press("escape")
        assert app.screen is scr


async def test_engine_listing_failure_falls_back_to_local(runs_dir, monkeypatch):
    def broken(*a, **k):
        raise OSError("ssh: connect to host gpu1 port 22: Connection refused")

    monkeypatch.setattr(runsource, "list_runs", broken)
    rows, problem = runsource.list_runs_safe("runs")
    assert len(rows) == 4 and "Connection refused" in problem


# -- snapshots ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_runs(snap_compare, runs_dir, size):
    assert snap_compare(_app(runs_dir), terminal_size=size, run_before=_loaded)


def test_snapshot_overlay(snap_compare, runs_dir):
    cfg = runs_dir / NAMES["stopped"] / "config.toml"  # a second run with another learning rate: one field differs
    cfg.write_text(cfg.read_text().replace("learning_rate = 0.003", "learning_rate = 0.001"))

    async def before(pilot):
        await _loaded(pilot)
        scr = pilot.app.screen
        for name in (NAMES["completed"], NAMES["stopped"]):
            await _goto(pilot, scr, name)
            await pilot.press("space")
        await pilot.press("o")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "states", None) is not None)
        await wait_for(pilot, lambda: plots_settled(pilot.app.screen))
        await pilot.pause()

    assert snap_compare(_app(runs_dir), terminal_size=(80, 24), run_before=before)


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_fits_80x24_without_horizontal_scrolling(runs_dir, theme):
    from textual.widget import Widget

    app = _app(runs_dir, theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        scr = app.screen
        await _loaded(pilot)
        for w in scr.query(Widget):
            assert not w.show_horizontal_scrollbar, f"{w!r} scrolls horizontally"
            assert w.region.right <= 80


async def test_open_config_in_the_wizard_app(runs_dir):
    """With the real app: ctrl+r opens the runs screen; `c` loads the run's config as the wizard's job."""
    import tui.app as app_mod
    app = app_mod.create_app(autosave=False, offer_restore=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        scr = app.screen
        assert isinstance(scr, RunsScreen)
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["completed"])
        # the palette offers the runs screen's own actions there (not the wizard's steps)
        cmds = {t: cb for t, _, cb in app_mod.FinetuiCommands(scr)._commands()}
        for want in ("Attach", "Stop", "Delete", "As new job", "Mark", "Overlay", "Refresh", "Quit"):
            assert want in cmds
        assert "Go to Model" not in cmds
        cmds["As new job"]()  # same as the `c` key
        await pilot.pause()
        await pilot.pause()
        assert not isinstance(app.screen, RunsScreen)  # back in the wizard
        assert app.job.values.get("general.batch_size") == 8
        assert app.job.values.get("launch.procs_per_node") == 2


async def test_as_new_job_asks_before_dropping_unsaved_edits(runs_dir):
    """`c` over unsaved edits asks, as Open and Quit do: keep editing leaves the job, discard replaces it."""
    import tui.app as app_mod
    app = app_mod.create_app(autosave=False, offer_restore=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.apply_edit("general.epochs", 7)
        assert app.dirty
        await pilot.press("ctrl+r")
        scr = app.screen
        await _loaded(pilot)
        await _goto(pilot, scr, NAMES["completed"])
        await pilot.press("c")
        await pilot.pause()
        assert app.screen.query("#btn-discard")  # asked
        await pilot.click("#btn-cancel")
        await pilot.pause()
        assert app.screen is scr and app.job.values["general.epochs"] == 7  # kept
        await pilot.press("c")
        await pilot.pause()
        await pilot.click("#btn-discard")
        await pilot.pause()
        await pilot.pause()
        assert not isinstance(app.screen, RunsScreen)
        assert app.job.values.get("general.batch_size") == 8 and app.job.values.get("general.epochs") != 7


# ------------------------------------------------- finetui --runs / --attach RUN (the wizard app)


def test_tui_args_only_open_the_tui():
    from tui.cli import TuiArgs, _tui_args

    assert _tui_args([]) == TuiArgs()
    assert _tui_args(["--runs"]) == TuiArgs(runs=True)
    assert _tui_args(["--attach", "ft_x"]) == TuiArgs(attach="ft_x")
    assert _tui_args(["--attach=ft_x", "--demo"]) == TuiArgs(demo=True, attach="ft_x")
    assert _tui_args(["-p", "a.toml", "--runs"]) == TuiArgs(preset="a.toml", runs=True)
    assert _tui_args(["job.toml"]) == TuiArgs(preset="job.toml")  # what a user types first
    assert _tui_args(["--runs", "job.toml"]) == TuiArgs(preset="job.toml", runs=True)
    # anything else goes through typer (its errors and --help)
    for argv in (["--attach"], ["--attach", "--runs"], ["--attach="], ["--preset", ""], ["runs"], ["--help"],
                 ["a.toml", "b.toml"], ["validate", "a.toml"]):
        assert _tui_args(argv) is None, argv


async def test_app_opens_on_the_runs_screen_then_the_wizard_offers_the_unsaved_job(runs_dir, make_app, tui_state):
    state.write_autosave(JobConfig(values={"general.epochs": 9}), None)
    app = make_app(demo=False, start="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        assert app.screen.runs_dir == "runs"
        assert {r.name for r in app.screen.rows} == set(NAMES.values())
        assert not app.screen_stack[0].query("#btn-restore")  # not offered over the runs screen
        await pilot.press("escape")
        await click_when_shown(pilot, "#btn-restore")  # the wizard is shown: now it is
        await pilot.pause()
        assert app.job.values["general.epochs"] == 9


async def test_quit_from_the_runs_screen_keeps_an_unsaved_job_never_offered(runs_dir, make_app, tui_state):
    state.write_autosave(JobConfig(values={"general.epochs": 9}), None)
    app = make_app(demo=False, start="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert state.read_autosave() is not None


async def test_app_attaches_to_a_run_and_detaches_to_the_runs_screen(runs_dir, make_app, monkeypatch):
    monkeypatch.setenv("FINETUI_RUNS_DIR", str(runs_dir))  # overrides the job's launch.runs_dir
    app = make_app(attach=runsource.resolve(NAMES["failed"], str(runs_dir)))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
        mon = app.screen
        await wait_for(pilot, lambda: mon.state.status == "failed")
        assert mon.state.step == 42
        assert [type(s) for s in app.screen_stack[1:]] == [RunsScreen, MonitorScreen]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        assert app.screen.runs_dir == str(runs_dir)
        assert not app.screen_stack[0].query(StepBar)  # the wizard is not built before the dashboard
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        await wait_for(pilot, lambda: app.pane("model").ready)  # built when first shown
        assert app.screen.focused is not None and app.screen.focused.id == widget_id("model.name_or_path")


async def test_runs_screen_first_then_a_job_from_a_run_opens_in_the_wizard(runs_dir, make_app):
    app = make_app(demo=False, start="runs", offer_restore=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        scr = app.screen
        await pilot.press("ctrl+n")  # the wizard's keys work behind the runs screen, built or not
        assert app.step == "data"
        await _goto(pilot, scr, NAMES["completed"])
        await pilot.press("c")  # its config as a new job, in the wizard
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        await wait_for(pilot, lambda: app.pane("data").ready and app.switcher.current == "step-data")
        assert app.job.values.get("general.batch_size") == 8
        assert "Data" in str(app.stepbar.render())

"""The user's keys ([keys] in ~/.config/finetui/config.toml), vim-style moves and the copy actions (OSC 52):
the file's problems in one line each, the keymap applied to the real bindings (key bar, F1 help, the key
itself), the clipboard text and the escape sequence the terminal gets."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from tests.fake_run import T0, wait_for, write_fake_run


def write_config(tmp_path: Path, monkeypatch, text: str) -> Path:
    d = tmp_path / "config"
    d.mkdir(exist_ok=True)
    (d / "config.toml").write_text(text)
    monkeypatch.setenv("FINETUI_CONFIG_DIR", str(d))
    return d / "config.toml"


def test_the_keys_table_and_its_mistakes(tmp_path, monkeypatch):
    from tui import keys

    p = write_config(tmp_path, monkeypatch, '[keys]\nlaunch = "F5"\nruns = "ctrl+e, ctrl+r"\ncopy_job = "ctrl+y"\n'
                                            'vim = true\nlanch = "f6"\nsave_preset = 5\nopen_preset = "ctrl o"\n'
                                            'quit = "f5"\n')
    k = keys.load()
    assert k.path == p and k.vim
    assert k.keymap == {"launch": "f5", "runs": "ctrl+e,ctrl+r", "copy_job": "ctrl+y"}
    assert k.problems == [
        f"{p}: keys.lanch: unknown action; did you mean `launch`? (the actions are listed in the README's Keys "
        f"section)",
        f"{p}: keys.save_preset: must be a key name in quotes, e.g. \"f5\" or \"ctrl+y\"",
        f"{p}: keys.open_preset: 'ctrl o' is not a key name (e.g. \"f5\", \"ctrl+y\", \"j\", \"question_mark\")",
        f"{p}: keys.quit: f5 is already given to launch",
    ]
    p.write_text("[keys\n")
    assert keys.load().problems[0].startswith(f"{p}: not valid TOML (") and not keys.load().keymap
    p.unlink()
    assert keys.load() == keys.UserKeys(path=p)  # no file: no keys of one's own, no problem


def test_every_binding_of_the_screens_is_an_action_a_user_can_rebind():
    from textual.binding import Binding

    from tui import keys
    from tui.app import FinetuiApp
    from tui.screens.monitor import MonitorScreen
    from tui.screens.runs import RunsScreen

    for cls in (FinetuiApp, RunsScreen, MonitorScreen):
        bs = [b for b in cls.BINDINGS if isinstance(b, Binding)]
        assert {b.action for b in bs} <= set(keys.ACTIONS), cls
        first = {}
        for b in bs:
            first.setdefault(b.action, b)
        assert all(b.id == b.action for b in first.values()), cls  # each action's first binding is rebindable
        assert all(b.id is None for b in bs if first[b.action] is not b)  # alternates (Esc beside q) stay


async def test_own_keys_rebind_show_in_the_key_bar_and_help_and_copy_through_osc52(make_app, tmp_path, monkeypatch):
    from engine import presets
    from tui.widgets.dialogs import HelpDialog
    from tui.widgets.keybar import KeyBar

    cfg = write_config(tmp_path, monkeypatch, '[keys]\nlaunch = "f5"\ncopy_job = "ctrl+y"\ncopy_command = "f7"\n'
                                              'bogus = "x"\n')
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        written: list[str] = []
        real_write = app._driver.write
        app._driver.write = lambda data: (written.append(data), real_write(data))[1]
        bar = app.screen.query_one(KeyBar)
        shown = {k.description: k.display for k in bar.keys()[0]}
        assert shown["Launch"] == "f5"  # the key bar shows the user's key
        # the problem of the file: said once when the app starts
        assert any(f"{cfg}: keys.bogus: unknown action" in n.message for n in app._notifications)
        await pilot.press("ctrl+l")  # the old key no longer launches
        await pilot.pause()
        assert app.step != "launch"
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.step == "launch")
        # F1 lists the user's keys
        app.set_focus(None)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpDialog))
        text = "\n".join(str(w.render()) for w in app.screen.query(".dialog-keys"))
        assert f"Your keys ({cfg}):" in text and "f5              launch: review and launch" in text
        await pilot.press("escape")
        await pilot.pause()
        # copy the job as TOML: the clipboard holds it, the terminal got it as OSC 52
        await pilot.press("ctrl+y")
        await pilot.pause()
        want = presets.dumps(app.job)
        assert app.clipboard == want
        osc = f"\x1b]52;c;{base64.b64encode(want.encode()).decode()}\a"
        assert osc in written
        # the launch command: the saved, unchanged preset by its path
        await pilot.press("f7")
        await pilot.pause()
        assert app.clipboard == f"finetui train {presets.PRESETS_DIR / 'demo.toml'}"


def test_the_launch_command_of_an_unsaved_job_recreates_it_in_a_shell(tmp_path):
    from engine import presets
    from tui.keys import launch_command

    job = presets.load(presets.PRESETS_DIR / "demo.toml")
    job.values["general.learning_rate"] = 0.0042
    cmd = launch_command(job, presets.PRESETS_DIR / "demo.toml", dirty=True)
    assert cmd.endswith("\nfinetui train finetui-job.toml")
    script = cmd.rsplit("\n", 1)[0]  # (the train line itself is not run here)
    subprocess.run(["sh", "-c", script], cwd=tmp_path, check=True)
    again = presets.load(tmp_path / "finetui-job.toml")
    assert again.values == job.values and again.profile == job.profile


async def test_vim_keys_move_between_fields_rows_and_steps(make_app, tmp_path, monkeypatch):
    from textual.widgets import Input

    write_config(tmp_path, monkeypatch, "[keys]\nvim = true\n")
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        # in a text field j is typed, not a move
        inp = next(w for w in app.screen.query(Input) if w.display)
        inp.focus()
        await pilot.pause()
        before = inp.value
        await pilot.press("end", "j")
        assert inp.value == before + "j" and app.focused is inp
        await pilot.press("backspace")
        # outside text fields: l / h go to the next / previous step, j / k to the next / previous field
        app.set_focus(None)
        await pilot.press("l")
        await wait_for(pilot, lambda: app.step == "data")
        app.set_focus(None)
        await pilot.press("h")
        await wait_for(pilot, lambda: app.step == "model")
        app.set_focus(None)
        await pilot.press("j")
        first = app.focused
        await pilot.press("j")
        assert first is not None and app.focused is not first
        await pilot.press("k")
        assert app.focused is first


async def test_runs_screen_y_copies_a_runs_path_and_j_k_move_with_vim(make_app, tmp_path, monkeypatch):
    from tui.screens.runs import RunsScreen

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINETUI_RUNS_DIR", raising=False)
    write_fake_run(tmp_path / "runs" / "ft_a", steps=10, t0=T0)
    write_fake_run(tmp_path / "runs" / "ft_b", steps=10, t0=T0 + 60, seed=1)
    write_config(tmp_path, monkeypatch, "[keys]\nvim = true\ncopy_path = \"c,y\"\n")
    app = make_app(start="runs")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        scr = app.screen
        await pilot.pause()
        assert scr.current().name == "ft_b"
        await pilot.press("j")
        assert scr.current().name == "ft_a"
        await pilot.press("k")
        assert scr.current().name == "ft_b"
        await pilot.press("c")  # the user's key for it (c was "as new job": the user's key wins)
        await pilot.pause()
        assert app.clipboard == str((tmp_path / "runs" / "ft_b").resolve())

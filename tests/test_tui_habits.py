"""Pilot tests of issue 27: a newcomer succeeds without reading the docs (import that explains itself,
data that says what it is, keys that behave as terminal users expect).  Fake engine services, fixed clock
(fixtures_tui.py)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.fake_run import wait_for
from tests.test_tui_wizard import SIZE, goto, launch_state, screen_text
from tui.widgets.form import widget_id

LF_DPO = """\
### model
model_name_or_path: finetui:tiny-llama
### method
stage: dpo
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
pref_beta: 0.1
pref_loss: sigmoid
### dataset
dataset: dpo_en_demo
template: qwen3_nothink
cutoff_len: 2048
preprocessing_num_workers: 16
### output
output_dir: saves/qwen3-4b/lora/dpo
logging_steps: 10
plot_loss: true
### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 5.0e-6
num_train_epochs: 3.0
ddp_timeout: 180000000
"""


async def settle(pilot) -> None:
    """The first screen is up and its first field focused (a focus set before that is taken back)."""
    await wait_for(pilot, lambda: pilot.app.focused is not None)
    await pilot.pause()
    await pilot.pause()


def lf_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "qwen3_lora_dpo.yaml"
    p.write_text(LF_DPO)
    return p


async def test_open_dialog_imports_a_llamafactory_yaml_and_keeps_every_note(make_app, tmp_path):
    src = lf_yaml(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert "import" in screen_text(app).lower()
        path = app.screen.query_one("#preset-path", Input)
        path.focus()
        path.value = str(src)
        await pilot.press("enter")  # Enter in the path: the kind is told from the content (not parsed as TOML)
        await pilot.pause()
        await pilot.pause()
        res = app.job.resolved()
        assert res["trainer.stage"] == "dpo" and res["general.max_sequence_length"] == 2048
        assert app.preset_path is None and app.dirty
        panel = app.notes
        assert panel.display and len(panel.notes) >= 2
        text = screen_text(app)
        # every note is on screen, not one in a toast: the ignored keys and the converted template
        for key in ("preprocessing_num_workers", "ddp_timeout", "plot_loss", "qwen3_nothink"):
            assert key in text, key
        # still there after moving around the wizard, until dismissed
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert panel.display and "ddp_timeout" in screen_text(app)
        await pilot.click("#notes-dismiss")
        await pilot.pause()
        assert not panel.display and "ddp_timeout" not in screen_text(app)


async def test_open_path_tells_kinds_apart_and_says_why_not(make_app, tmp_path):
    from engine import presets

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # a TOML preset without the .toml suffix still opens as a preset
        p = tmp_path / "job.preset"
        p.write_text((presets.PRESETS_DIR / "demo.toml").read_text())
        assert app.open_path(str(p))
        assert app.preset_path == p and not app.dirty and not app.notes.display
        # a file that is no job at all: one sentence naming it, the job unchanged
        junk = tmp_path / "notes.txt"
        junk.write_text("hello: world\n")
        before = app.job.values.copy()
        assert not app.open_path(str(junk))
        await pilot.pause()
        assert app.job.values == before
        assert any("notes.txt" in str(n.message) and "neither" in str(n.message) for n in app._notifications)


async def test_form_shows_the_opened_job_in_the_focused_field(make_app, tmp_path):
    src = lf_yaml(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "hyperparameters")
        inp = app.screen.query_one(f"#{widget_id('general.max_sequence_length')}", Input)
        inp.focus()
        await pilot.pause()
        old = inp.value
        assert old != "2048"
        assert app.open_path(str(src))
        await pilot.pause()
        await pilot.pause()
        assert inp.has_focus and inp.value == "2048"
        # while typing, the text typed stays as typed (not reformatted under the cursor)
        inp.value = ""
        inp.cursor_position = 0
        await pilot.press(*"1e3")
        await pilot.pause()
        assert inp.value == "1e3" and app.job.resolved()["general.max_sequence_length"] == 1000


def test_cli_preset_of_another_tool_opens_imported_with_its_notes(tmp_path, tui_state):
    """`finetui --preset x.yaml` imports it (its notes on screen) instead of failing as TOML."""
    import asyncio

    from tui.app import FinetuiApp
    from engine import interop

    src = lf_yaml(tmp_path)
    assert interop.file_kind(src) == "llamafactory"
    job, notes = interop.import_file(src)
    app = FinetuiApp(job=job, imported=(src.name, notes), autosave=False, offer_restore=False)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.dirty and app.notes.display and "ddp_timeout" in screen_text(app)

    asyncio.run(run())


async def test_launch_step_cannot_be_armed_by_a_stray_key(make_app):
    """First focus is not on free text; a remote target is checked before the job is called ready."""
    from textual.widgets import Button

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        disabled, reason = await launch_state(pilot)
        await pilot.pause()
        assert not disabled and "ready" in reason
        assert not isinstance(app.focused, Input)  # a stray key does not type into the target
        # a target that does not resolve (a `q` typed after `local`): not ready, not launchable
        app.apply_edit("launch.host", "localq")
        await wait_for(pilot, lambda: app.host_checks.get("localq") is not None)
        await pilot.pause()
        btn = app.query_one("#launch-button", Button)
        assert btn.disabled and "does not resolve" in str(app.query_one("#launch-reason").render())
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert app.launcher.jobs == []
        # a host that resolves but does not answer: said, still launchable
        app.apply_edit("launch.host", "slow-box")
        await wait_for(pilot, lambda: app.host_checks.get("slow-box") is not None)
        await pilot.pause()
        assert not btn.disabled and "unverified host" in str(app.query_one("#launch-reason").render())
        # a known host: ready
        app.apply_edit("launch.host", "gpu-box")
        await wait_for(pilot, lambda: app.host_checks.get("gpu-box") is not None)
        await pilot.pause()
        assert not btn.disabled and "ready" in str(app.query_one("#launch-reason").render())


async def test_launch_step_says_where_runs_really_go(make_app, monkeypatch, tmp_path):
    monkeypatch.setenv("FINETUI_RUNS_DIR", str(tmp_path / "elsewhere"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "launch")
        where = str(app.query_one("#runs-where").render())
        assert f"{tmp_path / 'elsewhere'}/{app.default_run_name()}/" in where
        assert "$FINETUI_RUNS_DIR" in where


def test_check_host_resolves_and_knocks(monkeypatch, tmp_path):
    """The real check: a listening port answers; a closed one is an unverified host; no such name refuses."""
    import socket

    from tui.app import _check_host

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config aliases
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        assert _check_host(f"me@127.0.0.1:{port}") == (True, "")
    finally:
        srv.close()
    ok, text = _check_host(f"127.0.0.1:{port}")
    assert ok and "unverified host" in text
    ok, text = _check_host("no-such-host.invalid")
    assert not ok and "does not resolve" in text


def test_tui_runs_dir_option_is_finetui_runs_dir(monkeypatch, tmp_path):
    from tui.cli import _tui_args

    assert _tui_args(["--demo", "--runs-dir", str(tmp_path)]).runs_dir == str(tmp_path)
    assert _tui_args([f"--runs-dir={tmp_path}", "--runs"]).runs_dir == str(tmp_path)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


DPO_ROWS = [{"instruction": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}."}
            for i in range(5)]
TOOL_ROWS = [{"conversations": [{"from": "human", "value": "Weather in Paris?"},
                                {"from": "gpt", "value": "Sunny."}],
              "system": "You are terse.", "tools": "[{\"name\": \"weather\"}]"}] * 3


async def test_data_step_tells_the_format_from_the_first_rows(make_app, tmp_path):
    from textual.widgets import Button

    dpo = _write_jsonl(tmp_path / "pairs.jsonl", DPO_ROWS)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "data")
        assert app.job.resolved()["data.format"] == "alpaca"
        app.apply_edit("data.train_path", str(dpo))
        box = app.query_one("#data-detect")
        await wait_for(pilot, lambda: box.display)
        await pilot.pause()
        text = str(app.query_one("#data-detect-text").render())
        assert "look like preference data, not alpaca" in text
        assert "dpo" in text  # the sft trainer cannot use it: said
        use = app.query_one("#data-use-format", Button)
        assert str(use.label) == "Use preference"
        await pilot.click("#data-use-format")
        await pilot.pause()
        assert app.job.resolved()["data.format"] == "preference"
        assert not use.display
        # a ShareGPT file with a system prompt and tools: what each extra key is used for
        tools = _write_jsonl(tmp_path / "tools.jsonl", TOOL_ROWS)
        app.apply_edit("data.format", "sharegpt")
        app.apply_edit("data.train_path", str(tools))
        await wait_for(pilot, lambda: "tools" in str(app.query_one("#data-detect-text").render()))
        text = str(app.query_one("#data-detect-text").render())
        assert "key `tools`: tool (function) definitions" in text and "key `system`: the system prompt" in text


def test_data_check_names_the_format_the_rows_look_like(tmp_path):
    """`finetui data check` on DPO rows read as alpaca says which format they look like; without --format it
    takes the detected one; the extra keys' uses are listed."""
    import subprocess
    import sys

    dpo = _write_jsonl(tmp_path / "pairs.jsonl", DPO_ROWS)
    cmd = [sys.executable, "-m", "tui.cli", "data", "check", str(dpo)]
    p = subprocess.run(cmd + ["--format", "alpaca"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "this looks like preference data: use --format preference" in p.stdout
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "format: preference" in p.stderr and "result: OK" in p.stdout
    tools = _write_jsonl(tmp_path / "tools.jsonl", TOOL_ROWS)
    p = subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", str(tools), "--format", "sharegpt"],
                       capture_output=True, text=True, timeout=120)
    assert "key `tools`: tool (function) definitions" in p.stdout


def test_detect_format_from_distinctive_keys():
    from engine.data.formats import detect_format, extra_keys, format_hint

    assert detect_format(DPO_ROWS) == "preference"
    assert detect_format([{"instruction": "a", "output": "b"}]) == "alpaca"
    assert detect_format([{"text": "a corpus line"}]) == "corpus"
    assert detect_format([{"messages": [], "images": ["a.png"]}]) == "sharegpt_image"
    assert detect_format([{"prompt": "p", "completion": "c", "label": True}]) == "kto"
    assert detect_format([{"schemaVersion": "bedrock-conversation-2024", "messages": []}]) == "bedrock_converse"
    assert detect_format([{"foo": 1}, "not a row"]) is None
    # the majority of the first rows wins
    assert detect_format([{"text": "x"}] + DPO_ROWS) == "preference"
    assert format_hint("preference", DPO_ROWS) is None
    assert "ignored" in extra_keys("alpaca", [{"instruction": "a", "output": "b", "images": ["x.png"]}])["images"]


# ------------------------------------------------------------------ 6. habits of the terminal


async def test_typing_replaces_a_fields_value(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "hyperparameters")
        inp = app.query_one(f"#{widget_id('general.learning_rate')}", Input)
        assert inp.value
        inp.focus()
        await pilot.pause()
        await pilot.press(*"5e-5")
        await pilot.pause()
        assert inp.value == "5e-5" and app.job.values["general.learning_rate"] == 5e-5


async def test_help_line_follows_focus_onto_buttons_and_group_titles(make_app):
    from textual.widgets._collapsible import CollapsibleTitle

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.query_one("#next-model").focus()
        await pilot.pause()
        assert "the next step (Ctrl+N)" in str(app.helpbar.render())
        await goto(pilot, "hyperparameters")
        app.query(CollapsibleTitle).first().focus()
        await pilot.pause()
        assert "a group of" in str(app.helpbar.render())
        await goto(pilot, "launch")
        assert "where to run" in str(app.helpbar.render())  # the first focus: the known hosts


async def test_f1_and_question_mark(make_app, tmp_path, monkeypatch):
    from tui.screens.runs import RunsScreen
    from tui.widgets.dialogs import HelpDialog

    monkeypatch.setenv("FINETUI_RUNS_DIR", str(tmp_path / "runs"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "hyperparameters")
        inp = app.query_one(f"#{widget_id('general.learning_rate')}", Input)
        inp.focus()
        await pilot.pause()
        await pilot.press("question_mark")  # in a text field: typed, not the help
        await pilot.pause()
        assert not isinstance(app.screen, HelpDialog) and inp.value.endswith("?")
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpDialog) and "learning_rate" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        # the runs screen: F1 lists its own keys
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("f1")
        await pilot.pause()
        text = screen_text(app)
        assert isinstance(app.screen, HelpDialog) and "As new job" in text and "Overlay" in text
        assert "Ctrl+N" not in text  # not the wizard's keys
        await pilot.press("q")  # closes the help
        await pilot.pause()
        await pilot.press("question_mark")  # outside a text field: the help
        await pilot.pause()
        assert isinstance(app.screen, HelpDialog)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("q")  # leaves the runs screen (does not quit)
        await pilot.pause()
        assert app.screen is app.screen_stack[0] and app.is_running


async def test_q_and_escape_in_the_wizard(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "trainer")
        app.set_focus(None)
        await pilot.press("escape")  # back a step
        await pilot.pause()
        assert app.step == "data"
        await goto(pilot, "hyperparameters")
        app.query_one(f"#{widget_id('general.learning_rate')}", Input).focus()
        await pilot.pause()
        await pilot.press("q")  # typed in a text field
        await pilot.pause()
        assert app.is_running and app.screen is app.screen_stack[0]
        app.query_one("#next-hyperparameters").focus()
        await pilot.pause()
        await pilot.press("q")  # outside: quit, asked (unsaved edits: the q typed)
        await pilot.pause()
        assert app.screen.id == "quit-dialog"
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running


async def test_ctrl_t_toggles_the_toml_view(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.pause()
        hp = app.panes["hyperparameters"]
        assert app.step == "hyperparameters" and hp.view == "toml"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert hp.view == "form"


async def test_confirm_dialogs_take_y_n_and_enter(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        answers: list = []
        from tui.widgets.dialogs import ConfirmDialog

        for key, want in (("y", "discard"), ("n", "cancel"), ("enter", "discard"), ("escape", None)):
            app.push_screen(ConfirmDialog("Unsaved changes", "Discard them?",
                                          (("discard", "Discard"), ("cancel", "Keep editing"))), answers.append)
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            assert answers[-1] == want, key
        # the quit question: n quits without saving
        app.push_screen(ConfirmDialog("Unsaved changes", "Save the job before quitting?",
                                      (("save", "Save"), ("discard", "Quit without saving"), ("cancel", "Cancel")),
                                      no="discard"), answers.append)
        await pilot.pause()
        assert "y save · n quit without saving" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert answers[-1] == "discard"


async def test_switches_say_on_or_off_and_back_to_default_leaves_the_preset(make_app):
    from textual.widgets import Switch

    from tui.widgets.form import FieldRow, row_id

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        row = app.query_one(f"#{row_id('model.trust_remote_code')}", FieldRow)
        sw = row.query_one(Switch)
        assert row.hint_text == "off" and "off" in str(row.render())
        sw.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert row.hint_text == "on" and app.job.values["model.trust_remote_code"] is True
        await pilot.press("enter")
        await pilot.pause()
        assert row.hint_text == "off" and "model.trust_remote_code" not in app.job.values


async def test_dashboard_footer_follows_the_run(tmp_path):
    from tests.fake_run import harness_app, write_fake_run
    from tui.screens.monitor import MonitorScreen

    d = tmp_path / "runs" / "ft_done"
    write_fake_run(d, steps=40)
    app = harness_app(lambda: MonitorScreen(d))
    async with app.run_test(size=(100, 30)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        await pilot.pause()
        shown = {ab.binding.action: ab.binding.description for ab in scr.active_bindings.values()
                 if ab.binding.show}
        assert "stop" not in shown and shown.get("detach") == "Back"
        assert scr.state.final_path is None or "try_model" in shown


# ------------------------------------------------------------------ 7. Ctrl+L reviews first


async def test_ctrl_l_reviews_first_then_launches(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.step == "model"
        await pilot.press("ctrl+l")
        await pilot.pause()
        await pilot.pause()
        assert app.step == "launch" and app.launcher.jobs == []
        assert "Ctrl+L again launches" in " ".join(str(n.message) for n in app._notifications)
        await pilot.press("ctrl+l")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(app.launcher.jobs) == 1


# ------------------------------------------------------------------ 8. runs you can tell apart and follow


def _resumed_pair(runs: Path) -> tuple[Path, Path]:
    """A stopped DPO run and the run that resumed it from its checkpoint at step 40."""
    from tests.fake_run import T0, write_fake_run

    parent, child = runs / "ft_tiny-llama_dpo-lora_20261118-101320", runs / "ft_tiny-llama_dpo-lora_20261118-111320"
    write_fake_run(parent, steps=120, outcome="stopped", end_at=50)
    cfg = (parent / "config.toml").read_text().replace('stage = "sft"', 'stage = "dpo"')
    (parent / "config.toml").write_text(cfg)
    write_fake_run(child, steps=120, t0=T0 + 3600, seed=4)
    ck = parent / "checkpoints" / "checkpoint-40"
    (child / "config.toml").write_text(cfg.replace("[general]", f"[general]\nresume_from_checkpoint = \"{ck}\"", 1))
    return parent, child


async def test_runs_screen_kind_column_and_resume_links(tmp_path):
    from tests.fake_run import harness_app
    from tui.screens.runs import RunsScreen

    parent, child = _resumed_pair(tmp_path / "runs")
    app = harness_app(lambda: RunsScreen(str(tmp_path / "runs"), auto_refresh=False))
    async with app.run_test(size=(120, 30)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        await pilot.pause()
        rows = {r.name: r for r in scr.rows}
        assert rows[child.name].kind == "dpo-lora" and rows[parent.name].kind == "dpo-lora"
        assert rows[child.name].parent == parent.name and rows[child.name].parent_step == 40
        assert rows[parent.name].children == [child.name]
        text = screen_text(app)
        assert "Kind" in text and "dpo-lora" in text and "↻" in text
        table = scr.query_one("#runs-table")
        table.move_cursor(row=table.get_row_index(child.name))
        await pilot.pause()
        assert f"resumed from {parent.name} at step 40" in screen_text(app)
        table.move_cursor(row=table.get_row_index(parent.name))
        await pilot.pause()
        assert f"resumed as {child.name}" in screen_text(app)
        # the resume dialog says which checkpoint and step
        await pilot.press("u")
        await pilot.pause()
        assert "from checkpoint-40 (step 40 of 120)?" in app.screen.question


async def test_resumed_dashboard_draws_the_parents_history_first(tmp_path):
    from tests.fake_run import harness_app
    from tui.screens.monitor import MonitorScreen

    parent, child = _resumed_pair(tmp_path / "runs")
    app = harness_app(lambda: MonitorScreen(child))
    async with app.run_test(size=(120, 40)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded and scr.resumed_from is not None)
        await pilot.pause()
        xs, _ = scr.state.train_loss.points()
        assert xs[0] == 1  # the parent's steps 1…40 first
        assert f"resumed from {parent.name} at step 40" in screen_text(app)


def test_default_run_names_carry_stage_and_method(make_app):
    from datetime import datetime

    from engine.config import JobConfig
    from tui.screens.launch import default_run_name

    job = JobConfig()
    job.values.update({"model.name_or_path": "Qwen/Qwen3-4B", "trainer.stage": "dpo", "trainer.training_type": "qlora"})
    assert default_run_name(job.resolved(), datetime(2026, 1, 2, 3, 4, 5)) == "ft_Qwen3-4B_dpo-qlora_20260102-030405"

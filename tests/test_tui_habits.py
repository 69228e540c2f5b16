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
        for key in ("preprocessing_num_workers", "plot_loss", "qwen3_nothink", "dataset_info.json"):
            assert key in text, key
        # still there after moving around the wizard, until dismissed
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert panel.display and "plot_loss" in screen_text(app)
        await pilot.click("#notes-dismiss")
        await pilot.pause()
        assert not panel.display and "plot_loss" not in screen_text(app)


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
            assert app.dirty and app.notes.display and "plot_loss" in screen_text(app)

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
        assert "It trains dpo, kto or reward, not sft" in text  # the sft trainer cannot use it: said
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

    from engine.schema import JobConfig
    from tui.screens.launch import default_run_name

    job = JobConfig()
    job.values.update({"model.name_or_path": "Qwen/Qwen3-4B", "trainer.stage": "dpo", "trainer.training_type": "qlora"})
    assert default_run_name(job.resolved(), datetime(2026, 1, 2, 3, 4, 5)) == "ft_Qwen3-4B_dpo-qlora_20260102-030405"


# ------------------------------------------------------------------ 9. progress, plots


def test_worker_writes_progress_between_log_points(tmp_path, monkeypatch):
    """The worker's EventCallback writes the step at each step's end, at most once a second."""
    from transformers import TrainerState, TrainingArguments

    import json

    from engine.events import EventWriter
    from engine.train.callbacks import EventCallback

    ev = EventWriter(tmp_path / "events.jsonl")
    cb = EventCallback(ev, {}, tmp_path)
    state = TrainerState()
    state.max_steps = 100
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    clock = [1000.0]
    monkeypatch.setattr("engine.train.callbacks.time.monotonic", lambda: clock[0])
    for step in range(1, 8):
        state.global_step = step
        cb.on_step_end(args, state, None)
        clock[0] += 0.4
    ev.close()
    recs = [r for r in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
            if r["kind"] == "progress"]
    assert [r["step"] for r in recs] == [1, 4, 7] and recs[0]["total_steps"] == 100


def test_progress_and_eta_from_the_first_steps():
    from tui.widgets.metrics import RunState

    st = RunState()
    st.update([{"t": 100.0, "kind": "start", "step": 0, "total_steps": 100},
               {"t": 110.0, "kind": "progress", "step": 10, "total_steps": 100}])
    assert st.step == 10 and st.status == "running"
    assert st.eta(110.0) == 90.0  # 10 steps in 10 s since the start: 90 s left
    st.update([{"t": 115.0, "kind": "progress", "step": 20}])
    assert st.step == 20 and st.eta(115.0) == 40.0  # from the pace between progress points


def test_plots_have_a_minimum_y_span():
    from tui.widgets.plotbuild import y_range

    lo, hi = y_range(2.301, 2.302, 0.1)
    assert abs((hi - lo) - 0.2302) < 1e-9 and lo < 2.301 and hi > 2.302  # a flat loss stays flat
    assert y_range(0.5, 2.5, 0.1) == (0.5, 2.5)  # a real fall is drawn as it is
    assert y_range(0.0, 0.0, 0.1) == (0.0, 0.0)


async def test_dashboard_plots_share_the_x_range_and_dpo_plots_its_metrics(tmp_path):
    import json

    from tests.fake_run import harness_app, plots_settled, write_fake_run
    from tui.screens.monitor import MonitorScreen

    d = tmp_path / "runs" / "ft_dpo"
    ev = write_fake_run(d, steps=40)
    recs = [json.loads(x) for x in ev.read_text().splitlines()]
    for r in recs:
        if r["kind"] == "log":
            s = r["step"]
            r.update(rewards_chosen=0.01 * s, rewards_rejected=-0.01 * s, rewards_margins=0.02 * s,
                     rewards_accuracies=min(1.0, 0.5 + s / 80))
    ev.write_text("".join(json.dumps(r) + "\n" for r in recs))
    app = harness_app(lambda: MonitorScreen(d))
    async with app.run_test(size=(120, 40)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        await wait_for(pilot, lambda: plots_settled(scr))
        plots = [scr.query_one(f"#{i}") for i in ("plot-loss", "plot-lr", "plot-grad")]
        assert plots[0].xlim is not None and all(p.xlim == plots[0].xlim for p in plots)
        assert plots[1].plot_title.startswith("margin 0.8 · chosen 0.4 · rejected -0.4")
        assert {ln.label for ln in plots[1].lines} == {"chosen", "rejected", "margin"}
        assert plots[2].plot_title.startswith("accuracy") and plots[2].ylim == (0.0, 1.0)
        assert plots[1].min_abs > 0  # rewards near zero: noise is not drawn as a trend
        text = screen_text(app)
        assert "margin 0.8 · chosen 0.4" in text and "accuracy 1" in text


# ------------------------------------------------------------------ smaller items


def test_estimate_says_cpu_without_a_gpu_and_warns_past_the_models_context(monkeypatch):
    """The real estimate: device auto on this machine without nvidia-smi is a CPU estimate; a max length past
    the model's context (the tiny model's 512) is warned about."""
    from engine.schema import JobConfig
    from tui.app import _estimate
    from tui.screens.launch import estimate_text

    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi
    job = JobConfig()
    job.values.update({"model.name_or_path": "finetui:tiny-llama", "general.max_sequence_length": 1024,
                       "data.train_path": "finetui:samples/alpaca_en_demo.json"})
    est = _estimate(job, num_examples=100)
    assert est.on_cpu and est.notes[0].startswith("no GPU on this machine")
    assert any("exceeds the model's context (512 tokens)" in n for n in est.notes)
    from rich.console import Console

    c = Console(width=120, record=True, file=open("/dev/null", "w"))
    c.print(estimate_text(est))
    text = c.export_text()
    assert "Memory / rank (CPU)" in text and "exceeds the model's context" in text


def test_catalog_lists_models_that_exist_and_a_legend_that_matches():
    from engine.schema import profiles as P
    from tui.screens.model import catalog, catalog_legend

    assert "meta-llama/Llama-3.2-8B-Instruct" not in catalog("fpt_pipeline")
    assert "meta-llama/Llama-3.1-8B-Instruct" in catalog("fpt_pipeline")
    assert catalog_legend("fpt_pipeline").startswith("● in the")
    assert not P.get("native").models and "●" not in catalog_legend("native")


async def test_file_picker_goes_up_hides_dot_folders_and_follows_a_typed_path(make_app, tmp_path, monkeypatch):
    from tui.widgets.dialogs import FilePickerDialog

    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / ".git").mkdir()
    (tmp_path / "work" / "data" / "train.jsonl").write_text("{}\n")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        picked: list = []
        app.push_screen(FilePickerDialog("Pick", "."), picked.append)
        await pilot.pause()
        await pilot.pause()
        tree = app.screen.query_one("#picker-tree")
        await wait_for(pilot, lambda: len(tree.root.children) > 0)
        names = {str(n.label) for n in tree.root.children}
        assert "data" in names and ".git" not in names
        await pilot.press("backspace")  # up to the parent
        await pilot.pause()
        assert Path(tree.path) == tmp_path
        await wait_for(pilot, lambda: {"work", "other"} <= {str(n.label) for n in tree.root.children})
        path = app.screen.query_one("#picker-path", Input)
        path.focus()
        await pilot.pause()
        path.value = str(tmp_path / "work" / "data") + "/"
        await pilot.pause()
        assert Path(tree.path) == tmp_path / "work" / "data"
        path.value = str(tmp_path / "work" / "data" / "train.jsonl")
        await pilot.press("enter")
        await pilot.pause()
        assert picked == [str(tmp_path / "work" / "data" / "train.jsonl")]


async def test_long_help_and_problems_are_not_cut_silently(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        # the base model's help is longer than the line: cut at a word, and "F1 for more"
        line = str(app.helpbar.render())
        assert line.endswith("… F1 for more") and len(line) <= 80
        # a long problem on the launch step wraps over the lines it needs (up to 3)
        app.apply_edit("general.learning_rate", 1.5)
        await goto(pilot, "launch")
        reason = app.query_one("#launch-reason")
        await pilot.pause()
        assert reason.size.height >= 2 and "learning_rate" in str(reason.render())


def test_data_preview_labels_chosen_and_rejected_and_keeps_multiline_rows_aligned(tmp_path):
    from rich.console import Console

    from engine.data.check import check
    from tui.screens.data import render_report

    p = _write_jsonl(tmp_path / "pairs.jsonl", [{"instruction": "Two lines?", "chosen": "first line\nsecond line",
                                               "rejected": "no"}])
    rep = check(str(p), "preference", stage="dpo")
    roles = [m["role"] for m in rep["preview"][0]["messages"]]
    assert roles == ["user", "chosen", "rejected"]
    c = Console(width=60, record=True, file=open("/dev/null", "w"))
    c.print(render_report(rep))
    lines = c.export_text().splitlines()
    first = next(ln for ln in lines if "first line" in ln)
    second = next(ln for ln in lines if "second line" in ln)
    assert first.index("first line") == second.index("second line")  # the second line stays in its column
    assert "   chosen │ first line" in first and any("rejected │ no" in ln for ln in lines)
    # checked as alpaca: the form's words, not the CLI's
    rep = check(str(p), "alpaca")
    c = Console(width=100, record=True, file=open("/dev/null", "w"))
    c.print(render_report(rep))
    assert "this looks like preference data: set Data format to preference" in c.export_text()


def test_rewards_near_zero_are_drawn_flat_and_accuracy_on_its_whole_range():
    from tui.widgets.plotbuild import y_range

    lo, hi = y_range(-0.004, -0.0001, 0.1, 0.1)
    assert hi - lo >= 0.1 - 1e-12


def test_a_bare_config_argument_opens_the_tui_on_it(tmp_path):
    """`finetui qwen3_lora_dpo.yaml` opens the TUI on the import (as `finetui job.toml` does); a file that is no
    job says why in one line, exit 2 (the typer path, as a preset that does not load)."""
    import subprocess
    import sys

    from tui.cli import _as_options, _tui_args

    assert _tui_args(["qwen3_lora_dpo.yaml"]).preset == "qwen3_lora_dpo.yaml"
    assert _as_options(["x.json"]) == ["--preset", "x.json"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: [unclosed\n")
    p = subprocess.run([sys.executable, "-m", "tui.cli", "--preset", str(bad)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "bad.yaml" in p.stderr


async def test_f1_on_a_dashboard_lists_its_keys_and_q_leaves_it(tmp_path, tui_state):
    from tests.fake_run import write_fake_run
    from tui.app import create_app
    from tui.screens.monitor import MonitorScreen
    from tui.widgets.dialogs import HelpDialog

    d = tmp_path / "runs" / "ft_done"
    write_fake_run(d, steps=20)
    app = create_app(attach=d, autosave=False, offer_restore=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.loaded)
        await pilot.press("f1")
        await pilot.pause()
        text = screen_text(app)
        assert isinstance(app.screen, HelpDialog) and "Search log" in text and "Try the model" in text
        assert "d / Esc / q" in text and "Ctrl+N" not in text
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("q")  # back to the runs screen under it, the app still running
        await pilot.pause()
        assert not isinstance(app.screen, MonitorScreen) and app.is_running

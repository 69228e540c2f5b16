"""Pilot tests of the wizard flows (fake engine services, fixed clock; see fixtures_tui.py)."""

from __future__ import annotations

import subprocess
import sys

from textual.widgets import Button, Input, Select, Static, TextArea

from engine.schema import JobConfig
from tui import state
from tests.fake_run import wait_for
from tui.widgets.form import FieldRow, row_id, widget_id

SIZE = (100, 40)


def row(app, name: str) -> FieldRow:
    return app.query_one(f"#{row_id(name)}", FieldRow)


def problem(app, name: str) -> str:
    return str(row(app, name).query_one(".field-problem", Static).render())


def hint(app, name: str) -> str:
    """The hint as the row draws it: the end of its first line."""
    r = row(app, name)
    line = str(r.render()).split("\n")[0]
    assert line.rstrip().endswith(r.hint_text)
    return r.hint_text


async def type_into(pilot, name: str, text: str, keys: bool = False) -> None:
    """Focus a field's Input and enter ``text`` (key by key with ``keys``, else as one paste)."""
    inp = pilot.app.query_one(f"#{widget_id(name)}", Input)
    inp.focus()
    await pilot.pause()
    if keys:
        inp.value = ""
        await pilot.press(*text)
    else:
        inp.value = text
    await pilot.pause()


def screen_text(app) -> str:
    """The screen as plain text (from the SVG screenshot)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg.replace("&#160;", " ")))


async def goto(pilot, step: str) -> None:
    pilot.app.goto(step)
    await pilot.pause()
    await pilot.pause()


async def launch_state(pilot) -> tuple[bool, str]:
    app = pilot.app
    await goto(pilot, "launch")
    return (app.query_one("#launch-button", Button).disabled, str(app.query_one("#launch-reason").render()))


async def test_import_keeps_torch_out():
    code = ("import sys, tui.app; bad = [m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


async def test_learning_rate_checked_as_typed(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.job.problems() == []
        await goto(pilot, "hyperparameters")
        await type_into(pilot, "general.learning_rate", "1.5", keys=True)
        assert row(app, "general.learning_rate").has_class("-invalid")
        assert "1.5 is out of range" in problem(app, "general.learning_rate")
        assert "0 < x < 1" in problem(app, "general.learning_rate")
        disabled, reason = await launch_state(pilot)
        await pilot.pause()
        assert disabled and "general.learning_rate" in reason
        await goto(pilot, "hyperparameters")
        await type_into(pilot, "general.learning_rate", "0.001")
        assert not row(app, "general.learning_rate").has_class("-invalid")
        assert app.job.values["general.learning_rate"] == 0.001
        disabled, reason = await launch_state(pilot)
        await pilot.pause()
        assert not disabled and "ready" in reason
        # not a number
        await goto(pilot, "hyperparameters")
        await type_into(pilot, "general.batch_size", "x2")
        assert "is not a number" in problem(app, "general.batch_size")
        assert app.stepbar.errors["hyperparameters"] == 1


async def test_profile_change_reranges_and_redefaults(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "hyperparameters")
        assert hint(app, "general.batch_size") == "1 ≤ x ≤ 65536"
        sel = app.query_one("#hp-profile Select", Select)
        sel.value = "oci_llama_lora"
        await pilot.pause()
        assert app.job.profile == "oci_llama_lora"
        assert hint(app, "general.batch_size") == "8 ≤ x ≤ 16"
        # re-defaulted: lora_dropout is not set by the demo preset → the profile's 0.1
        assert app.query_one(f"#{widget_id('adapter.lora_dropout')}", Input).value == "0.1"
        # batch 20 is out of the new range
        await type_into(pilot, "general.batch_size", "20")
        assert "out of range in profile oci_llama_lora" in problem(app, "general.batch_size")
        # the model step shows the catalog warning
        await goto(pilot, "model")
        assert "not in the oci_llama_lora catalog" in app.query_one("#model-info").note.plain


async def test_field_row_draws_its_label_and_hint_around_the_input(make_app):
    """A row's only child is its input (and the problem line once there is one); the label and the
    range hint are drawn by the row: cut with … when too long, wrapped over two lines when the hint
    column is too narrow, and the problem line goes below both."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.apply_edit("profile", "fpt_pipeline")
        await goto(pilot, "hyperparameters")
        assert [type(c).__name__ for c in row(app, "general.batch_size").children] == ["Input"]
        r = row(app, "general.learning_rate")
        await type_into(pilot, "general.learning_rate", "0.0005")
        assert not r.query_one(".field-problem").display
        lines = str(r.render()).split("\n")
        assert lines[0].startswith("● Learning rate ") and lines[0].rstrip().endswith("1e-05 ≤ x ≤")
        assert lines[1].strip() == "0.001"
        assert r.region.height == 2
        await type_into(pilot, "general.learning_rate", "0.5")
        await pilot.pause()
        prob = r.query_one(".field-problem", Static)
        assert "out of range" in str(prob.render())
        assert prob.region.y == r.region.y + 2  # below the hint's second line, not over it
        assert r.label_text == "● Learning rate"
        assert "● Learning rate" in screen_text(app)
        # a click on the label focuses the input
        await goto(pilot, "launch")
        await pilot.click(f"#{row_id('launch.procs_per_node')}", offset=(2, 0))
        await pilot.pause()
        assert app.focused is app.query_one(f"#{widget_id('launch.procs_per_node')}")
        assert "GPUs (processes) per n… " in screen_text(app)  # 25 characters in a 26-cell column


async def test_dropout_overrides_are_folded_until_opened_or_set(make_app):
    from engine import presets
    from tui.widgets.form import FoldedFields

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        fold = app.query_one("#model-dropout", FoldedFields)
        assert not fold.expanded and not app.query(f"#{row_id('model.hidden_dropout')}")
        assert str(fold.render()) == "▸ Dropout overrides   Hidden unset · Attention unset · FFN unset"
        assert "Dropout overrides" in screen_text(app)
        fold.focus()
        await pilot.pause()
        assert app.focused is fold
        await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()
        assert fold.expanded and row(app, "model.hidden_dropout").display
        assert str(fold.render()) == "▾ Dropout overrides"
        await type_into(pilot, "model.attention_dropout", "0.1")
        assert app.job.values["model.attention_dropout"] == 0.1
        await type_into(pilot, "model.ffn_dropout", "1.5")
        assert "out of range" in problem(app, "model.ffn_dropout")
        await pilot.pause()
        prob = row(app, "model.ffn_dropout").query_one(".field-problem")
        assert fold.region.y < prob.region.y and prob.region.bottom <= fold.region.bottom  # it grew with the rows
        fold.focus()
        await pilot.pause()
        await pilot.press("space")  # closed again: the summary shows the values
        await pilot.pause()
        assert not fold.expanded and not fold.form.display and fold.region.height == 1
        assert str(fold.render()).endswith("Hidden unset · Attention 0.1 · FFN 1.5")
        # a click on its line opens it
        await pilot.click("#model-dropout", offset=(3, 0))
        await pilot.pause()
        assert fold.expanded
    # a job with a dropout set opens with the rows shown
    job = presets.load(presets.PRESETS_DIR / "demo.toml")
    job.values["model.hidden_dropout"] = 0.2
    app = make_app(job=job)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        assert app.query_one("#model-dropout", FoldedFields).expanded
        assert app.query_one(f"#{widget_id('model.hidden_dropout')}", Input).value == "0.2"


async def test_picking_from_the_catalog_sets_the_base_model(make_app):
    from tui.widgets.catalog import CatalogList
    from tui.widgets.dialogs import CatalogDialog

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.click("#model-catalog")
        await pilot.pause()
        assert isinstance(app.screen, CatalogDialog)
        cat = app.screen.query_one(CatalogList)
        assert app.focused is cat
        assert cat.item_ids[cat.highlighted] == app.job.resolved()["model.name_or_path"]  # the current model
        await pilot.press("down", "enter")
        await pilot.pause()
        picked = cat.item_ids[1]
        assert not isinstance(app.screen, CatalogDialog)
        assert app.job.values["model.name_or_path"] == picked
        assert app.query_one(f"#{widget_id('model.name_or_path')}", Input).value == picked
        # the profile's own models are marked; escape closes without a change
        app.apply_edit("profile", "oci_llama_lora")
        await pilot.pause()
        await pilot.click("#model-catalog")
        await pilot.pause()
        cat = app.screen.query_one(CatalogList)
        assert cat.item_ids[cat.highlighted] == picked
        cat.highlight(0)
        await pilot.pause()
        lines = [cat.render_line(y).text for y in range(3)]
        assert any(line.startswith("● meta.llama-3.3-70b-instruct") for line in lines), lines
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CatalogDialog) and app.job.values["model.name_or_path"] == picked


async def test_hidden_fields_follow_their_rule(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "trainer")
        assert not app.query_one("#zero-box").display
        app.apply_edit("trainer.distributed_backend", "deepspeed")
        await pilot.pause()
        assert app.query_one("#zero-box").display
        assert row(app, "trainer.offload_optimizer").display
        assert not row(app, "trainer.offload_params").display
        app.apply_edit("trainer.zero_stage", 3)
        await pilot.pause()
        assert row(app, "trainer.offload_params").display
        app.apply_edit("trainer.distributed_backend", "ddp")
        await pilot.pause()
        assert not app.query_one("#zero-box").display
        assert app.job.problems() == []  # the hidden zero_stage no longer counts
        # in the form: min_lr only with the cosine schedule
        await goto(pilot, "hyperparameters")
        app.query_one("#hp-form").expand("runtime")
        await pilot.pause()
        assert row(app, "runtime.min_lr").display
        app.query_one("#hp-form").expand("runtime")
        await pilot.pause()
        sel = app.query_one(f"#{widget_id('runtime.lr_scheduler')}", Select)
        sel.value = "linear"
        await pilot.pause()
        assert app.job.values["runtime.lr_scheduler"] == "linear"
        assert not row(app, "runtime.min_lr").display


async def test_trainer_offers_only_valid_choices(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_edit("profile", "fpt_studio")
        await goto(pilot, "trainer")
        methods = app.query_one("#choice-method")
        disabled = {methods.get_option_at_index(i).id for i in range(methods.option_count)
                    if methods.get_option_at_index(i).disabled}
        assert disabled == {"qlora", "tfew", "prompt_tuning", "freeze"}
        assert "not in fpt_studio" in str(methods.get_option("qlora").prompt)
        # choosing dpo switches the data format to one the trainer takes
        stages = app.query_one("#choice-stage")
        stages.highlighted = [stages.get_option_at_index(i).id for i in range(stages.option_count)].index("dpo")
        stages.action_select()
        await pilot.pause()
        assert app.job.resolved()["trainer.stage"] == "dpo"
        assert app.job.resolved()["data.format"] == "preference"
        # native: QLoRA brings a quantized base along, LoRA-less methods drop it again
        app.apply_edit("profile", "native")
        app.apply_edit("trainer.stage", "sft")
        app.apply_edit("data.format", "alpaca")
        await pilot.pause()

        async def choose(list_id: str, value: str) -> None:
            cl = app.query_one(list_id)
            cl.highlighted = [cl.get_option_at_index(i).id for i in range(cl.option_count)].index(value)
            cl.action_select()
            await pilot.pause()
            await pilot.pause()

        await choose("#choice-method", "qlora")
        assert app.job.resolved()["runtime.quantization_bit"] == 4
        assert not [p for p in app.job.problems() if p.field == "runtime.quantization_bit"]
        await choose("#choice-method", "lora")  # LoRA on a quantized base is QLoRA: lora drops the quantization
        assert app.job.resolved()["runtime.quantization_bit"] == "none"
        await choose("#choice-method", "qlora")
        await choose("#choice-method", "full")
        assert app.job.resolved()["runtime.quantization_bit"] == "none"
        # prompt tuning is ruled out for a preference trainer, with the reason
        app.apply_edit("trainer.stage", "dpo")
        await pilot.pause()
        assert methods.get_option("prompt_tuning").disabled
        assert "not for the dpo trainer" in str(methods.get_option("prompt_tuning").prompt)
        # the deepspeed launcher rules DDP out, and says so
        app.apply_edit("launch.launcher", "deepspeed")
        app.apply_edit("trainer.distributed_backend", "deepspeed")
        await pilot.pause()
        backends = app.query_one("#choice-backend")
        assert backends.get_option("ddp").disabled
        assert "deepspeed launcher" in str(backends.get_option("ddp").prompt)


async def test_toml_editor_syncs_both_ways(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.action_show_toml()
        await pilot.pause()
        ed = app.query_one("#toml-editor", TextArea)
        assert "learning_rate = 0.003" in ed.text
        # TOML → form
        ed.load_text(ed.text.replace("learning_rate = 0.003", "learning_rate = 0.0005"))
        await pilot.pause()
        assert app.job.values["general.learning_rate"] == 0.0005
        assert app.dirty
        # bad TOML → message, job untouched
        ed.load_text(ed.text.replace("[general]", "[general"))
        await pilot.pause()
        err = app.query_one("#toml-error")
        assert err.display and "not valid TOML" in str(err.render())
        assert app.job.values["general.learning_rate"] == 0.0005
        # an unknown key is reported with a suggestion
        ed.load_text(ed.text.replace("[general", "[general]").replace("batch_size = 8", "batch_sise = 8"))
        await pilot.pause()
        assert "did you mean" in str(err.render())
        # form → TOML
        app.query_one("#view-form", Button).press()
        await pilot.pause()
        assert app.query_one(f"#{widget_id('general.learning_rate')}", Input).value == "0.0005"
        await type_into(pilot, "general.epochs", "4")
        app.query_one("#view-toml", Button).press()
        await pilot.pause()
        assert "epochs = 4" in app.query_one("#toml-editor", TextArea).text
        # diff view lists the change against the profile
        app.action_show_diff()
        await pilot.pause()
        assert "general.learning_rate" in screen_text(app)


async def test_launch_disabled_reasons_then_launch(make_app):
    app = make_app(demo=False, job=JobConfig())
    async with app.run_test(size=SIZE) as pilot:
        disabled, reason = await launch_state(pilot)
        await pilot.pause()
        assert disabled
        assert "data.train_path: a training data file is required" in reason
        assert app.stepbar.errors["data"] == 1
        await goto(pilot, "data")
        await type_into(pilot, "data.train_path", "finetui:samples/alpaca_demo.jsonl")
        disabled, reason = await launch_state(pilot)
        await pilot.pause()
        assert not disabled, reason
        assert app.query_one(f"#{widget_id('launch.run_name')}", Input).placeholder == \
            "ft_tiny-llama_sft-lora_20260102-030405"
        await pilot.click("#launch-button")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(app.launcher.jobs) == 1
        assert app.launcher.jobs[0].values["launch.run_name"] == "ft_tiny-llama_sft-lora_20260102-030405"
        assert "launch.runs_dir" not in app.launcher.jobs[0].values  # the job's own (default runs/)


async def test_launch_warns_of_a_hub_model_this_machine_cannot_get(make_app, tmp_path, monkeypatch):
    """A Hub name not in this machine's cache while the Hub cannot be reached: launch stays possible (the
    Hub may come back) but the reason line says the run would stop at its start; a cached model does not."""
    from tests.fixtures_launch import free_port

    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    app = make_app(demo=False, job=JobConfig(values={"model.name_or_path": "acme/absent",
                                                     "data.train_path": "finetui:samples/alpaca_demo.jsonl"}))
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "launch")
        reason = app.query_one("#launch-reason", Static)
        await wait_for(pilot, lambda: "acme/absent is not in this machine's Hugging Face cache" in str(reason.render()))
        assert not app.query_one("#launch-button", Button).disabled
        cfg = tmp_path / "hf" / "hub" / "models--acme--cached" / "snapshots" / "abc"
        cfg.mkdir(parents=True)
        (cfg / "config.json").write_text("{}")
        app.apply_edit("model.name_or_path", "acme/cached")
        await pilot.pause()
        assert str(reason.render()) == "✓ ready to launch"


async def test_launch_estimate_is_the_real_one_with_its_notes_and_formulas(make_app):
    # the real estimator (tui.app._estimate: the tiny model's config.json) for a DPO job: the notes say what the
    # stage changes, the tooltip holds every part's formula as `finetui estimate` prints it
    from tui.app import Services, _estimate

    from tests.fixtures_tui import FIXED_NOW, fake_data_check, fake_model_info

    services = Services(describe_model=fake_model_info, estimate=_estimate, data_check=fake_data_check,
                        start_run=lambda job, progress=None: None, ssh_hosts=lambda: [], clock=lambda: FIXED_NOW)
    app = make_app(services=services)
    async with app.run_test(size=(120, 60)) as pilot:
        app.apply_edit("data.train_path", "finetui:samples/preference_demo.jsonl")
        app.apply_edit("data.format", "preference")
        app.apply_edit("trainer.stage", "dpo")
        await goto(pilot, "launch")
        text = screen_text(app)
        assert "Memory / rank (CPU)" in text and "logits" in text
        assert "· DPO: a pair's chosen and rejected sequences" in text and "· reference: a frozen copy" in text
        assert "· total = weights + optimizer states + framework overhead" in text
        tip = str(app.query_one("#estimate").tooltip)
        assert "reference adapters" in tip and "fused LM head (TRL)" in tip and "layers ×" in tip


async def test_launch_estimate_says_whether_it_fits_the_local_gpu_and_what_would(make_app):
    # the launch target's GPU memory is probed once (a thread); the estimate then gives its verdict and, when the
    # job does not fit, each change that lowers it with its new total
    from tui.app import Services, _estimate

    from tests.fixtures_tui import FIXED_NOW, fake_data_check, fake_model_info

    asked: list[str] = []

    def gpu_memory(host: str) -> float:
        asked.append(host)
        return 0.25  # GiB: less than the CUDA context alone

    services = Services(describe_model=fake_model_info, estimate=_estimate, data_check=fake_data_check,
                        start_run=lambda job, progress=None: None, ssh_hosts=lambda: [], clock=lambda: FIXED_NOW,
                        gpu_memory=gpu_memory)
    app = make_app(services=services)
    async with app.run_test(size=(120, 60)) as pilot:
        app.apply_edit("launch.device", "cuda")
        await goto(pilot, "launch")
        await wait_for(pilot, lambda: "does NOT fit in 0.25 GB" in screen_text(app))
        text = screen_text(app)
        assert "· to fit: gradient checkpointing →" in text
        assert asked == ["local"]  # probed once
        app.apply_edit("general.batch_size", 2)
        await pilot.pause()
        assert asked == ["local"] and "does NOT fit in 0.25 GB" in screen_text(app)


async def test_finetui_runs_dir_overrides_the_jobs_in_the_tui_as_in_the_cli(make_app, monkeypatch, tmp_path):
    monkeypatch.setenv("FINETUI_RUNS_DIR", str(tmp_path / "elsewhere"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")  # the launch step's review first
        await pilot.pause()
        await pilot.press("ctrl+l")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.launcher.jobs[0].values["launch.runs_dir"] == str(tmp_path / "elsewhere")
        assert "launch.runs_dir" not in app.job.values  # the job itself is not changed
        app.pop_screen() if len(app.screen_stack) > 1 else None
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen.runs_dir == str(tmp_path / "elsewhere")


async def test_data_check_report(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "data")
        await pilot.click("#data-check")
        await app.workers.wait_for_complete()
        await pilot.pause()
        rep = app.query_one("#data-report")
        assert rep.display
        text = screen_text(app)
        assert "train.jsonl:7" in text and "missing" in text


async def test_add_a_training_file_then_browse_replaces(make_app, tmp_path):
    """Add… appends a file to the training data (read after the others); Browse… replaces the path."""
    from tui.widgets.dialogs import FilePickerDialog

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "data")
        first = app.job.resolved()["data.train_path"]
        for button, picked, want in (("#data-add", tmp_path / "more.jsonl", f"{first},{tmp_path / 'more.jsonl'}"),
                                     ("#data-browse", tmp_path / "only.jsonl", str(tmp_path / "only.jsonl"))):
            await pilot.click(button)
            await wait_for(pilot, lambda: isinstance(app.screen, FilePickerDialog))
            app.screen.query_one("#picker-path", Input).value = str(picked)
            await pilot.click("#picker-ok")
            await wait_for(pilot, lambda: app.job.values.get("data.train_path") == want)


async def test_s3_fields_and_secret_in_memory(make_app, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "data")
        assert not app.query_one("#s3-box").display
        await pilot.click("#data-s3")  # the S3 source: an s3:// path and the connection fields
        await pilot.pause()
        assert app.job.values["data.train_path"] == "s3://"
        assert app.query_one("#s3-box").display
        assert app.focused is app.query_one(f"#{widget_id('data.train_path')}")
        await type_into(pilot, "data.train_path", "s3://bucket/train.jsonl")
        assert app.query_one("#s3-box").display
        assert app.query_one(f"#{widget_id('data.s3_endpoint_url')}")
        assert app.query_one("#s3-access", Input).disabled  # from the environment
        sec = app.query_one("#s3-secret", Input)
        assert sec.password
        sec.value = "s3cr3t"
        await pilot.pause()
        assert app.job.secrets == {"AWS_SECRET_ACCESS_KEY": "s3cr3t"}
        from engine import presets

        assert "s3cr3t" not in presets.dumps(app.job)


async def test_preset_save_open_round_trip(make_app, tmp_path):
    app = make_app()
    target = tmp_path / "mine.toml"
    async with app.run_test(size=SIZE) as pilot:
        app.apply_edit("general.epochs", 5)
        await pilot.pause()
        assert app.dirty
        await pilot.press("ctrl+s")
        await pilot.pause()
        inp = app.screen.query_one("#save-path", Input)
        inp.value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.is_file()
        assert not app.dirty
        assert app.preset_path == target
        assert state.recent_presets()[0] == target.resolve()
        saved = dict(app.job.values)
        # change, then open the saved file again: unsaved-changes prompt first
        app.apply_edit("general.epochs", 1)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert str(target.resolve()) in [o.id for o in app.screen.query_one("#preset-list").options]
        app.screen.query_one("#preset-path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.click("#btn-discard")
        await pilot.pause()
        assert app.job.values == saved
        assert not app.dirty


async def test_unsaved_changes_prompt_on_quit(make_app, tui_state):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_edit("general.epochs", 7)
        app.autosave_now()
        assert state.autosave_path().is_file()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.screen.id == "quit-dialog"
        await pilot.click("#btn-cancel")
        await pilot.pause()
        assert app.is_running and app.screen.id != "quit-dialog"
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#btn-discard")
        await pilot.pause()
    assert app.return_code == 0 or app.return_code is None
    assert not state.autosave_path().exists()


async def test_a_discarded_job_is_not_autosaved_back_by_the_pending_write(make_app, tui_state):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_edit("general.epochs", 7)  # schedules the debounced autosave (1 s)
        app.autosave_now()
        assert state.autosave_path().is_file()
        app.apply_edit("general.epochs", 8)  # and again
        app.clear_autosave()  # "quit without saving", before the debounced write
        await pilot.pause(1.3)
        assert not state.autosave_path().exists()


async def test_autosave_restore_after_crash(make_app, tui_state):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_edit("general.epochs", 9)
        await pilot.pause(1.3)  # debounced autosave
        assert state.autosave_path().is_file()
    # the "crash": no clean quit ran, the autosave is still there
    assert state.autosave_path().is_file()
    app2 = make_app(demo=False, job=None)
    async with app2.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app2.screen.query_one("#btn-restore")
        await pilot.click("#btn-restore")
        await pilot.pause()
        assert app2.job.values["general.epochs"] == 9
        assert app2.preset_path is not None and app2.preset_path.name == "demo.toml"
        assert app2.dirty


async def test_help_and_palette_commands(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "hyperparameters")
        app.query_one(f"#{widget_id('general.batch_size')}").focus()
        await pilot.press("f1")
        await pilot.pause()
        text = screen_text(app)
        assert "general.batch_size" in text and "Examples per device" in text
        await pilot.press("escape")
        await pilot.pause()
        from tui.app import FinetuiCommands

        titles = [t for t, _, _ in FinetuiCommands(app.screen)._commands()]
        for want in ("Go to Model", "Go to Launch", "Open preset…", "Save preset…", "Import…", "Export…",
                     "Launch", "Runs", "Toggle theme", "Show TOML", "Show diff", "Check data", "Help", "Quit"):
            assert want in titles
        # every key binding's action is also a palette command (q and Esc: Quit and Previous step, in the wizard)
        callbacks = [cb for _, _, cb in FinetuiCommands(app.screen)._commands()]
        same = {"quit_or_back": "quit", "back": "prev_step"}
        for b in app.BINDINGS:
            assert getattr(app, f"action_{same.get(b.action, b.action)}") in callbacks, b.action
        dark = app.current_theme.dark
        app.action_toggle_theme()
        assert app.current_theme.dark != dark
        await pilot.press("ctrl+n")
        assert app.step == "launch"
        await pilot.press("ctrl+b")
        assert app.step == "hyperparameters"


async def test_preset_dialog_exports_and_imports(make_app, tmp_path):
    from textual.widgets import Select

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_edit("general.epochs", 4)
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("#save-path", Input).value = str(tmp_path / "job.toml")
        fmt = app.screen.query_one("#export-format", Select)
        fmt.value = "fpt_studio"
        await pilot.pause()
        assert app.screen.query_one("#save-path", Input).value == str(tmp_path / "job.json")
        fmt.value = "llamafactory"
        await pilot.pause()
        assert app.screen.query_one("#save-path", Input).value == str(tmp_path / "job.yaml")
        await pilot.click("#save-export")
        await pilot.pause()
        out = tmp_path / "job.yaml"
        assert out.is_file() and "num_train_epochs: 4" in out.read_text().replace("4.0", "4")
        written, _warnings = app.last_export
        assert out in written
        assert app.dirty  # an export is not a save of the preset
        # import it back through the open dialog (unsaved changes: discard first)
        app.apply_edit("general.epochs", 1)
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("#preset-path", Input).value = str(out)
        await pilot.click("#preset-open")  # (its kind is told from its content: imported)
        await pilot.pause()
        await pilot.click("#btn-discard")
        await pilot.pause()
        assert app.job.resolved()["general.epochs"] == 4
        assert app.preset_path is None and app.dirty
        # a file that is not a job: one clear notification, the job unchanged
        bad = tmp_path / "bad.yaml"
        bad.write_text("just: [a, list\n")
        assert not app.open_path(str(bad), "import")
        assert app.job.resolved()["general.epochs"] == 4


async def test_wizard_fits_80x24_without_horizontal_scrolling(make_app):
    from textual.widget import Widget

    from tui.widgets.step import STEP_IDS

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        # the light theme has the same layout (other colours): its 80x24 picture is a snapshot test
        for step in STEP_IDS:
            await goto(pilot, step)
            await pilot.pause()
            for w in app.screen.query(Widget):
                if not w.display or not w.region:
                    continue
                if isinstance(w, (Input, TextArea)):  # a long value scrolls inside its own line
                    continue
                assert not w.show_horizontal_scrollbar, f"{step}: {w!r} scrolls horizontally"
                assert w.region.right <= 80, f"{step}: {w!r} ends at column {w.region.right}"


def test_gpu_memory_probe_reads_nvidia_smi_and_leaves_unknown_hosts_alone(tmp_path, monkeypatch):
    import tui.app as A

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n[ \"$1\" = --query-gpu=memory.total ] || exit 3\nprintf '81559\\n40960\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert A._gpu_memory("local") == 40.0  # the smallest GPU, in GiB
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: no verdict
    assert A._gpu_memory("local") is None
    # a remote target is probed over SSH only when it is a host of ~/.ssh/config, not a half-typed name
    import subprocess

    from engine.launch import ssh

    calls: list[tuple[str, str]] = []

    def fake_run(target, cmd, **kw):
        calls.append((target, cmd))
        if target == "down-box":
            raise ssh.SSHError("cannot reach down-box")
        return subprocess.CompletedProcess(cmd, 0, b"24576\n", b"")

    monkeypatch.setattr(A, "ssh_hosts", lambda: ["gpu-box", "down-box"])
    monkeypatch.setattr(ssh, "run", fake_run)
    assert A._gpu_memory("gpu-b") is None and calls == []
    assert A._gpu_memory("user@gpu-box:2222") == 24.0
    assert calls == [("user@gpu-box:2222", "nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits")]
    assert A._gpu_memory("down-box") is None  # no answer: no verdict, no error


async def test_model_step_shows_the_details_config_json_gives(make_app, tmp_path):
    """The model step with the real engine.modelinfo behind it: the built-in tiny model, a local folder with a
    Qwen2.5-0.5B config.json (494M parameters, as published), and a folder without one (one sentence)."""
    import io
    import json

    from rich.console import Console

    from tests.fixtures_tui import FIXED_NOW, fake_data_check, fake_estimate
    from tui.app import Services, _describe_model

    def details() -> str:
        con = Console(width=400, record=True, file=io.StringIO())
        con.print(app.query_one("#model-info").details)
        return con.export_text()

    qwen = tmp_path / "Qwen2.5-0.5B-Instruct"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
        "max_position_embeddings": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}))
    empty = tmp_path / "no-config"
    empty.mkdir()
    services = Services(describe_model=_describe_model, estimate=fake_estimate, data_check=fake_data_check,
                        start_run=lambda job, progress=None: None, ssh_hosts=lambda: [], clock=lambda: FIXED_NOW)
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "model")
        await wait_for(pilot, lambda: "Architecture" in details())
        text = details()
        assert "LlamaForCausalLM" in text and "2 layers, hidden 64" in text and "512 tokens" in text
        assert "built-in tiny model" in text
        await type_into(pilot, "model.name_or_path", str(qwen))
        await wait_for(pilot, lambda: "Qwen2ForCausalLM" in details())
        text = details()
        assert "494M" in text and "24 layers, hidden 896" in text and "32,768 tokens" in text, text
        assert "q_proj" in text and str(qwen / "config.json") in text
        await type_into(pilot, "model.name_or_path", str(empty))
        await wait_for(pilot, lambda: "Cannot read config.json" in details())
        assert details().strip() == f"Cannot read config.json: {empty}: no config.json found in this folder"

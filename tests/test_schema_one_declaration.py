"""A field is one declaration (engine/schema/fields.py): with nothing else touched, a new one shows up in the
form, `finetui validate`, presets, docs/parameters.md and the exports and imports (LLaMA-Factory, Nova, FPT,
OCI, watsonx: by the name it declares there) — and every view asks its kind, never switches on the kind's name."""

from __future__ import annotations

import ast
import json

import pytest
import yaml

from engine import docs, interop, presets
from engine.schema import (FIELD_BY_NAME, FIELDS, FPT, GROUP_FIELDS, KINDS, LF, NOVA, OCI, WX, Field, JobConfig, Range,
                           coerce, spec)
from tests.conftest import ROOT
from tests.fixtures_errors import assert_user_error, run_cli
from tui.widgets.form import FieldRow, row_id, widget_id

NAME = "runtime.throwaway_knob"


@pytest.fixture
def knob(monkeypatch):
    """A throwaway declaration, in the registry for this test only."""
    f = Field("runtime", "throwaway_knob", "int", 7, "Throwaway knob", "A knob only this test declares.",
              range=Range(1, 100), names={LF: "throwaway_knob", FPT: "throwaway_knob", OCI: "throwawayKnob",
                                            WX: "throwaway_knob", NOVA: "training_config.trainer.throwaway_knob"})
    FIELDS.append(f)
    monkeypatch.setitem(FIELD_BY_NAME, NAME, f)
    monkeypatch.setitem(GROUP_FIELDS, "runtime", [*GROUP_FIELDS["runtime"], f])
    yield f
    FIELDS.remove(f)


def test_validation_presets_and_cli_validate(knob, tmp_path):
    job = JobConfig(values={"data.train_path": "finetui:samples/alpaca_demo.jsonl", NAME: 500})
    assert [str(p) for p in job.problems()] == [f"{NAME}: 500 is out of range (allowed: 1 ≤ x ≤ 100, an integer)"]
    assert JobConfig().resolved()[NAME] == 7 and spec(NAME).allowed() == "1 ≤ x ≤ 100, an integer"
    assert coerce(NAME, " 42 ") == 42  # typed: coerced by its kind
    job.values[NAME] = 42
    assert job.problems() == [] and job.resolved()[NAME] == 42
    text = presets.dumps(job)
    assert "throwaway_knob = 42" in text.split("[runtime]")[1]
    assert presets.loads(text).values[NAME] == 42
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("throwaway_knob = 42", "throwaway_knob = 500"))
    assert_user_error(run_cli("validate", str(bad)), f"{NAME}: 500 is out of range (allowed: 1 ≤ x ≤ 100")
    ok = tmp_path / "ok.toml"
    ok.write_text(text)
    assert run_cli("validate", str(ok)).code == 0


def test_docs_and_llamafactory_by_its_declared_name(knob):
    page = docs.render()
    assert f"### `{NAME}` — Throwaway knob" in page and "A knob only this test declares." in page
    section = page.split(f"### `{NAME}`")[1].split("\n### ")[0]
    assert "LLaMA-Factory `throwaway_knob`" in section and "| native | [1, 100] | 7 |" in section
    job = JobConfig(values={"data.train_path": "finetui:samples/alpaca_demo.jsonl", NAME: 42})
    text, warnings = interop.export_job(job, "llamafactory")
    assert yaml.safe_load(text)["throwaway_knob"] == 42 and not any("throwaway" in w for w in warnings)
    assert text.index("throwaway_knob") > text.index("### train")  # its group's section
    back, warnings = interop.import_text(text, "llamafactory")
    assert back.values[NAME] == 42 and not any("throwaway" in w for w in warnings)
    for to, key, profile in (("fpt_studio", "throwaway_knob", "fpt_studio"), ("oci", "throwawayKnob", "oci_llama_lora"),
                             ("watsonx", "throwaway_knob", "watsonx_lora")):
        text, warnings = interop.export_job(JobConfig(profile, {**job.values, "trainer.training_type": "lora"}), to)
        assert json.loads(text)[key] == 42 and not any("throwaway" in w for w in warnings), to
        back, warnings = interop.import_text(text, to)
        assert back.values[NAME] == 42 and not any("throwaway" in w for w in warnings), to
    nova = presets.load(presets.PRESETS_DIR / "nova_lora.toml")
    nova.values[NAME] = 42
    text, warnings = interop.export_job(nova, "nova")
    assert yaml.safe_load(text.split("## Training specific configs")[1])["training_config"]["trainer"][
        "throwaway_knob"] == 42 and not any("throwaway" in w for w in warnings)
    back, warnings = interop.import_text(text, "nova")
    assert back.values[NAME] == 42 and not any("throwaway" in w for w in warnings)


async def test_the_form_shows_it_in_its_group(knob, make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        app.goto("hyperparameters")
        await pilot.pause()
        app.query_one("#hp-form").expand("runtime")  # its group's fold
        await pilot.pause()
        row = app.query_one(f"#{row_id(NAME)}", FieldRow)
        assert row.label_text.endswith("Throwaway knob") and row.hint_text == "1 ≤ x ≤ 100"
        app.query_one(f"#{widget_id(NAME)}").value = "500"
        await pilot.pause()
        assert app.job.values[NAME] == 500 and "out of range" in str(row.query_one(".field-problem").render())


def test_no_view_switches_on_a_kind_name():
    """The kinds are objects (engine/schema/kinds.py); nothing outside compares a field's kind to a kind's name."""
    names = set(KINDS)
    bad = []
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "tui").rglob("*.py")]:
        if path.parent.name == "schema":
            continue
        text = path.read_text(encoding="utf-8")
        if ".kind" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "kind":
                consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in names]
                if consts:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad

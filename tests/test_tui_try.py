"""Trying a finished run's model: the model server (engine.train.generate) and the dashboard's t screen.

The run's final model is the real tiny model (saved with save_pretrained, loaded with the real
from_pretrained in a child process); the run's events are a fake run's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_run import harness_app, wait_for, write_fake_run
from tests.fixtures_train import train_env

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def finished_run(tmp_path, tiny_model) -> Path:
    run = tmp_path / "runs" / "ft_done"
    write_fake_run(run, steps=20)
    shutil.copytree(tiny_model, run / "final")
    return run


def test_the_model_server_answers_one_line_per_prompt(finished_run, tmp_path):
    reqs = [{"prompt": "Name three colours.", "max_new_tokens": 6, "min_new_tokens": 6}, "not json",
            {"no": "prompt"}, {"prompt": "Again", "max_new_tokens": 3, "min_new_tokens": 3}]
    p = subprocess.run([sys.executable, "-m", "engine.train.generate", str(finished_run), "--device", "cpu"],
                       input="".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in reqs), text=True,
                       capture_output=True, timeout=240, cwd=ROOT, env=train_env())
    assert p.returncode == 0, p.stderr[-2000:]
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert out[0] == {"ready": True, "model": "finetui:tiny-llama", "device": "cpu", "chat": True}
    assert isinstance(out[1]["text"], str) and out[1]["text"]  # (six tokens of a random tiny model)
    assert out[2]["error"].startswith("bad request: JSONDecodeError") and out[3]["error"].startswith("bad request: KeyError")
    assert isinstance(out[4]["text"], str) and len(out) == 5
    # a run without a final model: one line saying why, exit 2
    (finished_run / "final" / "config.json").unlink()
    p = subprocess.run([sys.executable, "-m", "engine.train.generate", str(finished_run)], input="", text=True,
                       capture_output=True, timeout=120, cwd=ROOT, env=train_env())
    assert p.returncode == 2 and json.loads(p.stdout)["error"].startswith("run ft_done has no final model")


async def test_t_on_a_finished_run_tries_its_model(finished_run, monkeypatch):
    from tui.screens.monitor import MonitorScreen
    from tui.screens.try_model import TryScreen

    for k, v in train_env().items():
        monkeypatch.setenv(k, v)
    app = harness_app(lambda: MonitorScreen(finished_run))
    async with app.run_test(size=(100, 30)) as pilot:
        mon = app.screen
        await wait_for(pilot, lambda: mon.loaded)
        assert "t: try it" in mon._end_text()
        await pilot.press("t")
        scr = app.screen
        assert isinstance(scr, TryScreen)
        await wait_for(pilot, lambda: scr.ready, timeout=180)
        inp = scr.query_one("#try-input")
        await wait_for(pilot, lambda: app.focused is inp, timeout=10)  # (the just-enabled input takes focus)
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: scr.answers == 1, timeout=120)
        lines = [str(line.text) for line in scr.query_one("#try-log").lines]
        assert lines[0] == "you  ▸ hello" and lines[1].startswith("model ▸ ")
        proc = scr.proc
        await pilot.press("escape")
        assert app.screen is mon
        await wait_for(pilot, lambda: proc.poll() is not None, timeout=20)  # the model process ends with the screen


def test_generate_without_a_prompt_answers_each_line_it_reads(finished_run):
    """`finetui generate RUN` with prompts piped in: the model is loaded once, one answer line per prompt."""
    r = subprocess.run([sys.executable, "-m", "tui.cli", "generate", str(finished_run), "--max-new-tokens", "5",
                        "--min-new-tokens", "5", "--device", "cpu"], input="Hello\n\nName three colours.\n", text=True,
                       capture_output=True, timeout=240, cwd=ROOT, env=train_env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == 2 and "Traceback" not in r.stderr  # (the blank line is skipped)


def test_merge_writes_one_plain_model_that_computes_what_base_plus_adapter_does(tmp_path, tiny_model):
    """`finetui merge RUN`: the adapter merged into the base (real peft merge_and_unload, real save_pretrained);
    the merged folder loads alone and gives the base+adapter's logits. Bad cases: one line, nothing overwritten."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine import presets
    from engine.schema import JobConfig

    run = tmp_path / "runs" / "ft_lora"
    write_fake_run(run, steps=5)
    presets.save(JobConfig(values={"model.name_or_path": "finetui:tiny-llama",
                                   "data.train_path": "finetui:samples/alpaca_demo.jsonl"}),
                 run / "config.toml", resolved=True)
    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model)),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(str(run / "final"))
    env = train_env(FINETUI_CACHE_DIR=str(tiny_model.parent))
    r = subprocess.run([sys.executable, "-m", "tui.cli", "merge", str(run)], capture_output=True, text=True,
                       timeout=240, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    merged = run / "merged"
    assert r.stdout.strip() == str(merged) and not (run / "merged.part").exists()
    assert (merged / "config.json").is_file() and (merged / "tokenizer_config.json").is_file()
    assert not (merged / "adapter_config.json").exists()
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        want = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)),
                                         str(run / "final"))(ids).logits
        got = AutoModelForCausalLM.from_pretrained(str(merged))(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(tiny_model))(ids).logits
    assert torch.allclose(got, want, atol=1e-4) and not torch.allclose(got, plain, atol=1e-4)
    # again: the folder exists and is kept
    r = subprocess.run([sys.executable, "-m", "tui.cli", "merge", str(run)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 2 and r.stderr.strip() == f"{merged} already exists; choose another folder with -o"
    # a full model: nothing to merge
    r = subprocess.run([sys.executable, "-m", "tui.cli", "merge", str(tmp_path / "full")], capture_output=True,
                       text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 2 and "no run" in r.stderr

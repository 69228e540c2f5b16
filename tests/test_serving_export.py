"""`finetui export-model RUN --to hf|vllm|ollama`: a real short CPU training run on the tiny model, exported the
three ways; each export loaded with the real from_pretrained and checked against the run's own model (greedy
tokens).  The Modelfile's TEMPLATE is compared with the Jinja chat template it came from, conversation by
conversation; templates that cannot be converted faithfully get a note instead of a wrong template."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_train import describe_run, run_batch, session_cache, train_env, write_run

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)

CONVS = [
    ([("user", "Hi")], True),
    ([("system", "You are terse."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")], True),
    ([("user", "a\nb "), ("assistant", " c"), ("user", "d")], True),
    ([("system", "S"), ("user", "U")], True),
]

LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
DEFAULT_SYSTEM = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}"
                  "{% endif %}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
                  "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
TRIMS = ("{% for message in messages %}{{ '[' + message['role'] + '] ' + message['content'] | trim + '\\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}")


def _render(tok, template: str):
    def render(messages, add_generation_prompt):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                       chat_template=template)
    return render


def test_chat_templates_convert_to_go_templates_that_render_the_same(tiny_model):
    from transformers import AutoTokenizer

    from engine import chattemplate as ct

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    for name, template in (("chatml", tok.chat_template), ("llama3", LLAMA3)):
        render = _render(tok, template)
        got = ct.convert(render)
        assert got.template is not None, (name, got.note)
        for conv, gen in CONVS:
            msgs = [{"role": r, "content": c} for r, c in conv]
            assert ct.render_go(got.template, msgs) == render(msgs, gen), (name, conv)
        # a conversation that ends with the assistant: Ollama continues that message (no end of turn after it)
        msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]
        assert render(msgs, False).startswith(ct.render_go(got.template, msgs) + "<|")
    # Llama 3's {{ bos_token }} head: left out when the tokenizer adds BOS itself (else the server doubles it)
    assert ct.convert(_render(tok, LLAMA3)).template.startswith(tok.bos_token)
    assert ct.convert(_render(tok, LLAMA3), bos=tok.bos_token, adds_bos=True).template.startswith("{{ range")
    # templates that do more than wrap messages: no template, a one-line reason
    for template in (DEFAULT_SYSTEM, TRIMS, "{{ raise_exception('no') }}"):
        got = ct.convert(_render(tok, template))
        assert got.template is None and got.note and "\n" not in got.note
    mf = ct.modelfile(".", ct.convert(_render(tok, DEFAULT_SYSTEM)), ["<|im_end|>"])
    assert not any(line.startswith("TEMPLATE") for line in mf.splitlines())
    assert "\n# No TEMPLATE: the chat template " in mf
    # stop tokens: EOS, then the special token that closes an assistant turn
    special = dict(zip(tok.all_special_tokens, tok.all_special_ids))
    assert ct.stop_tokens(_render(tok, tok.chat_template), special, [tok.eos_token]) == ["<|im_end|>"]
    special["<|eot_id|>"] = 9
    assert ct.stop_tokens(_render(tok, LLAMA3), special, ["<|endoftext|>"]) == ["<|endoftext|>", "<|eot_id|>"]
    assert ct.modelfile(".", ct.GoTemplate(None, "x"), ['a"b']).endswith('PARAMETER stop "a\\"b"\n')


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model) -> Path:
    """Two real short CPU runs of the tiny model: LoRA, and full fine-tuning."""
    base = tmp_path_factory.mktemp("export-runs")
    write_run(base / "ft_lora", **{"general.max_steps": 2})
    write_run(base / "ft_full", **{"trainer.training_type": "full", "general.max_steps": 2,
                                   "general.learning_rate": 0.005})
    res = run_batch([{"name": n, "run_dir": str(base / n), "kind": "train", "hook": None, "at": 0}
                     for n in ("ft_lora", "ft_full")], session_cache(tmp_path_factory))
    for n in ("ft_lora", "ft_full"):
        assert res[n]["code"] == 0, describe_run(base / n)
    return base


@pytest.fixture
def lora_run(trained) -> Path:
    return trained / "ft_lora"


def _export(run: Path, *args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", "export-model", str(run), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=train_env(FINETUI_CACHE_DIR=str(cache)))


def test_export_model_for_vllm_ollama_and_hf_from_a_real_run(lora_run, tiny_model, tmp_path):
    cache = tiny_model.parent
    # vLLM: a LoRA run stays base + adapter, served with --enable-lora
    r = _export(lora_run, "--to", "vllm", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    out = lora_run / "export-vllm"
    folder, cmd = r.stdout.strip().splitlines()
    assert folder == str(out) and not (lora_run / "export-vllm.part").exists()
    assert cmd == (f"vllm serve {tiny_model} --enable-lora --lora-modules ft_lora={out / 'adapter'} "
                   f"--tokenizer {out / 'adapter'}")
    assert (out / "serve.sh").read_text().splitlines()[-1] == f"exec {cmd}"
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "adapter" / "tokenizer_config.json").is_file()
    assert not (out / "adapter" / "training_args.bin").exists()
    meta = json.loads((out / "export.json").read_text())
    assert meta["layout"] == "adapter" and meta["check"]["same"] and len(meta["check"]["run_tokens"]) == 8
    assert "checked: the exported model loads with from_pretrained" in r.stderr

    # Ollama: the merged model and a Modelfile (the tiny model's ChatML converted; <|im_end|> stops a turn)
    r = _export(lora_run, "--to", "ollama", "-o", str(tmp_path / "ollama"), cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "ollama"
    assert r.stdout.strip().splitlines() == [str(out), f"cd {out} && ollama create ft_lora -f Modelfile"]
    assert (out / "serve.sh").read_text().splitlines()[-1] == f"cd {out} && ollama create ft_lora -f Modelfile"
    mf = (out / "Modelfile").read_text()
    assert "\nFROM .\n" in mf and 'TEMPLATE """{{ range $i, $_ := .Messages }}' in mf
    assert mf.rstrip().splitlines()[-1] == 'PARAMETER stop "<|im_end|>"'
    assert "<|im_start|>user\n{{ .Content }}<|im_end|>\n" in mf
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    from engine.serving import gguf_converter

    if gguf_converter() is None:  # said in one line when llama.cpp's converter is not installed here
        assert "note: GGUF: llama.cpp's converter (convert_hf_to_gguf.py) is not installed here" in r.stderr
    assert json.loads((out / "export.json").read_text())["check"]["same"]

    # hf: one plain folder; it loads alone and computes what the run's base + adapter computes
    r = _export(lora_run, "--to", "hf", "-o", str(tmp_path / "hf"), cache=cache)
    assert r.returncode == 0 and r.stdout.strip() == str(tmp_path / "hf"), r.stderr[-3000:]
    assert not (tmp_path / "hf" / "serve.sh").exists()

    # an existing folder is never written into: one line, exit 2, the folder as it was
    before = sorted(p.name for p in (tmp_path / "hf").iterdir())
    r = _export(lora_run, "--to", "hf", "-o", str(tmp_path / "hf"), cache=cache)
    assert r.returncode == 2 and r.stderr.strip() == f"{tmp_path / 'hf'} already exists; choose another folder with -o"
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == before
    r = _export(lora_run, "--to", "gguf", cache=cache)
    assert r.returncode == 2 and r.stderr.strip() == "--to: 'gguf' is not offered (allowed: hf, vllm, ollama)"


def test_the_check_catches_an_export_that_generates_otherwise(lora_run, tiny_model, tmp_path, monkeypatch):
    """The check is not a formality: an exported folder holding other weights (the untrained base) fails it."""
    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tiny_model.parent))
    from engine import serving
    from engine.train.generate import final_dir

    _, res = final_dir(lora_run)
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_model, wrong)
    exp = serving.Export(out=wrong, to="hf", layout="full")
    got = serving._check(lora_run, wrong, str(tiny_model), exp, res)
    assert got["same_prompt_ids"] and not got["same"] and got["run_tokens"] != got["export_tokens"]


def test_prompt_tuning_runs_and_runs_without_a_model_are_refused_in_one_line(tmp_path, tiny_model):
    run = tmp_path / "ft_pt"
    write_run(run, **{"trainer.training_type": "prompt_tuning", "adapter.prompt_tuning_init": "random"})
    r = _export(run, "--to", "vllm", cache=tiny_model.parent)
    assert r.returncode == 2 and r.stderr.strip().startswith("run ft_pt has no final model"), r.stderr
    (run / "final").mkdir()
    (run / "final" / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    r = _export(run, "--to", "vllm", cache=tiny_model.parent)
    assert r.returncode == 2 and "trained prompt tuning" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (run / "export-vllm").exists() and not (run / "export-vllm.part").exists()


def test_a_full_fine_tune_is_served_as_its_own_folder(trained, tiny_model, tmp_path):
    run = trained / "ft_full"
    out = tmp_path / "served"
    r = _export(run, "--to", "vllm", "-o", str(out), cache=tiny_model.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines() == [str(out), f"vllm serve {out} --served-model-name ft_full"]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    assert not (out / "training_args.bin").exists() and not (out / "adapter").exists()
    meta = json.loads((out / "export.json").read_text())
    assert meta["layout"] == "full" and meta["check"]["same"]

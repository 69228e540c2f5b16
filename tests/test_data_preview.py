"""The loss mask before launch: the first rows through the worker's own tokenization, for two real chat
template families (Qwen2.5's ChatML, Llama-3's headers) and a tokenizer with none, built locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from rich.console import Console

from engine.data.preview import inspect_rows, preview
from engine.data.tokenize import load_tokenizer, prepare_tokenizer
from tests.chat_tokenizers import build_chat_tokenizer
from tests.fixtures_data import read_pty
from tests.fixtures_data import write_jsonl

ASK = {"messages": [{"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": "Paris is the capital."}]}
LONG = {"messages": [{"role": "system", "content": "Be short."},
                     {"role": "user", "content": "Tell me about the weather in the city today. " * 6},
                     {"role": "assistant", "content": "Sunny."}]}
NO_ANSWER = {"messages": [{"role": "user", "content": "Hello?"}]}


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat-tokenizers")
    return {f: str(build_chat_tokenizer(f, root / f)) for f in ("qwen", "llama3", "llama3-no-eot", "plain")}


def _load(path, stage="sft"):
    tok = load_tokenizer(path)
    return tok, prepare_tokenizer(tok, stage, lambda _m: None)


def _trained(r):
    return "".join(s["text"] for s in r["segments"] if s["trained"])


def _prompt(r):
    return "".join(s["text"] for s in r["segments"] if not s["trained"])


def test_qwen_chatml_trains_the_answer_and_im_end_only(toks):
    tok, fb = _load(toks["qwen"])
    rep = inspect_rows(tok, [("a:1", ASK)], "sft", 4096, fb)
    r = rep["rows"][0]
    assert fb is None and rep["end_of_turn"] == "<|im_end|>" and rep["problems"] == []
    assert _trained(r) == "Paris is the capital.<|im_end|>"
    # the template's default system prompt and the user turn are masked
    assert "You are Qwen, created by Alibaba Cloud" in _prompt(r) and "<|im_start|>user\nWhat is" in _prompt(r)
    assert r["tokens"] == r["prompt_tokens"] + r["trained_tokens"] == sum(s["tokens"] for s in r["segments"])
    assert r["trained_tokens"] == len(tok("Paris is the capital.<|im_end|>", add_special_tokens=False)["input_ids"])
    assert r["problems"] == [] and r["truncated"] == 0


def test_llama3_headers_one_bos_and_eot_trained(toks):
    tok, fb = _load(toks["llama3"])
    rep = inspect_rows(tok, [("a:1", ASK)], "sft", 4096, fb)
    r = rep["rows"][0]
    assert rep["end_of_turn"] == "<|eot_id|>" and rep["problems"] == []
    assert _trained(r) == "Paris is the capital.<|eot_id|>"
    assert _prompt(r).startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    assert _prompt(r).count("<|begin_of_text|>") == 1
    assert _prompt(r).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_bos_twice_is_said(toks):
    # a corpus row that already starts with the BOS text, through a tokenizer that adds one
    tok, _ = _load(toks["llama3"], "pretrain")
    rep = inspect_rows(tok, [("c:1", {"text": "<|begin_of_text|>Some plain text."}),
                             ("c:2", {"text": "Some plain text."})], "pretrain", 4096)
    assert [bool(r["problems"]) for r in rep["rows"]] == [True, False]
    assert "BOS <|begin_of_text|> twice" in rep["rows"][0]["problems"][0]
    assert "1 of 2 rows start with BOS twice" in rep["problems"]


@pytest.mark.parametrize("family", ["qwen", "llama3"])
def test_cut_answers_counted_apart_from_cut_rows(toks, family):
    tok, fb = _load(toks[family])
    full = inspect_rows(tok, [("a:1", ASK), ("a:2", LONG)], "sft", None, fb)["rows"]
    # a length that keeps all of the first row's prompt and part of its answer, and none of the long row's answer
    last = full[0]["segments"][-1]
    answer_end = full[0]["tokens"] - (0 if last["trained"] else last["tokens"])  # ChatML: a masked "\n" follows
    limit = answer_end - 2
    assert full[1]["prompt_tokens"] > limit
    rep = inspect_rows(tok, [("a:1", ASK), ("a:2", LONG)], "sft", limit, fb)
    a, b = rep["rows"]
    assert a["truncated"] == full[0]["tokens"] - limit and a["answer_lost"] == 2
    assert a["trained_tokens"] == full[0]["trained_tokens"] - 2
    assert "cuts the answer: 2 of" in a["problems"][0]
    assert b["trained_tokens"] == 0 and "cuts the whole answer" in b["problems"][0]
    assert rep["rows_cut"] == 2 and rep["rows_answer_lost"] == 1
    assert f"2 of 2 rows are cut by max_sequence_length {limit}; 1 of them lose their whole answer" in rep["problems"]
    # the same rows through the worker's pre-tokenization: the whole-answer-lost row is the one it drops
    from engine.train.trainers import tokenize_lm

    kept, truncated = tokenize_lm(tok, [ASK, LONG], "sft", limit)
    assert truncated == 2 and len(kept) == 1
    assert sum(1 for x in kept[0]["labels"] if x != -100) == a["trained_tokens"]
    assert len(kept[0]["input_ids"]) == a["tokens"]


def test_row_with_no_trained_token(toks):
    tok, fb = _load(toks["qwen"])
    rep = inspect_rows(tok, [("a:1", ASK), ("a:2", NO_ANSWER)], "sft", 4096, fb)
    assert rep["rows"][1]["trained_tokens"] == 0 and "no trained token" in rep["rows"][1]["problems"][0]
    assert "1 of 2 rows have no trained token" in rep["problems"]


def test_template_without_end_of_turn_marker(toks):
    tok, fb = _load(toks["llama3-no-eot"])
    rep = inspect_rows(tok, [("a:1", ASK)], "sft", 4096, fb)
    assert rep["end_of_turn"] is None
    assert _trained(rep["rows"][0]) == "Paris is the capital."
    assert any("no end-of-turn marker" in p for p in rep["problems"])


def test_no_template_falls_back_to_chatml_as_the_worker_does(toks):
    tok, fb = _load(toks["plain"])
    assert fb and "no chat template; using ChatML" in fb
    rep = inspect_rows(tok, [("a:1", ASK)], "sft", 4096, fb)
    assert rep["problems"][0] == fb and rep["end_of_turn"] == "<|im_end|>"
    assert _trained(rep["rows"][0]) == "Paris is the capital.<|im_end|>"
    # the worker's tokenizer loading says the same and applies the same template
    from engine.train.modeling import load_tokenizer as worker_tokenizer

    said = []
    wtok = worker_tokenizer(toks["plain"], {"model.trust_remote_code": False, "trainer.stage": "sft"}, said.append)
    assert said == [fb] and wtok.chat_template == tok.chat_template


def test_preview_of_a_job(toks, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", [ASK, LONG, ASK])
    res = {"model.name_or_path": toks["llama3"], "model.trust_remote_code": False, "trainer.stage": "sft",
           "data.train_path": str(data), "data.format": "sharegpt", "general.max_sequence_length": 4096}
    rep = preview(res, n=2)
    assert [r["location"].rsplit(":", 1)[1] for r in rep["rows"]] == ["1", "2"]
    assert _trained(rep["rows"][0]) == "Paris is the capital.<|eot_id|>"


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=180, env=dict(os.environ))


def test_cli_preview_marks_trained_tokens_and_problems(toks, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", [ASK, LONG, ASK, ASK])
    p = _run_cli(str(data), "--format", "sharegpt", "--tokenizer", toks["qwen"], "--preview", "2",
                 "--max-length", "60")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.count("── ") == 2  # two rows previewed
    assert "prompt (masked) +" in out and "trained" in out
    assert "loss mask: end-of-turn marker <|im_end|>" in out
    assert "mask problem: 2 of 2 rows are cut by max_sequence_length 60" in out
    assert "lose their whole answer and are dropped" in out  # over the whole file, from the token statistics
    j = json.loads(_run_cli(str(data), "--format", "sharegpt", "--tokenizer", toks["qwen"], "--preview", "1",
                            "--json").stdout)
    assert len(j["preview"]) == 1 and j["loss_mask"]["end_of_turn"] == "<|im_end|>"
    assert "".join(s["text"] for s in j["preview"][0]["segments"] if s["trained"]).endswith("<|im_end|>")


def test_rich_rendering_highlights_trained_and_dims_prompt(toks, tmp_path):
    from engine.data.check import check
    from tui.widgets.maskview import mask_preview

    tok, fb = _load(toks["llama3"])
    data = write_jsonl(tmp_path / "chat.jsonl", [ASK])
    rep = check(str(data), "sharegpt", stage="sft", tokenizer=tok, max_length=4096, template_fallback=fb)
    con = Console(width=200, force_terminal=True, color_system="standard", record=True)
    con.print(mask_preview(rep))
    ansi = con.export_text(styles=True)
    assert "\x1b[1;32mParis is the capital.<|eot_id|>" in ansi  # trained: bold green
    assert "\x1b[2m<|begin_of_text|><|start_header_id|>user" in ansi  # prompt: dim


def test_tui_data_step_preview_panel(toks, tmp_path):
    from tui.app import _data_check
    from engine.schema import JobConfig
    from tui.screens.data import render_report

    data = write_jsonl(tmp_path / "chat.jsonl", [ASK, ASK])
    job = JobConfig()
    job.values.update({"model.name_or_path": toks["qwen"], "data.format": "sharegpt", "data.train_path": str(data)})
    rep = _data_check(job)  # the real `finetui data check --json` in a child process, with the model's tokenizer
    con = Console(width=120, record=True, color_system=None)
    con.print(render_report(rep))
    text = con.export_text()
    assert f"What the loss trains on — {toks['qwen']}" in text
    assert "trained tokens · prompt (masked, not trained)" in text
    assert "Paris is the capital.<|im_end|>" in text


def test_cli_in_a_terminal_highlights_with_rich(toks, tmp_path):
    """stdout a terminal (a pty): the rows in colour — trained bold green, prompt dim — the summary once."""
    import pty
    import re

    data = write_jsonl(tmp_path / "chat.jsonl", [ASK])
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "tui.cli", "data", "check", str(data), "--format", "sharegpt",
                          "--tokenizer", toks["llama3"], "--preview", "1"], stdout=slave, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, COLUMNS="200", TERM="xterm-256color"))
    os.close(slave)
    out = read_pty(master)
    assert p.wait(timeout=120) == 0
    text = out.decode(errors="replace")
    assert re.search(r"\x1b\[1;32mParis is the capital\.<\|eot_id\|>", text), text[-2000:]
    assert re.search(r"\x1b\[2m<\|begin_of_text\|>", text)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert plain.count("loss mask: end-of-turn marker <|eot_id|>") == 1 and "result: OK" in plain


def test_preference_rows_preview_the_chosen_answer_and_say_who_tokenizes(toks):
    tok, fb = _load(toks["qwen"], "dpo")
    row = {"prompt": [{"role": "user", "content": "Pick a colour."}],
           "chosen": [{"role": "assistant", "content": "Blue."}],
           "rejected": [{"role": "assistant", "content": "Purple, obviously."}]}
    rep = inspect_rows(tok, [("p:1", row)], "dpo", 4096, fb)
    assert _trained(rep["rows"][0]) == "Blue.<|im_end|>" and "TRL's trainer" in rep["note"]
    assert inspect_rows(tok, [("a:1", ASK)], "sft", 4096, fb)["note"] is None

"""The data check: report contents, tokenization and masking, truncation statistics, CLI exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine.data import load_rows
from engine.data.check import check, format_report
from engine.data.tokenize import IGNORE, render_preview, tokenize_row
from tests.fixtures_data import write_json, write_jsonl

ROWS = [{"instruction": f"Reverse the word {w}", "input": "", "output": w[::-1]}
        for w in ("apple", "banana", "cherry", "damson", "elder", "fig")]


def cli(*args):
    """In-process CLI run (fast); ``.exit_code``, ``.stdout``, ``.stderr``."""
    from typer.testing import CliRunner

    from tui.cli import app

    return CliRunner().invoke(app, ["data", "check", *args])


def run_cli(*args, env=None, timeout=180):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=e)


# ------------------------------------------------------------------------------ tokenization / masking

def test_sft_masking_on_a_real_tokenized_row(data_tokenizer):
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."},
                        {"role": "assistant", "content": "5"}, {"role": "user", "content": "Add 4 and 4."},
                        {"role": "assistant", "content": "8"}]}
    out = tokenize_row(data_tokenizer, row, "sft", None)
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == len(labels) and out["truncated"] == 0
    full = data_tokenizer.apply_chat_template(row["messages"], tokenize=False)
    assert data_tokenizer.decode(ids) == full
    trained = [i for i, l in zip(ids, labels) if l != IGNORE]
    assert all(l in (IGNORE, i) for i, l in zip(ids, labels))
    # exactly the two answers with their end-of-turn markers are trained
    assert data_tokenizer.decode(trained) == "5<|im_end|>8<|im_end|>"
    segs = render_preview(data_tokenizer, ids, labels)
    assert [s["text"] for s in segs if s["trained"]] == ["5<|im_end|>", "8<|im_end|>"]
    assert "".join(s["text"] for s in segs) == full
    # the prompt (system + user + the assistant header) is masked
    assert segs[0]["trained"] is False and segs[0]["text"].endswith("<|im_start|>assistant\n")


def test_mask_matches_the_templates_generation_markers(data_tokenizer):
    """Our mask equals transformers' assistant mask from {% generation %} (what TRL's assistant_only_loss uses)."""
    msgs = [{"role": "user", "content": "Uppercase the text.\nforest"}, {"role": "assistant", "content": "FOREST"},
            {"role": "user", "content": "Reverse the word.\ntiger"}, {"role": "assistant", "content": "regit"}]
    ref = data_tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    out = tokenize_row(data_tokenizer, {"messages": msgs}, "sft", None)
    assert out["input_ids"] == list(ref["input_ids"])
    assert [int(l != IGNORE) for l in out["labels"]] == list(ref["assistant_masks"])


def test_corpus_trains_every_token_and_ends_with_eos(data_tokenizer):
    out = tokenize_row(data_tokenizer, {"text": "The capital of Elbonia is Mudtown."}, "pretrain", None)
    assert out["labels"] == out["input_ids"] and out["input_ids"][-1] == data_tokenizer.eos_token_id


def test_truncation_counts_lost_tokens(data_tokenizer):
    row = {"text": "Sky is blue. Grass is green. Snow is white. Coal is black."}
    full = tokenize_row(data_tokenizer, row, "pretrain", None)
    cut = tokenize_row(data_tokenizer, row, "pretrain", 5)
    assert len(cut["input_ids"]) == 5 and cut["truncated"] == len(full["input_ids"]) - 5
    assert cut["input_ids"] == full["input_ids"][:5]


def test_preference_row_has_rejected(data_tokenizer):
    row = {"prompt": [{"role": "user", "content": "Add 1 and 1."}], "chosen": [{"role": "assistant", "content": "2"}],
           "rejected": [{"role": "assistant", "content": "11"}]}
    out = tokenize_row(data_tokenizer, row, "dpo", None)
    t = lambda o: data_tokenizer.decode([i for i, l in zip(o["input_ids"], o["labels"]) if l != IGNORE])  # noqa
    assert t(out) == "2<|im_end|>" and t(out["rejected"]) == "11<|im_end|>"


def test_tool_rows_from_glaive_tokenize(data_tokenizer, compat_data, data_res):
    d = load_rows(data_res(data__train_path=str(compat_data / "glaive_toolcall_en_demo.json"), data__format="sharegpt"))
    row = next(r for r in d.train if any(m["role"] == "tool" for m in r["messages"]))
    out = tokenize_row(data_tokenizer, row, "sft", None)
    trained = data_tokenizer.decode([i for i, l in zip(out["input_ids"], out["labels"]) if l != IGNORE])
    for m in row["messages"]:
        if m["role"] == "assistant":
            assert m["content"] in trained
        elif m["role"] == "tool":
            assert m["content"] not in trained


# ------------------------------------------------------------------------------ report

def test_report_counts_duplicates_empty_and_invalid(tmp_path):
    rows = ROWS + [ROWS[0], {"instruction": "x"},
                   {"conversations": []}]
    p = write_jsonl(tmp_path / "d.jsonl", rows)
    rep = check(str(p), "alpaca", stage="sft", allow_invalid=30)
    assert rep["ok"] and rep["rows"] == {"total": 9, "valid": 7, "invalid": 2, "invalid_pct": pytest.approx(22.2222)}
    assert rep["duplicates"] == 1 and rep["dropped"] == 2
    assert rep["invalid_rows"] == [
        {"location": f"{p}:8", "file": str(p), "line": 8, "field": "output", "reason": "missing key `output`"},
        {"location": f"{p}:9", "file": str(p), "line": 9, "field": "instruction",
         "reason": "missing key `instruction`"}]
    assert rep["preview"][0]["messages"] == [{"role": "user", "content": "Reverse the word apple"},
                                             {"role": "assistant", "content": "elppa"}]
    assert rep["compat"]["ok"] and rep["tokens"] is None
    assert len(rep["preview"]) == 3 and rep["preview"][0]["segments"][-2] == {"text": "elppa", "trained": True}
    rep = check(str(p), "alpaca", stage="sft", allow_invalid=20)
    assert not rep["ok"] and rep["errors"] == [
        f"{p}: 2 of 9 rows invalid (22.22%, allowed 20%); first: {p}:8: output: missing key `output`"]


def test_report_empty_strings(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "hi"}]},
            {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}]
    rep = check(str(write_jsonl(tmp_path / "d.jsonl", rows)), "sharegpt")
    assert rep["ok"] and rep["empty_strings"] == 1 and "1 rows with an empty string" in rep["warnings"]


def test_invalid_list_is_capped_at_50(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": ""}] * 80 + [{"text": "ok"}])
    rep = check(str(p), "corpus", allow_invalid=100)
    assert len(rep["invalid_rows"]) == 50 and rep["invalid_more"] == 30
    assert "… and 30 more" in format_report(rep)


def test_incompatible_trainer_fails_naming_allowed(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", ROWS)
    rep = check(str(p), "alpaca", stage="pretrain")
    assert not rep["ok"]
    assert rep["compat"] == {"ok": False, "stage": "pretrain", "allowed": ["corpus"],
                             "message": "data.format: alpaca data cannot train the pretrain trainer (allowed: corpus)"}


def test_profile_restricts_formats(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", ROWS)
    from engine.schema import profiles

    nova = next((n for n, pr in profiles.PROFILES.items()
                 if tuple(pr.formats_by_stage.get("sft", ())) == ("bedrock_converse",)), None)
    assert nova is not None, "no profile restricts the sft formats to bedrock_converse (Nova does)"
    rep = check(str(p), "alpaca", stage="sft", profile=nova)
    assert not rep["ok"] and rep["compat"]["allowed"] == ["bedrock_converse"]


def test_token_statistics_and_truncation(tmp_path, data_tokenizer):
    rows = [{"text": "word " * n} for n in (1, 5, 10, 50, 100)]
    p = write_jsonl(tmp_path / "c.jsonl", rows)
    lengths = sorted(len(tokenize_row(data_tokenizer, r, "pretrain", None)["input_ids"]) for r in rows)
    rep = check(str(p), "corpus", stage="pretrain", tokenizer=data_tokenizer, tokenizer_name="tiny", max_length=20)
    t = rep["tokens"]
    assert (t["min"], t["median"], t["max"]) == (lengths[0], lengths[2], lengths[-1])
    assert t["exact"] and t["sampled_rows"] == 5
    over = [n for n in lengths if n > 20]
    assert t["over_max"] == len(over) and t["tokens_lost"] == sum(n - 20 for n in over)
    assert rep["preview"][0]["segments"][0]["trained"] is True
    assert any("exceed max length 20" in w for w in rep["warnings"])


def test_token_sample_estimates_for_big_files(tmp_path, data_tokenizer):
    rows = [{"text": "a b c d e f g h"}] * 300
    p = write_jsonl(tmp_path / "c.jsonl", rows)
    rep = check(str(p), "corpus", tokenizer=data_tokenizer, max_length=4, token_sample=50)
    assert rep["tokens"]["sampled_rows"] == 50 and not rep["tokens"]["exact"]
    assert rep["tokens"]["over_max"] == 300 and rep["duplicates"] == 299


def test_missing_file_report(tmp_path):
    rep = check(str(tmp_path / "nope.jsonl"), "alpaca")
    assert not rep["ok"] and rep["errors"] == [f"{tmp_path / 'nope.jsonl'}: no such file or folder"]


def test_check_streams_without_keeping_rows(tmp_path, monkeypatch):
    """Only bounded state is kept: reservoir, preview, 8-byte hashes — not the rows; the fast path holds one block of
    the file at a time (256 KiB here, of a 1.7 MB file)."""
    from engine.data import arrowscan

    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 256 << 10)
    import tracemalloc

    p = tmp_path / "big.jsonl"
    with open(p, "w") as f:
        for i in range(10_000):
            f.write(json.dumps({"instruction": f"Reverse the word number {i} please", "input": "x" * 50,
                                "output": f"{i}" * 10}) + "\n")
    # imports are not rows: whatever the check loads on first use (pyarrow's pandas shim, numpy.random, the thread
    # pool) is loaded by a first check of a small file before measuring — else the result depends on which tests
    # ran before in the same process
    small = tmp_path / "small.jsonl"
    small.write_text("".join(p.read_text().splitlines(keepends=True)[:100]))
    check(str(small), "alpaca", token_sample=500)

    tracemalloc.start()
    rep = check(str(p), "alpaca", token_sample=500)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rep["rows"]["valid"] == 10_000
    # the canonical rows alone would take over 10 MB; the check stays far below
    assert peak < 3 * 2**20, peak


# ------------------------------------------------------------------------------ CLI

def test_cli_exit_codes_and_json(tmp_path):
    good = write_json(tmp_path / "good.json", ROWS)
    bad = write_jsonl(tmp_path / "bad.jsonl", ROWS + [{"instruction": "x"}])
    p = cli(str(good), "--format", "alpaca", "--trainer", "sft")
    assert p.exit_code == 0
    assert "rows: 6 total, 6 valid, 0 invalid" in p.stdout and "result: OK" in p.stdout
    assert "⟦elppa⟧" in p.stdout
    p = cli(str(bad), "--format", "alpaca")
    assert p.exit_code == 2
    assert f"{bad}:7  output: missing key `output`" in p.stdout and "result: FAILED" in p.stdout
    p = cli(str(bad), "--format", "alpaca", "--allow-invalid", "15", "--json")
    assert p.exit_code == 0
    rep = json.loads(p.stdout)
    assert rep["dropped"] == 1 and rep["rows"]["invalid"] == 1
    p = cli(str(good), "--format", "alpaca", "--trainer", "dpo")
    assert p.exit_code == 2 and "alpaca data cannot train the dpo trainer (allowed: preference, sharegpt, sharegpt_image)" in p.stdout
    p = cli(str(good), "--format", "nosuch")
    assert p.exit_code == 2 and p.stderr.strip().startswith("--format: unknown format `nosuch` (allowed: alpaca,")
    p = cli(str(tmp_path / "missing.json"), "--format", "alpaca", "--json")
    assert p.exit_code == 2 and p.stderr.strip() == f"{tmp_path / 'missing.json'}: no such file or folder"


def test_cli_with_tokenizer(tmp_path, data_tokenizer):
    good = write_jsonl(tmp_path / "good.jsonl", ROWS)
    p = run_cli(str(good), "--format", "alpaca", "--tokenizer", data_tokenizer.saved_path, "--max-length", "12",
                "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["tokens"]["max_length"] == 12 and rep["tokens"]["over_max"] == 6
    # 12 tokens do not reach the answers: every row loses all its trained tokens
    assert rep["tokens"]["no_trained_tokens_after_truncation"] == 6
    seg = rep["preview"][0]["segments"]
    assert not any(s["trained"] for s in seg) and rep["preview"][0]["truncated"] > 0


@pytest.mark.parametrize("name,fmt,stage", [
    ("alpaca_en_demo.json", "alpaca", "sft"), ("identity.json", "alpaca", "sft"),
    ("c4_demo.jsonl", "corpus", "pretrain"), ("glaive_toolcall_en_demo.json", "sharegpt", "sft"),
    ("dpo_en_demo.json", "preference", "dpo"), ("kto_en_demo.json", "kto", "kto")])
def test_compat_files_check_clean(compat_data, name, fmt, stage):
    rep = check(str(compat_data / name), fmt, stage=stage)
    assert rep["ok"] and rep["rows"]["invalid"] == 0 and rep["rows"]["valid"] > 0, rep["errors"]
    # LLaMA-Factory's identity.json is a template: {{name}} and {{author}} are meant to be filled in
    held = {"identity.json": 85}.get(name, 0)
    assert rep["placeholders"]["rows"] == held
    said = [w for w in rep["warnings"] if "template placeholders" in w]
    if held:
        assert said == ["85 rows hold template placeholders ({{name}}, {{author}}): unless they are meant "
                        "literally, fill them in first — the model learns them as written"]
        assert set(rep["placeholders"]["names"]) == {"{{name}}", "{{author}}"}
    else:
        assert not said


def test_placeholders_are_names_in_double_braces_only(tmp_path):
    rows = [{"instruction": "Who are you?", "input": "", "output": "I am {{ name }}."},
            {"instruction": "Write a dict", "input": "", "output": "d = {'a': {'b': 1}}"},
            {"instruction": "{{x}} and {{ y_1 }}", "input": "", "output": "{{not a name!}}"}]
    p = tmp_path / "t.json"
    p.write_text(json.dumps(rows))
    rep = check(str(p), "alpaca", stage="sft")
    assert rep["placeholders"] == {"rows": 2, "names": {"{{ name }}": 1, "{{x}}": 1, "{{ y_1 }}": 1}}


def test_cli_zip_with_missing_image(tmp_path, compat_data):
    import zipfile

    z = tmp_path / "mm.zip"
    rows = json.loads((compat_data / "mllm_demo.json").read_text())
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.json", json.dumps(rows, indent=2))
        for img in ("1.jpg", "2.jpg"):  # 3.jpg left out
            zf.write(compat_data / "mllm_demo_data" / img, f"mllm_demo_data/{img}")
    p = cli(str(z), "--format", "sharegpt_image", "--trainer", "sft", "--json")
    assert p.exit_code == 2
    rep = json.loads(p.stdout)
    missing = [r for r in rows if any(i.endswith("3.jpg") for i in r["images"])]
    assert rep["rows"]["invalid"] == len(missing) > 0
    assert rep["invalid_rows"][0]["reason"] == "image `mllm_demo_data/3.jpg` not in archive"
    assert rep["invalid_rows"][0]["location"].startswith(f"{z}/train.json:")


def test_chat_template_that_cannot_render_a_role(tmp_path, data_tokenizer):
    import copy

    from engine.data import DataError

    tok = copy.deepcopy(data_tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'tool' %}"
                         "{{ raise_exception('tool turns are not supported') }}{% endif %}"
                         "{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}")
    row = {"messages": [{"role": "user", "content": "w?"}, {"role": "assistant", "content": "{}"},
                        {"role": "tool", "content": "3"}, {"role": "assistant", "content": "3 degrees"}]}
    with pytest.raises(DataError, match=r"cannot render this conversation \(roles: user, assistant, tool\): "
                                        r"tool turns are not supported"):
        tokenize_row(tok, row, "sft", None)
    p = write_jsonl(tmp_path / "t.jsonl", [{"conversations": [
        {"from": "human", "value": "w?"}, {"from": "function_call", "value": "{}"},
        {"from": "observation", "value": "3"}, {"from": "gpt", "value": "3 degrees"}]}])
    rep = check(str(p), "sharegpt", tokenizer=tok)
    assert not rep["ok"] and "1 of 1 rows checked: the chat template" in rep["errors"][0]


def test_importing_engine_data_loads_no_torch():
    code = ("import sys, engine.data, engine.data.check, engine.data.tokenize, engine.data.s3, tui.commands.data; "
            "bad = [m for m in ('torch', 'transformers', 'boto3', 'textual') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr

"""load_rows: files (json / jsonl / zip / folder), the compat corpus unchanged, split, thresholds."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from engine.data import DataError, load_rows
from tests.fixtures_data import write_json, write_jsonl

ALPACA = [{"instruction": f"say {i}", "input": "", "output": f"{i}"} for i in range(20)]


# ------------------------------------------------------------------------------- compat corpus

COMPAT = [
    ("alpaca_en_demo.json", "alpaca", "sft", 999),
    ("identity.json", "alpaca", "sft", 91),
    ("c4_demo.jsonl", "corpus", "pretrain", 300),
    ("glaive_toolcall_en_demo.json", "sharegpt", "sft", 300),
    ("dpo_en_demo.json", "preference", "dpo", 300),
    ("dpo_en_demo.json", "preference", "reward", 300),
    ("kto_en_demo.json", "kto", "kto", 300),
]


@pytest.mark.parametrize("name,fmt,stage,n", COMPAT)
def test_compat_file_loads_unchanged(compat_data, data_res, name, fmt, stage, n):
    d = load_rows(data_res(data__train_path=str(compat_data / name), data__format=fmt, trainer__stage=stage))
    assert len(d.train) == n and d.dropped == 0 and d.eval is None
    assert d.report["train"]["invalid"] == 0


def test_glaive_tool_turns(compat_data, data_res):
    d = load_rows(data_res(data__train_path=str(compat_data / "glaive_toolcall_en_demo.json"), data__format="sharegpt"))
    with_tools = [r for r in d.train if any(m["role"] == "tool" for m in r["messages"])]
    assert with_tools and all(isinstance(r.get("tools"), str) for r in with_tools)
    assert all(r["messages"][-1]["role"] == "assistant" for r in d.train)


def test_dpo_demo_prompt_shape(compat_data, data_res):
    d = load_rows(data_res(data__train_path=str(compat_data / "dpo_en_demo.json"), data__format="preference",
                           trainer__stage="dpo"))
    r = d.train[0]
    assert r["prompt"][-1]["role"] == "user"
    assert r["chosen"][0]["role"] == "assistant" and r["chosen"][0]["content"] != r["rejected"][0]["content"]


def test_kto_demo_labels(compat_data, data_res):
    d = load_rows(data_res(data__train_path=str(compat_data / "kto_en_demo.json"), data__format="kto",
                           trainer__stage="kto"))
    assert {r["label"] for r in d.train} == {True, False}
    assert all(r["completion"][0]["role"] == "assistant" for r in d.train)


def test_mllm_demo_zipped_with_its_folder(compat_data, data_res, tmp_path):
    z = tmp_path / "mllm.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(compat_data / "mllm_demo.json", "train.json")
        for img in sorted((compat_data / "mllm_demo_data").iterdir()):
            zf.write(img, f"mllm_demo_data/{img.name}")
    d = load_rows(data_res(data__train_path=str(z), data__format="sharegpt_image"))
    assert len(d.train) == 6 and d.dropped == 0
    for r in d.train:
        assert r["images"] and all(Path(p).is_absolute() and Path(p).is_file() for p in r["images"])
        assert sum(m["content"].count("<image>") for m in r["messages"]) == len(r["images"])
    # the extracted image is the same bytes as the original
    assert Path(d.train[0]["images"][0]).read_bytes() == (compat_data / "mllm_demo_data" / "1.jpg").read_bytes()


def test_mllm_demo_as_folder(compat_data, data_res, tmp_path):
    folder = tmp_path / "mllm"
    folder.mkdir()
    shutil.copy(compat_data / "mllm_demo.json", folder / "train.json")
    shutil.copytree(compat_data / "mllm_demo_data", folder / "mllm_demo_data")
    d = load_rows(data_res(data__train_path=str(folder), data__format="sharegpt_image"))
    assert len(d.train) == 6


def test_image_missing_in_archive(tmp_path, data_res):
    z = tmp_path / "imgs.zip"
    rows = [{"conversations": [{"from": "human", "value": "<image>what?"}, {"from": "gpt", "value": "x"}],
             "image_path": "img/1.png"},
            {"conversations": [{"from": "human", "value": "<image>what?"}, {"from": "gpt", "value": "y"}],
             "image_path": "img/4.png"}]
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.json", json.dumps(rows, indent=1))
        zf.writestr("img/1.png", b"\x89PNG")
    with pytest.raises(DataError) as ei:
        load_rows(data_res(data__train_path=str(z), data__format="sharegpt_image"))
    line = [i for i, ln in enumerate(json.dumps(rows, indent=1).splitlines(), 1) if ln == " {"][1]
    assert str(ei.value) == (f"{z}/train.json: 1 of 2 rows invalid (50.00%, allowed 0%); first: "
                             f"{z}/train.json:{line}: image_path: image `img/4.png` not in archive")
    d = load_rows(data_res(data__train_path=str(z), data__format="sharegpt_image",
                           data__allow_percentage_invalid_samples=50))
    assert len(d.train) == 1 and d.dropped == 1


# ------------------------------------------------------------------------------- file kinds

def test_json_jsonl_zip_folder_give_same_rows(tmp_path, data_res):
    j = write_json(tmp_path / "a.json", ALPACA)
    jl = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(jl, "data/whatever.jsonl")
    folder = tmp_path / "dir"
    write_jsonl(folder / "part1.jsonl", ALPACA[:10])
    write_jsonl(folder / "part2.jsonl", ALPACA[10:])
    (folder / "dataset_info.json").write_text("{}")
    outs = [load_rows(data_res(data__train_path=str(p))).train for p in (j, jl, z, folder)]
    assert outs[0] == outs[1] == outs[2] == outs[3] and len(outs[0]) == 20


def test_json_lines_inside_a_dot_json_file(tmp_path, data_res):
    p = write_jsonl(tmp_path / "lines.json", ALPACA[:3])
    assert len(load_rows(data_res(data__train_path=str(p))).train) == 3


def test_zip_prefers_train_json(tmp_path, data_res):
    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("eval.json", json.dumps(ALPACA[:2]))
        zf.writestr("train.json", json.dumps(ALPACA[:5]))
    assert len(load_rows(data_res(data__train_path=str(z))).train) == 5


def test_zip_with_several_data_files_is_an_error(tmp_path, data_res):
    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.json", "[]")
        zf.writestr("b.json", "[]")
    with pytest.raises(DataError, match=r"several data files inside \(a.json, b.json\); name the training one "
                                        r"train.json"):
        load_rows(data_res(data__train_path=str(z)))


def test_bad_zip(tmp_path, data_res):
    p = tmp_path / "x.zip"
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"x.zip: not a valid zip archive$"):
        load_rows(data_res(data__train_path=str(p)))


def test_missing_file(tmp_path, data_res):
    with pytest.raises(DataError, match=r"nope.json: no such file or folder$"):
        load_rows(data_res(data__train_path=str(tmp_path / "nope.json")))


def test_unsupported_suffix(tmp_path, data_res):
    p = tmp_path / "d.csv"
    p.write_text("a,b\n")
    with pytest.raises(DataError, match=r"unsupported file type `.csv`"):
        load_rows(data_res(data__train_path=str(p)))


def test_broken_json_array_names_line(tmp_path, data_res):
    p = tmp_path / "broken.json"
    p.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a" "output": "b"}\n]\n')
    with pytest.raises(DataError) as ei:
        load_rows(data_res(data__train_path=str(p)))
    assert str(ei.value).startswith(f"{p}:3: not valid JSON")


def test_unclosed_json_array(tmp_path, data_res):
    p = tmp_path / "open.json"
    p.write_text('[\n {"instruction": "a", "output": "b"}\n')
    with pytest.raises(DataError, match=r"the JSON array is not closed"):
        load_rows(data_res(data__train_path=str(p)))


def test_json_object_not_array(tmp_path, data_res):
    p = tmp_path / "obj.json"
    p.write_text('\n\n"just a string"')
    with pytest.raises(DataError, match=r"obj.json:3: expected a JSON array of rows"):
        load_rows(data_res(data__train_path=str(p)))


def test_invalid_jsonl_line_is_one_invalid_row_with_file_line(tmp_path, data_res):
    p = write_jsonl(tmp_path / "d.jsonl", ALPACA[:9] + ['{"instruction": "x", "output": '])
    with pytest.raises(DataError) as ei:
        load_rows(data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=9.99))
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: 1 of 10 rows invalid (10.00%, allowed 9.99%); first: {p}:10: not valid JSON")
    d = load_rows(data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=10))
    assert len(d.train) == 9 and d.dropped == 1


def test_json_array_line_numbers_in_invalid_rows(tmp_path, data_res):
    rows = ALPACA[:3] + [{"instruction": "x"}]
    p = write_json(tmp_path / "d.json", rows)
    with pytest.raises(DataError) as ei:
        load_rows(data_res(data__train_path=str(p)))
    # indent=2 → each row takes 5 lines after the opening bracket
    assert str(ei.value).endswith(f"first: {p}:17: output: missing key `output`")
    assert p.read_text().splitlines()[16].strip() == "{"


# ------------------------------------------------------------------------------- threshold

def test_threshold_both_sides(tmp_path, data_res):
    rows = ALPACA[:18] + [{"instruction": "bad"}, {"instruction": "bad", "output": ""}]  # 10% invalid
    p = write_jsonl(tmp_path / "d.jsonl", rows)
    d = load_rows(data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=10))
    assert len(d.train) == 18 and d.dropped == 2
    assert [x["reason"] for x in d.report["train"]["invalid_rows"]] == ["missing key `output`", "`output` is empty"]
    with pytest.raises(DataError, match=r"2 of 20 rows invalid \(10.00%, allowed 9.9%\)"):
        load_rows(data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=9.9))


def test_no_valid_rows(tmp_path, data_res):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    with pytest.raises(DataError, match=r"no valid rows \(1 invalid\); first: .*d.jsonl:1: instruction: missing key"):
        load_rows(data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=100))


def test_empty_file(tmp_path, data_res):
    p = tmp_path / "e.jsonl"
    p.write_text("\n")
    with pytest.raises(DataError, match=r"e.jsonl: no rows$"):
        load_rows(data_res(data__train_path=str(p)))


# ------------------------------------------------------------------------------- stage, split, limits

def test_format_incompatible_with_trainer_names_allowed(data_res, tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    with pytest.raises(DataError) as ei:
        load_rows(data_res(data__train_path=str(p), trainer__stage="dpo"))
    assert str(ei.value) == "data.format: alpaca data cannot train the dpo trainer (allowed: preference, sharegpt, sharegpt_image)"


def test_missing_train_path(data_res):
    with pytest.raises(DataError, match=r"^data.train_path: "):
        load_rows(data_res(data__train_path=""))


def test_val_size_split_is_deterministic_by_seed(tmp_path, data_res):
    p = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    a = load_rows(data_res(data__train_path=str(p), data__val_size=0.25, runtime__seed=1))
    b = load_rows(data_res(data__train_path=str(p), data__val_size=0.25, runtime__seed=1))
    c = load_rows(data_res(data__train_path=str(p), data__val_size=0.25, runtime__seed=2))
    assert len(a.train) == 15 and len(a.eval) == 5
    assert a.train == b.train and a.eval == b.eval
    assert a.eval != c.eval
    key = lambda r: r["messages"][0]["content"]  # noqa: E731
    assert sorted(map(key, a.train + a.eval)) == sorted(map(key, load_rows(data_res(data__train_path=str(p))).train))


def test_val_size_too_large(tmp_path, data_res):
    p = write_jsonl(tmp_path / "d.jsonl", ALPACA[:1])
    with pytest.raises(DataError, match=r"data.val_size: 0.5 of 1 rows leaves no training rows"):
        load_rows(data_res(data__train_path=str(p), data__val_size=0.5))


def test_separate_validation_file(tmp_path, data_res):
    p = write_jsonl(tmp_path / "t.jsonl", ALPACA[:15])
    v = write_json(tmp_path / "v.json", ALPACA[15:])
    d = load_rows(data_res(data__train_path=str(p), data__validation_path=str(v), data__val_size=0.5))
    assert len(d.train) == 15 and len(d.eval) == 5


def test_max_samples(tmp_path, data_res):
    p = write_jsonl(tmp_path / "t.jsonl", ALPACA)
    d = load_rows(data_res(data__train_path=str(p), data__max_samples=7))
    assert len(d.train) == 7 and d.train[0]["messages"][1]["content"] == "0"


@pytest.mark.parametrize("name,fmt,stage", [
    ("alpaca_demo.jsonl", "alpaca", "sft"), ("corpus_demo.jsonl", "corpus", "pretrain"),
    ("sharegpt_demo.jsonl", "sharegpt", "sft"), ("bedrock_converse_demo.jsonl", "bedrock_converse", "sft"),
    ("preference_demo.jsonl", "preference", "dpo"), ("kto_demo.jsonl", "kto", "kto")])
def test_bundled_samples(data_res, name, fmt, stage):
    d = load_rows(data_res(data__train_path=f"finetui:samples/{name}", data__format=fmt, trainer__stage=stage))
    assert d.train and d.dropped == 0


def test_unknown_sample(data_res):
    with pytest.raises(DataError, match=r"finetui:samples/nope.jsonl"):
        load_rows(data_res(data__train_path="finetui:samples/nope.jsonl"))


def test_preference_data_for_kto_is_unpaired(data_res):
    pairs = load_rows(data_res(data__train_path="finetui:samples/preference_demo.jsonl", data__format="preference",
                               trainer__stage="dpo")).train
    d = load_rows(data_res(data__train_path="finetui:samples/preference_demo.jsonl", data__format="preference",
                           trainer__stage="kto"))
    assert len(d.train) == 2 * len(pairs) and d.report["unpaired"]
    assert d.train[0] == {"prompt": pairs[0]["prompt"], "completion": pairs[0]["chosen"], "label": True}
    assert d.train[1] == {"prompt": pairs[0]["prompt"], "completion": pairs[0]["rejected"], "label": False}


# ------------------------------------------------------------------------------- several sources

def test_several_files_separated_by_commas_are_read_in_order(tmp_path, data_res):
    """LLaMA-Factory's ``dataset: identity,alpaca_en_demo``: one data path naming several files."""
    from engine.data.check import check
    from engine.data.sources import count_examples
    from engine.datapaths import data_paths

    a = write_json(tmp_path / "a.json", ALPACA[:5])
    b = write_jsonl(tmp_path / "b.jsonl", ALPACA[5:12] + [{"instruction": "x"}])
    folder = tmp_path / "dir"
    write_jsonl(folder / "p.jsonl", ALPACA[12:])
    path = f"{a}, {b},{folder}"
    assert data_paths(path) == [str(a), str(b), str(folder)]
    d = load_rows(data_res(data__train_path=path, data__allow_percentage_invalid_samples=10))
    assert [r["messages"][1]["content"] for r in d.train] == [str(i) for i in range(20)]
    assert d.dropped == 1 and d.report["train"]["invalid_rows"][0]["location"] == f"{b}:8"
    assert d.report["train"]["source"] == f"{a}, {b}, {folder}/p.jsonl"
    assert count_examples(path) == 21
    # data.max_samples caps the total, the files taken in the order named
    d = load_rows(data_res(data__train_path=path, data__max_samples=7))
    assert [r["messages"][1]["content"] for r in d.train] == [str(i) for i in range(7)]
    # the data check reads them all, and counts the invalid row against the total
    rep = check(path, "alpaca", stage="sft", allow_invalid=10)
    assert rep["ok"] and rep["rows"] == {"total": 21, "valid": 20, "invalid": 1, "invalid_pct": 4.7619}
    assert check(path, "alpaca", stage="sft")["errors"][0].startswith(f"{a}, {b}, {folder}/p.jsonl: 1 of 21 rows invalid")


def test_several_files_one_missing_names_it(tmp_path, data_res):
    a = write_json(tmp_path / "a.json", ALPACA)
    with pytest.raises(DataError, match=rf"^{tmp_path}/nope.jsonl: no such file or folder$"):
        load_rows(data_res(data__train_path=f"{a},{tmp_path}/nope.jsonl"))
    with pytest.raises(DataError, match=r"^finetui:samples/nope.jsonl: no such bundled sample"):
        load_rows(data_res(data__train_path="finetui:samples/alpaca_demo.jsonl,finetui:samples/nope.jsonl"))


def test_a_file_with_a_comma_in_its_name_is_one_file(tmp_path, data_res):
    p = write_jsonl(tmp_path / "a,b.jsonl", ALPACA)
    assert len(load_rows(data_res(data__train_path=str(p))).train) == 20


def test_several_validation_files_and_a_sample(tmp_path, data_res):
    v1 = write_jsonl(tmp_path / "v1.jsonl", ALPACA[:3])
    v2 = write_jsonl(tmp_path / "v2.jsonl", ALPACA[3:5])
    d = load_rows(data_res(data__train_path=f"finetui:samples/alpaca_demo.jsonl,{v1}",
                           data__validation_path=f"{v1},{v2}"))
    alone = load_rows(data_res(data__train_path="finetui:samples/alpaca_demo.jsonl"))
    assert len(d.train) == len(alone.train) + 3 and len(d.eval) == 5


def test_a_source_in_a_format_of_its_own(tmp_path, data_res):
    """``b.json#sharegpt`` beside alpaca rows: each file read in its format, the rows in one canonical form;
    data.max_samples stops in the first file when it is reached there (no row of the next)."""
    from engine.data.check import check

    a = write_json(tmp_path / "a.json", ALPACA[:3])
    b = write_jsonl(tmp_path / "b.jsonl", [{"conversations": [{"from": "human", "value": "hi"},
                                                              {"from": "gpt", "value": "hello"}]}] * 2)
    path = f"{a},{b}#sharegpt"
    d = load_rows(data_res(data__train_path=path))
    assert [r["messages"][-1]["content"] for r in d.train] == ["0", "1", "2", "hello", "hello"]
    assert d.report["train"]["source"] == f"{a}, {b}"
    assert len(load_rows(data_res(data__train_path=path, data__max_samples=3)).train) == 3
    rep = check(path, "alpaca", stage="sft")
    assert rep["ok"] and rep["rows"]["valid"] == 5
    # read in the wrong format, b's rows are invalid; a format the trainer cannot use is one sentence
    assert load_rows(data_res(data__train_path=f"{a},{b}", data__allow_percentage_invalid_samples=50)).dropped == 2
    with pytest.raises(DataError, match=rf"^{b}#kto: kto data cannot train the sft trainer"):
        load_rows(data_res(data__train_path=f"{a},{b}#kto"))
    assert check(f"{a},{b}#kto", "alpaca", stage="sft")["errors"][0].startswith(f"{b}#kto: kto data cannot")

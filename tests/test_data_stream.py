"""Data at scale, the training path (issue 20): rows streamed from their sources (never a list of every row), the
tokenize-once cache written a chunk at a time by several processes (the same file as one process writes), packing
on the cached columns, a capped cache with `finetui cache list|clear`."""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from engine.data import DataError, load_rows, stream_rows
from engine.data.loader import held_out
from tests.fixtures_data import write_jsonl


def _alpaca(n: int, tag: str = "") -> list[dict]:
    return [{"instruction": f"Add {i} and {i % 7}.{tag}" + " Twice." * (i % 3), "input": "", "output": str(i + i % 7)}
            for i in range(n)]


def test_held_out_rows_are_the_list_shuffles():
    """The hold-out drawn on an array of indices is the one shuffling a list drew (the same rows as before)."""
    for n, frac, seed in ((10, 0.2, 0), (97, 0.1, 3), (1000, 0.05, 42)):
        idx = list(range(n))
        random.Random(seed).shuffle(idx)
        want = set(idx[:max(1, round(n * frac))])
        got = held_out(n, frac, seed)
        assert {i for i in range(n) if got[i]} == want


def test_streamed_rows_are_read_again_from_their_sources(tmp_path, data_res):
    p = write_jsonl(tmp_path / "d.jsonl", _alpaca(30) + ["{broken"])
    res = data_res(data__train_path=str(p), data__val_size=0.2, runtime__seed=5,
                   data__allow_percentage_invalid_samples=10)
    s, d = stream_rows(res), load_rows(res)
    assert (len(s.train), len(s.eval), s.dropped) == (24, 6, 1) and s.report == d.report
    assert list(s.train) == list(s.train) == d.train and list(s.eval) == d.eval
    assert s.train[:3] == d.train[:3] and not set(map(json.dumps, d.train)) & set(map(json.dumps, d.eval))
    assert s.train.digest != s.eval.digest
    # the digest is the content's: another row, another digest
    write_jsonl(p, _alpaca(29) + [{"instruction": "x", "output": "y"}, "{broken"])
    assert stream_rows(res).train.digest != s.train.digest
    # a file that changes between the count and the read is said, not trained half-way
    write_jsonl(p, _alpaca(10))
    with pytest.raises(DataError, match="changed while it was read"):
        list(s.train)


def _tok_file(tok, rows, tmp_path, monkeypatch, name, workers, **kw):
    from engine.data import tokcache
    from engine.train.trainers import tokenize_lm

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / name))
    monkeypatch.setenv("FINETUI_TOKENIZE_WORKERS", str(workers))
    said = []
    ds, trunc = tokcache.tokenized(tok, rows, kw.get("stage", "sft"), kw.get("max_len", 24), tokenize_lm,
                                   lambda p, t, **k: said.append((p, k)))
    f = tmp_path / name / "tokenized"
    (entry,) = [d for d in f.iterdir() if d.is_dir()]
    return ds, trunc, (entry / tokcache.DATA_FILE).read_bytes(), said


def test_tokenizing_in_several_processes_writes_what_one_process_writes(data_tokenizer, tmp_path, monkeypatch,
                                                                        data_res):
    from engine.data import tokcache

    monkeypatch.setattr(tokcache, "CHUNK", 16)
    monkeypatch.setattr(tokcache, "PROGRESS_S", 0.0)
    p = write_jsonl(tmp_path / "d.jsonl", _alpaca(150))
    rows = stream_rows(data_res(data__train_path=str(p))).train
    one = _tok_file(data_tokenizer, rows, tmp_path, monkeypatch, "one", 1)
    three = _tok_file(data_tokenizer, rows, tmp_path, monkeypatch, "three", 3)
    assert one[2] == three[2] and one[1] == three[1] > 0  # the same bytes; rows truncated to 24 tokens
    assert one[0].to_list() == three[0].to_list()
    from engine.train.trainers import tokenize_lm

    assert three[0].to_list() == tokenize_lm(data_tokenizer, load_rows(data_res(data__train_path=str(p))).train,
                                             "sft", 24)[0]
    assert {k.get("workers") for p_, k in three[3] if p_ == "preparing data"} == {3}
    assert three[0].features["input_ids"].feature.dtype == "int32"


TRACED = r"""
import json, os, sys, tracemalloc
from engine.data import stream_rows, tokcache
from engine.data.tokenize import load_tokenizer
from engine.train.trainers import tokenize_lm
import datasets, pyarrow, pyarrow.ipc  # (imports are no part of the measure)
tok = load_tokenizer(sys.argv[1])
tokcache.CHUNK = 50
tokcache.BATCH_ROWS = 50  # (a record batch a chunk: the writer's one batch held is bounded by BATCH_ROWS / BATCH_BYTES)
from engine.data import arrowscan
arrowscan.BLOCK_BYTES = 16 << 10  # (the first pass reads a block at a time: smaller than these files)
tokcache.tokenized(tok, [{"text": "warm up"}], "pretrain", 64, tokenize_lm, lambda *a, **k: None)
tracemalloc.start()
out = {}
for path in sys.argv[2:]:
    os.environ["FINETUI_CACHE_DIR"] = path + ".cache"
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    res = {"data.train_path": path, "data.format": "corpus", "trainer.stage": "pretrain"}
    ds, _ = tokcache.tokenized(tok, stream_rows(res).train, "pretrain", 64, tokenize_lm, lambda *a, **k: None)
    out[len(ds)] = tracemalloc.get_traced_memory()[1] - base
    del ds
print(json.dumps(out))
"""


def test_preparing_data_does_not_grow_with_the_rows(data_tokenizer, tmp_path):
    """The worker's data path — count, read again, tokenize, write the Arrow cache — holds a chunk of rows (and one
    record batch of them) at a time: Python's peak allocation for 4× the rows stays the same (a list of every row
    grows 4×)."""
    import subprocess
    import sys

    files = [str(write_jsonl(tmp_path / f"{n}.jsonl", [{"text": f"row {i}: " + "lorem ipsum dolor " * (5 + i % 4)}
                                                       for i in range(n)])) for n in (300, 1200)]
    out = subprocess.run([sys.executable, "-c", TRACED, data_tokenizer.saved_path, *files],
                         env=dict(os.environ, FINETUI_TOKENIZE_WORKERS="1"), capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    peaks = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    # (measured: ~205 KB for both; the list of canonical rows the worker kept before grew 290 KB → 610 KB)
    assert set(peaks) == {300, 1200} and peaks[1200] - peaks[300] < 64 * 1024, peaks


def test_packing_on_the_cached_columns_is_pack_rows(data_tokenizer, tmp_path, monkeypatch, data_res):
    from engine.data.tokcache import derived
    from engine.train.packing import pack_arrow, pack_rows

    p = write_jsonl(tmp_path / "d.jsonl", _alpaca(120))
    rows = stream_rows(data_res(data__train_path=str(p))).train
    ds, _, _, _ = _tok_file(data_tokenizer, rows, tmp_path, monkeypatch, "c", 1, max_len=40)
    want = pack_rows(ds.to_list(), 64)
    packed, made = derived(ds, "packed-64.arrow", lambda d, f: pack_arrow(d, 64, f, bins_per_batch=7))
    assert made[0] == len(want) and packed.to_list() == want
    again, made = derived(ds, "packed-64.arrow", lambda d, f: pytest.fail("packed twice"))
    assert made is None and again.to_list() == want
    # larger data is binned window by window (bounded memory): each window as pack_rows bins it
    rows_ = ds.to_list()
    by_window = [r for i in range(0, len(rows_), 50) for r in pack_rows(rows_[i:i + 50], 64)]
    pack_arrow(ds, 64, tmp_path / "w.arrow", bins_per_batch=5, window=50)
    from datasets import Dataset

    assert Dataset.from_file(str(tmp_path / "w.arrow")).to_list() == by_window


def _conv(tag: str) -> list[dict]:
    return [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
            for r in _alpaca(40, tag)]


def _fill_cache(tok, tmp_path, monkeypatch, n):
    from engine.data import tokcache
    from engine.train.trainers import tokenize_lm

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    keys = []
    for i in range(n):
        said = []
        tokcache.tokenized(tok, _conv(f" v{i}"), "sft", 256, tokenize_lm, lambda p, t, **k: said.append(k))
        keys.append(os.path.basename(said[0]["cache_dir"]))
        time.sleep(0.02)  # (distinct last-use times)
    return keys


def test_the_cache_keeps_to_its_cap_dropping_the_least_recently_used(data_tokenizer, tmp_path, monkeypatch):
    from engine.data import tokcache
    from engine.train.trainers import tokenize_lm

    keys = _fill_cache(data_tokenizer, tmp_path, monkeypatch, 3)
    sizes = {e["key"]: e["bytes"] for e in tokcache.entries()}
    assert set(sizes) == set(keys) and all(sizes.values())
    # using the first again makes the second the least recently used
    said = []
    tokcache.tokenized(data_tokenizer, _conv(" v0"), "sft", 256, tokenize_lm, lambda p, t, **k: said.append(k))
    assert said[0]["cache"] == "reused"
    assert [e["key"] for e in tokcache.entries()] == [keys[0], keys[2], keys[1]]
    # a cap of about two entries: writing a fourth removes the two least recently used but never the new one
    monkeypatch.setenv("FINETUI_TOKENIZED_CACHE_GB", str(2.5 * max(sizes.values()) / 2**30))
    said = []
    tokcache.tokenized(data_tokenizer, _conv(" v3"), "sft", 256, tokenize_lm,
                       lambda p, t, **k: said.append((t, k)))
    left = [e["key"] for e in tokcache.entries()]
    assert len(left) == 2 and left[1] == keys[0] and keys[1] not in left and keys[2] not in left
    assert any(k.get("cache_evicted") == 2 for _, k in said)
    # an entry whose lock a run holds is never removed
    with tokcache._locked(tokcache.root() / f"{keys[0]}.lock"):
        assert tokcache.evict(cap=0) == [left[0]]
    assert [e["key"] for e in tokcache.entries()] == [keys[0]]


def test_cache_list_and_clear_from_the_cli(data_tokenizer, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tui.cli import app

    keys = _fill_cache(data_tokenizer, tmp_path, monkeypatch, 2)
    r = CliRunner().invoke(app, ["cache", "list"])
    assert r.exit_code == 0 and "2 tokenization(s)" in r.stdout and keys[0][:12] in r.stdout
    assert "sft, max length 256" in r.stdout
    j = json.loads(CliRunner().invoke(app, ["cache", "list", "--json"]).stdout)
    assert [e["key"] for e in j["entries"]] == keys[::-1] and j["entries"][0]["rows"] == 40
    bad = CliRunner().invoke(app, ["cache", "clear", "zzz"])
    assert bad.exit_code == 2 and "cache key `zzz`: no cached tokenization" in bad.stderr
    r = CliRunner().invoke(app, ["cache", "clear", keys[0][:8]])
    assert r.exit_code == 0 and "removed 1 tokenization(s)" in r.stdout
    assert [e["key"] for e in json.loads(CliRunner().invoke(app, ["cache", "list", "--json"]).stdout)["entries"]] \
        == [keys[1]]
    r = CliRunner().invoke(app, ["cache", "clear"])
    assert r.exit_code == 0 and "removed 1" in r.stdout and "0 tokenization(s)" in \
        CliRunner().invoke(app, ["cache", "list"]).stdout


# ------------------------------------------------------------------------------ streaming mode (data.streaming)

def test_streaming_needs_max_steps_and_text_stages():
    from engine.schema import JobConfig

    def probs(**v):
        return [str(p) for p in JobConfig(values={"data.train_path": "x.jsonl", "data.streaming": True, **v}).problems()
                if p.field == "data.streaming"]

    assert probs() == ["data.streaming: streaming needs general.max_steps: the rows are read while training, not "
                       "counted into epochs (allowed: false, or set general.max_steps)"]
    assert probs(**{"general.max_steps": 10}) == []
    assert probs(**{"general.max_steps": 10, "trainer.stage": "dpo", "data.format": "preference",
                    "data.packing": False}) == \
        ["data.streaming: streaming applies to pre-training and SFT, not dpo (allowed: false)"]


def test_streamed_rows_are_the_tokenized_rows_packed_per_window(data_tokenizer, tmp_path, data_res, monkeypatch):
    from engine.train import trainers
    from engine.train.packing import pack_rows
    from engine.train.trainers import streamed_lm, tokenize_lm

    monkeypatch.setattr(trainers, "STREAM_WINDOW", 25)
    p = write_jsonl(tmp_path / "d.jsonl", _alpaca(60))
    rows = stream_rows(data_res(data__train_path=str(p))).train
    want, _ = tokenize_lm(data_tokenizer, list(rows), "sft", 48)
    plain = list(streamed_lm(data_tokenizer, rows, "sft", 48, False, 0))
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, plain)) == sorted(map(key, want)) and plain != want  # every row, shuffled
    packed = list(streamed_lm(data_tokenizer, rows, "sft", 48, True, 0))
    by_window = [r for i in range(0, 60, 25) for r in pack_rows(tokenize_lm(data_tokenizer, list(rows)[i:i + 25],
                                                                            "sft", 48)[0], 48)]
    assert sorted(map(key, packed)) == sorted(map(key, by_window))


@pytest.mark.timeout(600)
def test_a_streaming_job_trains_without_a_tokenized_cache(tmp_path, tiny_model, tmp_path_factory):
    """The real worker, one rank: data.streaming reads and tokenizes the rows while training — the training rows
    leave nothing in the cache — and trains its max_steps."""
    import uuid

    from tests.fixtures_train import describe_run, events, kinds, losses, run_batch, write_run

    tag = uuid.uuid4().hex[:8]
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"{w} {tag} " * 4} for w in
                                              ("apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu") * 4])
    run = tmp_path / "run"
    write_run(run, **{"data.train_path": str(data), "data.format": "corpus", "trainer.stage": "pretrain",
                      "general.max_steps": 3, "data.streaming": True, "trainer.training_type": "full",
                      "data.max_samples": None})
    cache = tmp_path / "cache"
    import shutil

    shutil.copytree(os.environ.get("FINETUI_TEST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "finetui-cache")),
                    cache, dirs_exist_ok=True, ignore=shutil.ignore_patterns("tokenized"))
    res = run_batch([{"name": "s", "run_dir": str(run), "kind": "train", "hook": None, "at": 0,
                      "temperature": 0.0}], str(cache))
    assert res["s"]["code"] == 0, describe_run(run)
    ev = events(run)
    said = [r["text"] for r in kinds(ev, "status") if r.get("phase") == "tokenizing"]
    assert any(t.startswith("streaming 32 training rows: read, tokenized") and t.endswith("(no cache)") for t in said), said
    assert not any(t.startswith("tokenized ") for t in said)
    assert not (cache / "tokenized").exists() or not any((cache / "tokenized").iterdir())
    assert len(losses(ev)) >= 1 and kinds(ev, "end")[0]["outcome"] == "completed" and kinds(ev, "end")[0]["step"] == 3


# ------------------------------------------------------------------------------ rows for the trainers that tokenize

@pytest.mark.parametrize("name,fmt,stage,keys,unpaired", [
    ("dpo_en_demo.json", "preference", "dpo", ("prompt", "chosen", "rejected"), False),
    ("dpo_en_demo.json", "preference", "dpo", ("prompt", "completion", "label"), True),  # kto_pair
    ("kto_en_demo.json", "kto", "kto", ("prompt", "completion", "label"), True),
    ("glaive_toolcall_en_demo.json", "sharegpt", "sft", None, False),  # tools in some rows only
    ("mllm_demo.json", "sharegpt_image", "sft", None, False),
])
def test_streamed_rows_give_the_dataset_a_list_gave(compat_data, data_res, monkeypatch, tmp_path, name, fmt, stage,
                                                    keys, unpaired):
    """DPO / KTO / reward / image rows reach their trainer as the same Dataset (columns, types, values) as
    ``Dataset.from_list`` of the row list made it — written to the cache a chunk at a time, memory-mapped."""
    from engine.data import tokcache
    from engine.train.trainers import rows_dataset

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tokcache, "CHUNK", 7)  # (chunks whose columns differ: types unified over all of them)
    res = data_res(data__train_path=str(compat_data / name), data__format=fmt, trainer__stage=stage)
    want = rows_dataset(load_rows(res).train, keys, lambda *a, **k: None, unpaired=unpaired)
    said = []
    got = rows_dataset(stream_rows(res).train, keys, lambda p, t, **k: said.append(t), unpaired=unpaired)
    assert got.features == want.features and got.to_list() == want.to_list()
    assert said and got.cache_files[0]["filename"].startswith(str(tmp_path / "cache" / "tokenized"))
    again = rows_dataset(stream_rows(res).train, keys, lambda p, t, **k: said.append(t), unpaired=unpaired)
    assert len(said) == 1 and again.to_list() == want.to_list()  # written once


def test_text_rows_encoded_in_one_call_are_the_rows_encoded_one_by_one(data_tokenizer):
    from engine.data.tokenize import tokenize_row
    from engine.train.trainers import tokenize_lm

    rows = [{"text": t} for t in ("", "héllo wörld 你好", "a b " * 40, "x", "row\nwith\nlines " * 3)]
    got, cut = tokenize_lm(data_tokenizer, rows, "pretrain", 32)
    one = [tokenize_row(data_tokenizer, r, "pretrain", 32) for r in rows]
    assert got == [{"input_ids": t["input_ids"], "labels": t["labels"]} for t in one]
    assert cut == sum(1 for t in one if t["truncated"]) > 0


def test_a_second_launch_hashes_the_files_instead_of_reading_the_rows(tmp_path, data_res, monkeypatch):
    """The first pass (count, invalid rows, digest) over local files is remembered, keyed on their bytes: the same
    job again reads no row for it; another byte, another pass; rows naming images are never remembered."""
    from engine.data import loader

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    p = write_jsonl(tmp_path / "d.jsonl", _alpaca(40) + ["{broken", {"instruction": "no output"}])
    res = data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=10)
    reads = []
    real = loader.scan_all
    monkeypatch.setattr(loader, "scan_all", lambda *a, **k: (reads.append(1), real(*a, **k))[1])
    first = stream_rows(res)
    n_first = len(reads)
    again = stream_rows(res)
    assert len(reads) == n_first, "the second pass read the rows"
    assert again.report == first.report and again.train.digest == first.train.digest and len(again.train) == 40
    assert [r["location"] for r in again.report["train"]["invalid_rows"]] == [f"{p}:41", f"{p}:42"]
    assert list(again.train) == list(first.train)  # (the rows themselves are still read when trained)
    # one byte more: read again, and a new digest
    with open(p, "a") as f:
        f.write(json.dumps({"instruction": "one more", "output": "row"}) + "\n")
    third = stream_rows(res)
    assert len(reads) > n_first + 1 and len(third.train) == 41 and third.train.digest != first.train.digest
    # the threshold is still judged on remembered counts
    with pytest.raises(DataError, match="invalid"):
        stream_rows(data_res(data__train_path=str(p), data__allow_percentage_invalid_samples=1))
    # `finetui cache clear` forgets them
    from engine.data import tokcache

    tokcache.clear()
    assert not (tmp_path / "cache" / "passes").exists()


def test_a_shuffled_epoch_is_not_a_python_list_of_every_row():
    """The training sampler's permutation is yielded a chunk at a time (torch's makes one list of every index:
    ~72 bytes a row in every rank), in the same order as torch's, draw for draw."""
    import tracemalloc

    import torch
    from torch.utils.data import RandomSampler

    from engine.train import trainers

    def torchs(n: int, k: int | None, g) -> list[int]:  # RandomSampler.__iter__ of torch 2.x, without replacement
        k = n if k is None else k
        out = []
        for _ in range(k // n):
            out += torch.randperm(n, generator=g).tolist()
        return out + torch.randperm(n, generator=g).tolist()[: k % n]

    cases = [(10, None), (1000, 2500), (70_000, 150_001), (5, 3)]
    trainers.lean_shuffle()
    assert getattr(RandomSampler.__iter__, "_finetui_lean", False)
    for n, k in cases:
        g1, g2 = torch.Generator(), torch.Generator()
        g1.manual_seed(n)
        g2.manual_seed(n)
        assert list(RandomSampler(range(n), num_samples=k, generator=g1)) == torchs(n, k, g2)
    torch.manual_seed(3)
    a = list(RandomSampler(range(100)))
    torch.manual_seed(3)
    g = torch.Generator()
    g.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))  # (no generator: torch draws a seed)
    assert a == torchs(100, None, g)
    tracemalloc.start()
    it = iter(RandomSampler(range(2_000_000)))
    next(it)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, peak  # (torch's list of 2M ints: ~76 MiB)


def test_cache_batches_are_bounded_by_rows_and_bytes(tmp_path, monkeypatch):
    """The tokenized cache is written in record batches of BATCH_ROWS rows, or fewer when they hold BATCH_BYTES."""
    import pyarrow as pa

    from engine.data import tokcache

    schema = pa.schema([("input_ids", pa.list_(pa.int32()))])
    chunk = pa.table({"input_ids": [[1] * 100] * 10}, schema=schema)  # (10 rows, ~4 KB)
    for rows, nbytes, want in ((25, 1 << 30, [30, 30, 30, 10]), (10 ** 6, 3 * chunk.nbytes, [30, 30, 30, 10])):
        monkeypatch.setattr(tokcache, "BATCH_ROWS", rows)
        monkeypatch.setattr(tokcache, "BATCH_BYTES", nbytes)
        path = tmp_path / f"{rows}.arrow"
        with open(path, "wb") as fh, pa.ipc.new_stream(fh, schema) as w:
            b = tokcache._Batches(w)
            for _ in range(10):
                b.write(chunk)
            b.flush()
        with pa.ipc.open_stream(pa.memory_map(str(path))) as r:
            assert [batch.num_rows for batch in r] == want

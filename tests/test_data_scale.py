"""Data at scale: the data check's Arrow path (engine/data/arrowscan.py) reports exactly what the row-by-row reader
reports — the same counts, invalid rows (file:line and reason), duplicates, character statistics, placeholders,
preview — on files mixing every kind of row the column checks must send back to the normaliser."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data import arrowscan
from engine.data.check import check
from tests.fixtures_data import read_pty

WS = [" ", "\t", "\u3000", "\x1c", "\u00a0", "\u200b", "\u0301"]  # (the last two are not white space for Python)


def _text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.06:
        return ""
    if r < 0.14:
        return "".join(rng.choice(WS) for _ in range(rng.randint(1, 3)))
    if r < 0.18:
        return "fill in {{name}} here"
    if r < 0.2:
        return "{{"
    if r < 0.25:
        return "héllo wörld 你好"
    if r < 0.26:
        return "a NUL \x00 inside"  # (the keys' bytes are split on NUL: such a block hashes key by key)
    return rng.choice(["apple", "pear", "a b", "x\ny", "7"]) + rng.choice(["", " ", "\u3000"])


def _alpaca_line(rng: random.Random, dirty: bool) -> str:
    r = rng.random()
    if r < 0.04 and not dirty:
        return ""  # blank line
    if not dirty:
        row = {k: _text(rng) for k, p in (("instruction", 0.95), ("input", 0.7), ("output", 0.93), ("system", 0.2))
               if rng.random() < p}
        return json.dumps(row, ensure_ascii=rng.random() < 0.5)
    if r < 0.02:
        return "{not json"
    if r < 0.04:
        return ""  # blank line
    if r < 0.05:
        return "[1, 2]"
    row: dict = {}
    for k, p in (("instruction", 0.95), ("input", 0.7), ("output", 0.93), ("system", 0.2)):
        if rng.random() < p:
            row[k] = _text(rng) if rng.random() > 0.03 else rng.choice([None, 5, ["a"]])
    if rng.random() < 0.03:
        row["history"] = rng.choice([[["q", "a"]], "no", [], None])
    if rng.random() < 0.1:
        row["extra"] = {"nested": [1, 2]}
    return json.dumps(row, ensure_ascii=rng.random() < 0.5)


def _corpus_line(rng: random.Random, dirty: bool) -> str:
    r = rng.random()
    if not dirty:
        return "   " if r < 0.03 else json.dumps({"text": _text(rng)} if r > 0.06 else {"body": "x"})
    if r < 0.03:
        return "oops"
    if r < 0.06:
        return "   "
    v = _text(rng) if rng.random() > 0.05 else rng.choice([None, 1, {"a": 1}])
    return json.dumps({"text": v} if rng.random() > 0.03 else {"body": "x"})


SAME = ("rows", "invalid_rows", "invalid_more", "duplicates", "empty_strings", "chars", "placeholders", "preview",
        "errors", "warnings", "ok")


def _both(path, fmt, monkeypatch, **kw):
    fast = check(str(path), fmt, allow_invalid=100, token_sample=10_000, **kw)
    with monkeypatch.context() as m:
        m.setattr(arrowscan, "fast_files", lambda src, fmt: None)
        slow = check(str(path), fmt, allow_invalid=100, token_sample=10_000, **kw)
    return fast, slow


@pytest.mark.parametrize("fmt,seed,newline,gz", [("alpaca", 0, "\n", False), ("alpaca", 1, "\r\n", False),
                                                 ("alpaca", 2, "\n", False), ("corpus", 3, "\n", False),
                                                 ("corpus", 4, "\r\n", False), ("alpaca", 2, "\n", True),
                                                 ("corpus", 3, "\r\n", True), ("alpaca", 2, "\n", "zip"),
                                                 ("corpus", 4, "\n", "zip")])
@pytest.mark.parametrize("c_scans", [True, False])
def test_arrow_path_reports_what_the_row_reader_reports(tmp_path, monkeypatch, fmt, seed, newline, gz, c_scans):
    """The same report either way — and for gzip-compressed JSON lines or a zip archive's, decompressed block by
    block; with the C scans and hashes, and with numpy's."""
    if not c_scans:
        monkeypatch.setattr(arrowscan, "_FAST", [None])
    import gzip
    import zipfile

    from engine.data.loader import open_sources

    rng = random.Random(seed)
    make = _alpaca_line if fmt == "alpaca" else _corpus_line
    lines = [make(rng, dirty=(i // 40) % 3 == 0) for i in range(1500)]  # a third of the file breaks Arrow's parse
    lines += lines[:200]  # duplicates across blocks
    # some braces written as JSON escapes: `\u007b{name}}` in the file is `{{name}}` in the text
    lines = [ln.replace("{{", "\\u007b{", 1) if i % 2 else ln for i, ln in enumerate(lines)]
    p = tmp_path / {False: "d.jsonl", True: "d.jsonl.gz", "zip": "d.zip"}[gz]
    body = newline.join(lines).encode()
    if seed == 1:  # a line not UTF-8 (Latin-1): Arrow does not see it, the row reader names it
        body = body.replace(b"apple", b"pomme \xe9", 3)
    body = ("\ufeff" if seed == 2 else "").encode() + body + b"\n"
    if gz == "zip":
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("data/train.jsonl", body)
    else:
        p.write_bytes(gzip.compress(body) if gz else body)
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 2048)  # many blocks, some parsed by Arrow, some not
    arrow_blocks = []
    real = arrowscan._columns
    monkeypatch.setattr(arrowscan, "_columns", lambda *a, **k: arrow_blocks.append(1) or real(*a, **k))
    fast, slow = _both(p, fmt, monkeypatch)
    [(src, _)] = open_sources(str(p), fmt, "sft", None, {}, None)
    [fs] = arrowscan.fast_files(src, fmt)
    n_blocks = len(list(arrowscan.source_blocks(fs, 2048)))
    assert 0 < len(arrow_blocks) < n_blocks, (len(arrow_blocks), n_blocks)
    assert fast["rows"]["invalid"] > 0 and fast["duplicates"] > 0
    for k in SAME:
        assert fast[k] == slow[k], k


@pytest.mark.parametrize("cut", [0.3, 0.71, 0.97])
def test_a_damaged_gzip_file_reports_what_the_row_reader_reports(tmp_path, monkeypatch, cut):
    """A gzip file cut short: every whole line before the damage is checked (blocks already parsed included), the
    same counts, invalid rows and duplicates as the row reader, and its error."""
    import gzip

    rng = random.Random(11)
    lines = [_alpaca_line(rng, dirty=i % 7 == 0) for i in range(6000)]
    body = gzip.compress(("\n".join(lines + lines[:500]) + "\n").encode())
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(body[:int(len(body) * cut)])
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 16 << 10)  # (several blocks in flight when the damage is met)
    fast, slow = _both(p, "alpaca", monkeypatch)
    assert fast["rows"]["total"] > 1000 and "not a valid gzip file" in fast["errors"][-1]
    for k in SAME:
        assert fast[k] == slow[k], k


def test_a_data_path_of_a_file_and_a_zip_takes_the_arrow_path(tmp_path, monkeypatch):
    """Several sources in one data path (a JSON-lines file, a zip archive's member) are all read on the Arrow path,
    one after the other, with the row reader's report."""
    import zipfile

    from engine.data.loader import open_sources

    rng = random.Random(5)
    lines = [_alpaca_line(rng, dirty=i % 9 == 0) for i in range(3000)]
    a, z = tmp_path / "a.jsonl", tmp_path / "b.zip"
    a.write_text("\n".join(lines[:1500]) + "\n")
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("b.jsonl", "\n".join(lines[1500:] + lines[:100]) + "\n")
    path = f"{a},{z}"
    fast_paths = arrowscan.fast_paths(open_sources(path, "alpaca", "sft", None, {}, None), "sft")
    assert [type(f).__name__ for files in fast_paths for f in files] == ["FileSource", "ZipSource"]
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 16 << 10)
    fast, slow = _both(path, "alpaca", monkeypatch)
    assert fast["rows"]["total"] > 2900 and fast["duplicates"] >= 90
    for k in SAME:
        assert fast[k] == slow[k], k


@pytest.mark.parametrize("at", [0.4, 0.9])
def test_a_damaged_zip_member_reports_what_the_row_reader_reports(tmp_path, monkeypatch, at):
    """A zip archive whose data member is damaged: the same counts, invalid rows, duplicates and error as the row
    reader."""
    import zipfile

    rng = random.Random(12)
    lines = [_alpaca_line(rng, dirty=i % 7 == 0) for i in range(6000)]
    p = tmp_path / "d.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train.jsonl", "\n".join(lines + lines[:500]) + "\n")
        info = zf.getinfo("train.jsonl")
    raw = bytearray(p.read_bytes())
    k = info.header_offset + 30 + len(info.filename) + int(info.compress_size * at)
    raw[k:k + 64] = bytes(64)  # (zeros inside the deflate stream)
    p.write_bytes(bytes(raw))
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 16 << 10)
    fast, slow = _both(p, "alpaca", monkeypatch)
    assert fast["rows"]["total"] > 500 and "cannot read it from the archive" in fast["errors"][-1]
    for k in SAME:
        assert fast[k] == slow[k], k


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt"])
def test_a_zip_member_zlib_refuses_is_the_archives_fault(tmp_path, monkeypatch, fmt):
    """A zip member whose deflate stream zlib refuses (an invalid block type) is unreadable from the archive — said
    so by the Arrow path and by the row reader (which read formats the Arrow path does not) alike, not "not a valid
    gzip file"."""
    import zipfile

    p = tmp_path / "d.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train.jsonl", json.dumps({"instruction": "q", "output": "a"}) * 200 + "\n")
        info = zf.getinfo("train.jsonl")
    raw = bytearray(p.read_bytes())
    k = info.header_offset + 30 + len(info.filename)
    raw[k:k + 8] = b"\xff" * 8  # (the first deflate block's header: type 3, which does not exist)
    p.write_bytes(bytes(raw))
    fast, slow = _both(p, fmt, monkeypatch)
    for rep in (fast, slow):
        assert rep["errors"][-1].startswith(f"{p}/train.jsonl: cannot read it from the archive (Error -3 ")
    for k in SAME:
        assert fast[k] == slow[k], k


def test_clean_blocks_take_the_arrow_path(tmp_path, monkeypatch):
    """A clean file is checked on columns: the normaliser sees only the rows the columns cannot pass."""
    rows = [{"instruction": f"Add {i} and 1.", "input": "", "output": str(i + 1)} for i in range(3000)]
    rows[1234] = {"instruction": "no answer"}
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    seen = []
    from engine.data import formats

    real = formats.NORMALIZERS["alpaca"]
    monkeypatch.setitem(formats.NORMALIZERS, "alpaca", lambda obj, img=None: seen.append(obj) or real(obj, img))
    rep = check(str(p), "alpaca", allow_invalid=1)
    assert seen == [{"instruction": "no answer"}]
    assert rep["rows"]["valid"] == 2999 and rep["invalid_rows"][0]["location"] == f"{p}:1235"
    assert rep["invalid_rows"][0]["reason"] == "missing key `output`"
    assert rep["preview"][0]["messages"] == [{"role": "user", "content": "Add 0 and 1."},
                                             {"role": "assistant", "content": "1"}]


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", "{{name}}", "a\x00b", "é", "\u2028", "\ufeff x", "\x1c", "\xff\xfe", "ab" * 40])


def test_the_c_scans_are_built():
    """``pip install`` builds engine/data/_fastscan.c where a C compiler is (scripts/install-test-deps.sh installs one
    for the tests): without it the check is about 15 % slower (numpy does the same work)."""
    if arrowscan._fast() is None:
        pytest.skip("engine/data/_fastscan.c is not built (no C compiler when finetui was installed)")


_BYTES = st.lists(st.sampled_from([b"{", b"}", b"{{", b"\\", b"\\u", b"\\u007b", b"\\u007B", b"\\u00", b"\n",
                                   b"\n{", b"a", b"\xc3\xa9", b"\x80", b" ", b'"', b"{\"a\": 1}\n"]),
                  max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(block=_BYTES | st.binary(max_size=300))
def test_the_c_scans_see_what_numpy_sees(block):
    """The C twins of the byte scans give what numpy gives, for any bytes: line ends, and whether a text may hold
    ``{{`` / is surely ASCII."""
    lib = arrowscan._fast()
    if lib is None:
        pytest.skip("engine/data/_fastscan.c is not built")
    starts = arrowscan._line_starts(block, arrowscan._line_ends(block))
    c = (arrowscan._line_ends(block).tolist(), arrowscan._texts_seen(block, starts))
    arrowscan._FAST[:] = [None]
    try:
        py = (arrowscan._line_ends(block).tolist(), arrowscan._texts_seen(block, starts))
    finally:
        arrowscan._FAST[:] = [lib]
    assert c == py


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.lists(st.binary(max_size=30) | st.none(), min_size=5, max_size=5) | st.binary(max_size=9),
                      min_size=1, max_size=5), cut=st.integers(0, 2))
def test_the_c_hashes_are_the_hashes_of_the_joined_keys(parts, cut):
    """Row hashes made by the C library from a key's parts (texts with nulls, marks; sliced arrays) are
    :func:`arrowscan.hash_words` of the keys joined and padded; a row with a null part hashes 0."""
    import pyarrow as pa

    if arrowscan._fast() is None:
        pytest.skip("engine/data/_fastscan.c is not built")
    arrow = [arrowscan._blit(p) if isinstance(p, bytes) else pa.array(p, pa.binary()).slice(cut) for p in parts]
    n = 5 - cut
    got = arrowscan._hash_parts(arrow, n).tolist()
    for i in range(n):
        texts = [p if isinstance(p, bytes) else p[i + cut] for p in parts]
        want = 0 if None in texts else int(arrowscan.key_hashes([b"".join(texts)])[0])
        assert got[i] == want


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({"instruction": _TEXT, "output": _TEXT}, optional={
    "input": _TEXT, "system": _TEXT | st.none()}), max_size=30), corpus=st.booleans())
def test_the_columns_build_the_row_keys_the_reader_builds(tmp_path, rows, corpus):
    """Duplicates and the first pass's digest rest on one serialisation of a canonical row: the keys the Arrow path
    joins on columns are byte for byte ``row_key`` of the rows the normaliser builds, for any text."""
    from engine.data.formats import normalizer, row_texts
    from engine.data.loader import open_sources

    rows = [{"instruction": "q", "output": "x"}] + rows  # (one row the columns surely pass)
    lines = [json.dumps({"text": r["instruction"] + r["output"]} if corpus else r) for r in rows]
    p = tmp_path / "k.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fmt = "corpus" if corpus else "alpaca"
    [(src, _)] = open_sources(str(p), fmt, "sft", None, {}, None)
    [fs] = arrowscan.fast_files(src, fmt)
    seen = 0
    hashed = [p.hashes() for p in arrowscan.scan_file(fs, fmt, lambda loc, e: None, hashed=True)
              if not isinstance(p, list)]  # (by the C library, keys unmade, where it is built)
    for part in arrowscan.scan_file(fs, fmt, lambda loc, e: None):
        if isinstance(part, list):
            continue
        hashes = part.hashes()
        assert hashes.tolist() == hashed.pop(0).tolist()
        for i in range(len(part)):
            at = i if part.pos is None else int(part.pos[i])
            row = normalizer(fmt)(json.loads(lines[int(part.lines[i]) - 1]), None)
            want = arrowscan.row_key(row)
            assert part.keys[at].as_py() == arrowscan.padded(want)
            assert len(part.keys[at].as_py()) % 8 == 0 and part.keys[at].as_py().startswith(want)
            assert hashes[i] == arrowscan.key_hashes([want])[0]
            assert part.row(i) == row  # (the previews and the token sample are made of these)
            assert int(part.nchars[i]) == len("".join(row_texts(row)))
            seen += 1
    assert seen >= 1


_KEY = st.binary(max_size=40).map(lambda b: b.replace(arrowscan.KEY_END, b""))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(_KEY | st.sampled_from([b"", b"a" * 8, b"a" * 9, b"x" * 700]), max_size=25),
       words=st.sampled_from([1, 2, 3, 1 << 16]))
def test_a_key_hashes_the_same_wherever_it_lies(keys, words, monkeypatch):
    """The word hashes of keys hashed together are those of each key alone, in slices of any size (a key longer
    than a slice is one slice), and equal keys hash equal."""
    monkeypatch.setattr(arrowscan, "_HASH_WORDS", words)
    together = arrowscan.key_hashes(keys).tolist()
    alone = [int(arrowscan.key_hashes([k])[0]) for k in keys]
    assert together == alone
    for k, h in zip(keys, together):
        assert h == together[keys.index(k)]
    assert len(set(together)) == len(set(keys))


def test_similar_keys_hash_apart():
    """Keys that differ by a digit, a bit, an order of words, a length of padding, or in a Thue–Morse arrangement
    of two words (what defeats a polynomial hash modulo 2^64) — no two hash alike."""
    keys = {f"Translate sentence {i} into French.\xff{i % 7}".encode() for i in range(200_000)}
    base = bytes(range(64)).replace(arrowscan.KEY_END, b"")
    keys |= {base[:i] + bytes([base[i] ^ (1 << b)]) + base[i + 1:] for i in range(len(base)) for b in range(7)}
    x, y = b"abcdefgh", b"hgfedcba"
    keys |= {x + y, y + x, x * 2, y * 2, x, x + b"\0" * 8}
    tm = [bin(i).count("1") % 2 for i in range(2048)]
    keys |= {b"".join(x if t else y for t in tm), b"".join(y if t else x for t in tm)}
    keys = sorted(keys)
    assert len(set(arrowscan.key_hashes(keys).tolist())) == len(keys)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(0, 150_000) | st.integers(0, 40), min_size=1, max_size=12),
       block=st.integers(1, 100_000), bom=st.booleans(), end_nl=st.booleans(), gz=st.booleans())
def test_blocks_are_whole_lines_read_once(tmp_path, lengths, block, bom, end_nl, gz):
    """The blocks cut a file (plain or gzip) at line ends (a line longer than the 64 KiB window or than a block
    included): end to end they are the file, each but the last ends with a line end; their lines are counted right."""
    body = b"\n".join(bytes([97 + i % 26]) * n for i, n in enumerate(lengths)) + (b"\n" if end_nl else b"")
    import gzip

    p = tmp_path / "b.jsonl"
    raw = (b"\xef\xbb\xbf" if bom else b"") + body
    p.write_bytes(gzip.compress(raw) if gz else raw)
    got = list(arrowscan._blocks(p, block))
    assert b"".join(got) == body
    assert sum(n for _, n in arrowscan._read_blocks(p, block)) <= p.stat().st_size  # (progress by the file's bytes)
    if not gz and body:
        assert sum(n for _, n in arrowscan._read_blocks(p, block)) == p.stat().st_size
    assert all(b.endswith(b"\n") for b in got[:-1]) and all(got)
    for b in got:
        assert arrowscan._line_count(b, arrowscan._line_ends(b)) == b.count(b"\n") + (not b.endswith(b"\n"))


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.sampled_from("{}a \\\"u07bé\n\x00"), max_size=10) | _TEXT, min_size=1,
                      max_size=8),
       ascii_only=st.booleans(), nested=st.booleans(), escaped=st.sampled_from(["", "\\u007b", "\\u007B"]))
def test_what_the_bytes_tell_of_the_texts_is_never_wrong(texts, ascii_only, nested, escaped):
    """The byte scans that let the columns skip Arrow's kernels only ever err on the safe side: "no text holds
    {{" and "every text is ASCII" are said only when true of the texts JSON decodes (``\\u007b`` escapes included)."""
    lines = []
    for i, t in enumerate(texts):
        obj = {"text": t, "n": i}
        if nested and i % 2:
            obj["meta"] = {"a": {"b": t}}
        line = json.dumps(obj, ensure_ascii=ascii_only)
        if escaped:  # (a brace inside the text written as a JSON escape)
            lit = json.dumps(t, ensure_ascii=ascii_only)
            line = line.replace(lit, lit.replace("{", escaped), 1)
        lines.append(line)
    block = ("\n".join(lines) + "\n").encode()
    braces, ascii_ = arrowscan._texts_seen(block, arrowscan._line_starts(block, arrowscan._line_ends(block)))
    decoded = [json.loads(ln)["text"] for ln in lines]
    if any("{{" in t for t in decoded):
        assert braces
    if not all(t.isascii() for t in decoded):
        assert not ascii_
    assert isinstance(braces, bool) and isinstance(ascii_, bool)


# ------------------------------------------------------------------------------ tokenize once

SFT_ROWS = [{"messages": [{"role": "user", "content": f"Add {i} and {i}." + " Twice." * (i % 4)},
                          {"role": "assistant", "content": str(2 * i)}]} for i in range(40)]


def _tokenize(tok, rows, stage, max_len, monkeypatch, tmp_path):
    from engine.data.tokcache import tokenized
    from engine.train.trainers import tokenize_lm

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    said = []
    ds, trunc = tokenized(tok, rows, stage, max_len, tokenize_lm, lambda phase, text, **kw: said.append(kw["cache"]))
    return ds, trunc, said


def test_tokenized_once_then_memory_mapped(data_tokenizer, monkeypatch, tmp_path):
    from engine.train.trainers import tokenize_lm

    n = max(len(r["input_ids"]) for r in tokenize_lm(data_tokenizer, SFT_ROWS, "sft", None)[0]) - 1
    want, want_trunc = tokenize_lm(data_tokenizer, SFT_ROWS, "sft", n)
    ds, trunc, said = _tokenize(data_tokenizer, SFT_ROWS, "sft", n, monkeypatch, tmp_path)
    assert said == ["written"] and ds.to_list() == want and trunc == want_trunc > 0
    ds2, trunc2, said = _tokenize(data_tokenizer, SFT_ROWS, "sft", n, monkeypatch, tmp_path)
    assert said == ["reused"] and ds2.to_list() == want and trunc2 == trunc
    assert ds2.cache_files and ds2.cache_files[0]["filename"].startswith(str(tmp_path / "cache" / "tokenized"))
    # what the tokens depend on is in the key: the length, the rows' content, the stage, the chat template
    for rows, stage, m in ((SFT_ROWS, "sft", n + 1), (SFT_ROWS[:-1] + [SFT_ROWS[0]], "sft", n),
                           (SFT_ROWS, "pretrain", n)):
        assert _tokenize(data_tokenizer, rows, stage, m, monkeypatch, tmp_path)[2] == ["written"]
    tpl = data_tokenizer.chat_template
    try:
        data_tokenizer.chat_template = tpl.replace("<|im_start|>", "<|im_start|> ")
        assert _tokenize(data_tokenizer, SFT_ROWS, "sft", n, monkeypatch, tmp_path)[2] == ["written"]
    finally:
        data_tokenizer.chat_template = tpl


CONCURRENT = r"""
import json, sys
from engine.data.tokcache import tokenized
from engine.data.tokenize import load_tokenizer
from engine.train.trainers import tokenize_lm
tok = load_tokenizer(sys.argv[1])
rows = json.loads(open(sys.argv[2]).read())
said = []
ds, _ = tokenized(tok, rows, "sft", 64, tokenize_lm, lambda p, t, **kw: "cache" in kw and said.append(kw["cache"]))
print(json.dumps({"said": said, "rows": len(ds), "first": ds[0]["input_ids"]}))
"""


def test_ranks_at_once_tokenize_once(data_tokenizer, tmp_path):
    """Two ranks started together on one host: one tokenizes, the other waits on the lock and maps its file."""
    import os
    import subprocess
    import sys

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(SFT_ROWS * 50))
    env = dict(os.environ, FINETUI_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(data_tokenizer.saved_path), str(rows)],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=240)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(o["said"][0] for o in outs) == ["reused", "written"]
    assert outs[0]["rows"] == outs[1]["rows"] == 2000 and outs[0]["first"] == outs[1]["first"]
    assert not [p for p in (tmp_path / "cache" / "tokenized").iterdir() if ".part" in p.name]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_same_job_launched_twice_tokenizes_once(tmp_path, tiny_model, tmp_path_factory):
    """Two launches of the same job (the real worker, one rank each): the first tokenizes and caches, the second
    says it reused the cache, memory-maps it and trains to the same losses."""
    import uuid

    from tests.fixtures_train import describe_run, events, kinds, losses, run_batch, session_cache, write_run

    tag = uuid.uuid4().hex[:8]  # (rows no other test has: the session's cache holds no entry for them)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {w} {tag}", "input": "", "output": w}) + "\n"
                            for w in ("apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu")))
    specs = []
    for name in ("first", "second"):
        write_run(tmp_path / name, **{"data.train_path": str(data), "data.format": "alpaca", "general.max_steps": 2,
                                      "trainer.training_type": "full", "general.learning_rate": 0.005})
        specs.append({"name": name, "run_dir": str(tmp_path / name), "kind": "train", "hook": None, "at": 0,
                      "temperature": 0.0})
    res = run_batch(specs, session_cache(tmp_path_factory))
    said = {}
    for name in ("first", "second"):
        assert res[name]["code"] == 0, describe_run(tmp_path / name)
        said[name] = [(r["cache"], r["text"]) for r in kinds(events(tmp_path / name), "status") if r.get("cache")]
    assert [c for c, _ in said["first"]] == ["written"] and said["first"][0][1].startswith("tokenized ")
    assert [c for c, _ in said["second"]] == ["reused"] and said["second"][0][1].startswith("reused cache")
    first, second = losses(events(tmp_path / "first")), losses(events(tmp_path / "second"))
    assert first and first == second


def test_tokenizing_says_its_progress(data_tokenizer, monkeypatch, tmp_path):
    """Long tokenization says how far it is: phase "preparing data" with a fraction, rows/s and the time left."""
    from engine.data import tokcache
    from engine.train.trainers import tokenize_lm

    monkeypatch.setattr(tokcache, "CHUNK", 10)
    monkeypatch.setattr(tokcache, "PROGRESS_S", 0.0)
    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    said = []
    ds, _ = tokcache.tokenized(data_tokenizer, SFT_ROWS, "sft", 64, tokenize_lm,
                               lambda phase, text, **kw: said.append((phase, text, kw)))
    prog = [(t, kw) for p, t, kw in said if p == "preparing data"]
    assert [kw["fraction"] for _, kw in prog] == [0.25, 0.5, 0.75]
    assert prog[0][0].startswith("tokenizing: 10 / 40 training rows · ") and "rows/s" in prog[0][0]
    assert ds.to_list() == tokenize_lm(data_tokenizer, SFT_ROWS, "sft", 64)[0]


def test_check_says_its_progress(tmp_path, monkeypatch):
    """The check reports rows and bytes as it goes (per Arrow block, the block's rows counted; by rows on the
    row-by-row path)."""
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(3000)))
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 8192)
    seen = []
    rep = check(str(p), "corpus", progress=lambda rows, done, total: seen.append((rows, done, total)))
    size = p.stat().st_size
    assert rep["rows"]["valid"] == 3000 and len(seen) > 5
    assert all(t == size for _, _, t in seen) and seen[-1] == (3000, size, size)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)
    body = p.read_bytes()
    assert all(rows == body[:done].count(b"\n") for rows, done, _ in seen if done)  # (each block's rows counted)


def test_cli_check_shows_a_progress_bar_in_a_terminal(tmp_path):
    """In a terminal `finetui data check` draws its bar on stderr: rows, rows/s (erased when the report prints)."""
    import os
    import pty
    import subprocess
    import sys

    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(50_000)))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "data", "check", str(p), "--format", "corpus"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=dict(os.environ, COLUMNS="120", TERM="xterm"))
    os.close(slave)
    out = proc.communicate(timeout=180)[0].decode()
    err = read_pty(master)
    assert proc.returncode == 0 and "result: OK" in out
    assert b"checking" in err and b"50,000 rows" in err and b"rows/s" in err


def test_the_check_does_not_import_pandas(tmp_path):
    """Any Python value converted to Arrow (a literal in a compute call, ``pa.scalar``, ``to_numpy``) makes pyarrow
    import pandas — a quarter of a second, a fifth of the check of a million rows. The fast path makes none."""
    import subprocess
    import sys

    p = tmp_path / "d.jsonl"
    rng = random.Random(5)
    p.write_text("\n".join(_alpaca_line(rng, dirty=False) for _ in range(300)) + "\n")
    code = ("import sys; sys.path.insert(0, %r); from engine.data.check import check; "
            "rep = check(%r, 'alpaca', stage='sft', allow_invalid=100); "
            "print(rep['rows']['valid'] > 0, rep['duplicates'] > 0, 'pandas' in sys.modules)") % (
        str(Path(__file__).resolve().parent.parent), str(p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "False"], out.stdout + out.stderr


def test_duplicates_in_bounded_memory():
    """Past the cap the check keeps the hashes of 1 row in 2^level, chosen by hash: a file without duplicates still
    counts 0, one with many gets an estimate near the truth, and no more than the cap is ever kept."""
    import numpy as np

    from engine.data.check import _Hashes

    rng = np.random.default_rng(0)
    unique = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=200_000, dtype=np.int64)
    h = _Hashes(cap=10_000)
    for part in np.array_split(unique, 37):
        h.add(part)
        assert len(h.kept) <= 10_000
    assert h.level >= 4 and h.duplicates() == 0
    # 120,000 distinct rows, 80,000 of them twice more: 160,000 duplicates
    rows = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=120_000, dtype=np.int64)
    data = np.concatenate([rows, rows[:80_000], rows[:80_000]])
    rng.shuffle(data)
    est = _Hashes(cap=20_000)
    for part in np.array_split(data, 50):
        est.add(part)
    assert est.level >= 3 and abs(est.duplicates() - 160_000) < 0.1 * 160_000
    exact = _Hashes(cap=10 ** 6)
    exact.add(data)
    assert exact.level == 0 and exact.duplicates() == 160_000


def test_check_says_when_duplicates_are_estimated(tmp_path, monkeypatch):
    from engine.data import check as C

    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"instruction": f"q{i % 3000}", "output": "a"}) + "\n" for i in range(9000)))
    exact = C.check(str(p), "alpaca")
    assert exact["duplicates"] == 6000 and exact["duplicates_sampled"] == 1
    monkeypatch.setattr(C, "EXACT_DUPLICATE_ROWS", 1000)
    rep = C.check(str(p), "alpaca")
    assert rep["duplicates_sampled"] > 1 and 4000 < rep["duplicates"] < 8000
    assert any(w.startswith("about ") and "estimated from 1 row in" in w for w in rep["warnings"])
    assert f"(estimated from 1 row in {rep['duplicates_sampled']})" in C.format_report(rep)


@pytest.mark.parametrize("fmt,seed", [("alpaca", 7), ("corpus", 8)])
def test_first_pass_on_the_arrow_path(tmp_path, monkeypatch, fmt, seed):
    """The worker's first pass over JSON-lines corpus / alpaca files goes through the check's Arrow path: the same
    counts and invalid rows as the row reader, and a digest that follows the rows' content and order."""
    from engine.data.loader import ScanCounts, count_rows, keys_digest, open_sources, scan_all

    rng = random.Random(seed)
    make = _alpaca_line if fmt == "alpaca" else _corpus_line
    lines = [make(rng, dirty=(i // 40) % 3 == 0) for i in range(1200)]
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 2048)

    def first_pass(body: list[str], name: str = "d.jsonl"):
        p = tmp_path / name
        p.write_text("\n".join(body) + "\n")
        srcs = open_sources(str(p), fmt, "sft", None, {}, None)
        fast, slow = ScanCounts(), ScanCounts()
        digest = keys_digest(srcs, fast, "sft")
        for _ in scan_all(srcs, slow, stage="sft"):
            pass
        assert (fast.total, fast.valid, fast.invalid) == (slow.total, slow.valid, slow.invalid) and fast.invalid
        assert fast.listed == slow.listed
        counted = ScanCounts()  # (the launch's preflight: counted on the Arrow path, no row keys made)
        for src, f in srcs:
            count_rows(src, f, counted, "sft")
        assert (counted.total, counted.valid, counted.invalid, counted.listed) == (
            slow.total, slow.valid, slow.invalid, slow.listed)
        return digest

    d = first_pass(lines)
    assert d is not None and first_pass(lines, "again.jsonl") != d  # (the file's name is part of it)
    assert first_pass(lines) == d
    valid = [i for i, ln in enumerate(lines) if ln.strip() and ln.startswith("{") and (i // 40) % 3 != 0]
    i, j = valid[10], valid[500]
    if lines[i] != lines[j]:
        swapped = list(lines)
        swapped[i], swapped[j] = lines[j], lines[i]
        assert first_pass(swapped) != d
    changed = list(lines)
    changed[valid[20]] = json.dumps({"instruction": "changed", "output": "x"} if fmt == "alpaca" else {"text": "changed"})
    assert first_pass(changed) != d


def test_first_pass_says_its_progress(tmp_path, monkeypatch):
    """The worker's first pass over a large file says how far it is (phase "preparing data": bytes, rows, rows/s,
    time left) instead of a silent "loading data" for minutes."""
    from engine.data import tokcache
    from engine.data.loader import stream_rows
    from engine.train.worker import Worker

    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(3000)))
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 8192)
    monkeypatch.setattr(tokcache, "PROGRESS_S", 0.0)
    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    data = stream_rows({"data.train_path": str(p), "data.format": "corpus", "trainer.stage": "pretrain"}, None,
                       lambda rows, done, total: calls.append((rows, done, total)))
    assert len(data.train) == 3000 and len(calls) >= 3
    assert [c[1] for c in calls] == sorted(c[1] for c in calls) and calls[-1][1] == calls[-1][2] == p.stat().st_size

    said = []
    w = object.__new__(Worker)
    w.status = lambda phase, text="", **kw: said.append((phase, text, kw))
    progress = w._reading_progress()
    for rows, done, total in calls:
        progress(rows, done, total)
    assert said and all(phase == "preparing data" for phase, _, _ in said)
    assert len(said) == len(calls) - 1  # (not the last call: the pass is over)
    text, kw = said[0][1], said[0][2]
    assert text.startswith("reading rows: ") and "rows/s" in text and "s left" in text and 0 < kw["fraction"] < 1


@pytest.mark.parametrize("line", ["null", "  null", "true", "[1]", "7"])
def test_a_line_that_is_not_an_object(tmp_path, monkeypatch, line):
    """pyarrow 25's JSON reader crashes the process on a bare ``null`` line (a segfault, found by the fuzz
    tests): a block holding any line that is not an object is read one by one, and reported as the row reader
    reports it."""
    p = tmp_path / "d.jsonl"
    rows = [json.dumps({"instruction": f"q{i}", "output": "a"}) for i in range(50)]
    p.write_text("\n".join(rows[:20] + [line] + rows[20:]) + "\n")
    fast, slow = _both(p, "alpaca", monkeypatch)
    assert fast["rows"]["invalid"] == 1 and fast["invalid_rows"][0]["location"].endswith(":21")
    for k in SAME:
        assert fast[k] == slow[k], k


_VALUE = _TEXT | st.none() | st.integers(-3, 3) | st.lists(st.text(max_size=3), max_size=2) | st.just({"a": 1})
_LINE = (st.fixed_dictionaries({}, optional={"instruction": _VALUE, "input": _VALUE, "output": _VALUE,
                                             "system": _VALUE, "history": _VALUE, "text": _VALUE, "x": _VALUE})
         .flatmap(lambda row: st.sampled_from([json.dumps(row), json.dumps(row, ensure_ascii=False),
                                               json.dumps(row, indent=None, separators=(",", ":"))]))
         | st.sampled_from(["", "   ", "null", "[1]", "7", "{", "{\"output\": \"a\"", "\ufeff{}", "\\u007b{x}}",
                            "{\"instruction\": \"\\u007b{x}}\", \"output\": \"y\"}", "{\"output\": \"\\ud800\"}"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, min_size=1, max_size=40), corpus=st.booleans(), crlf=st.booleans())
def test_any_lines_get_the_row_readers_report_either_way(tmp_path, monkeypatch, lines, corpus, crlf):
    """Any JSON lines — valid, malformed, wrong types, escapes, blank, not objects — give the same report on the
    Arrow path with the C library, with numpy's scans and hashes, and row by row."""
    p = tmp_path / "d.jsonl"
    p.write_bytes((("\r\n" if crlf else "\n").join(lines) + "\n").encode("utf-8", "surrogatepass"))
    fmt = "corpus" if corpus else "alpaca"
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 512)  # (several blocks, some parsed by Arrow, some not)
    fast, slow = _both(p, fmt, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(arrowscan, "_FAST", [None])
        numpy_only = check(str(p), fmt, allow_invalid=100, token_sample=10_000)
    for k in SAME:
        assert fast[k] == slow[k] == numpy_only[k], k


@pytest.mark.parametrize("kind", ["plain", "gz", "zip", "cr"])
def test_a_line_longer_than_a_line_may_be(tmp_path, monkeypatch, kind):
    """A line longer than MAX_LINE_BYTES (the file on one line: lone CR line ends, not JSON lines) is not read into
    memory whole: the check stops there with one sentence naming file:line, the rows before it counted — the same on
    the Arrow path as row by row."""
    import gzip
    import zipfile

    from engine.data import sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 4000)
    monkeypatch.setattr(arrowscan, "MAX_LINE_BYTES", 4000)
    monkeypatch.setattr(arrowscan, "BLOCK_BYTES", 512)
    rows = [json.dumps({"instruction": f"q{i}", "output": "a" * (i % 50)}) for i in range(300)]
    if kind == "cr":
        body, at = ("\r".join(rows) + "\r").encode(), 1
    else:
        long = json.dumps({"instruction": "x" * 9000, "output": "y"})
        body, at = ("\n".join(rows[:120] + [long] + rows[120:]) + "\n").encode(), 121
    p = tmp_path / {"plain": "d.jsonl", "cr": "d.jsonl", "gz": "d.jsonl.gz", "zip": "d.zip"}[kind]
    if kind == "zip":
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("d.jsonl", body)
    else:
        p.write_bytes(gzip.compress(body) if kind == "gz" else body)
    fast, slow = _both(p, "alpaca", monkeypatch)
    assert fast["ok"] is False and fast["rows"]["total"] == at - 1
    assert fast["errors"][-1].endswith("a line longer than 0 MiB: not JSON lines (one object per line, each line "
                                       "ending with \\n; lone CR line ends make one line of a file)")
    assert f":{at}: a line longer" in fast["errors"][-1]
    for k in SAME:
        assert fast[k] == slow[k], k

"""Property-based fuzzing of every command that reads a user's file (issue 19 §3).

Hypothesis generates presets (TOML), data files and foreign configs (LLaMA-Factory YAML with its
dataset_info.json, Nova recipes, FPT / OCI / watsonx JSON) with wrong types, extreme numbers, deep
nesting and odd encodings; for each of ``validate``, ``show``, ``data check``, ``import``, ``export`` and
``estimate`` the property is: exit 0 or exit 2 with at least one line, never a traceback or an internal
error, within a few seconds.  Commands run in this process through ``tui.cli.main`` (the entry point and
its top-level handler) for speed; ``test_errors.py`` runs the console script itself.

Reproducible in CI: ``derandomize=True`` (the same examples on every run), no example database.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.schema import FIELDS, FORMATS, STAGES
from engine.interop import EXPORT_FORMATS
from engine.interop.jsonparams import FPT_KEYS, OCI_KEYS, WATSONX_KEYS
from engine.interop.llamafactory import KNOWN as LF_KEYS
from tests.fixtures_errors import CliResult, run_cli

ROOT = Path(__file__).resolve().parent.parent
DEMO_TEXT = (ROOT / "presets" / "demo.toml").read_text(encoding="utf-8")
#: one command may take this long (a 2-core CI machine shared with other jobs)
SECONDS = 8.0

#: examples per property; FINETUI_FUZZ_EXAMPLES=1000 (and FINETUI_FUZZ_SEED=n for other examples) fuzz deeper
FUZZ = settings(max_examples=int(os.environ.get("FINETUI_FUZZ_EXAMPLES", "60")), deadline=None,
                derandomize="FINETUI_FUZZ_SEED" not in os.environ, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def check(*argv: str) -> CliResult:
    t0 = time.monotonic()
    r = run_cli(*argv)
    took = time.monotonic() - t0
    assert "Traceback" not in r.out, r.out[-3000:]
    assert "internal error" not in r.out, r.out[-3000:]
    assert r.code in (0, 2), (r.code, r.out[-3000:])
    if r.code == 2:
        assert r.lines, "exit 2 without a line saying why"
    assert took < SECONDS, f"{argv[0]} took {took:.1f} s"
    return r


# ------------------------------------------------------------------ values

DEEP = ["[" * 3000 + "]" * 3000, "{" * 3000 + "}" * 3000]
HUGE = [10**30, -(10**30), 10**4000, 2**63, 2**64 + 1, -1, 0]
ODD_FLOATS = [math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, 1e300]
ODD_TEXT = ["", " ", "\u0000", "a\u0000b", "é", "💥", "\ufeff", "x" * 300, "../../etc/passwd", "/dev/zero",
            "s3://", "finetui:", "a;b", "-oProxyCommand=x", "~", "${HOME}", "a=b", "1e309", "nan", "inf"]

leaf = (st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.sampled_from(HUGE)
        | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(ODD_FLOATS)
        | st.text(max_size=12) | st.sampled_from(ODD_TEXT))
json_values = st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                        max_size=4), max_leaves=10)
field_names = st.sampled_from([f.name for f in FIELDS])


def toml_value(v) -> str:  # noqa: ANN001
    """A TOML literal for ``v`` (None, which TOML lacks, becomes an empty string)."""
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if abs(v) < 10**4200 else "9" * 4400  # (str() of more digits raises)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"


@st.composite
def preset_texts(draw) -> bytes:  # noqa: ANN001
    """A preset: the demo with fields set to odd values, keys misplaced, nesting deep, text mangled or in
    another encoding."""
    groups: dict[str, list[str]] = {}
    for name in draw(st.lists(field_names, max_size=6)):
        g, k = name.split(".", 1)
        value = draw(json_values | st.sampled_from(DEEP) | st.sampled_from(ODD_TEXT))
        text = value if isinstance(value, str) and value in DEEP else toml_value(value)
        groups.setdefault(g, []).append(f"{k} = {text}")
    text = DEMO_TEXT
    for g, lines in groups.items():
        header = f"[{g}]\n"
        text = text.replace(header, header + "\n".join(lines) + "\n") if header in text else (
            text + f"\n{header}" + "\n".join(lines) + "\n")
    how = draw(st.sampled_from(["plain", "plain", "mangle", "top", "latin-1", "utf-16", "gzip", "truncate"]))
    if how == "mangle":
        for _ in range(draw(st.integers(1, 5))):
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.sampled_from(["[", "]", "=", '"', "\n", "{", "\u0000", "é", "#", "."])) + text[i:]
    if how == "top":
        text = draw(st.sampled_from(["batch_size = 8\n", "profile = 5\n", "profile = \"nope\"\n", "general = 1\n",
                                     "name = [1]\n", "secret_key = \"x\"\n"])) + text
    data = text.encode("utf-8", "surrogatepass")
    if how in ("latin-1", "utf-16"):
        data = text.replace("demo", "démo").encode(how, "replace")
    elif how == "gzip":
        data = gzip.compress(data)
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _row(draw) -> object:  # noqa: ANN001
    base = draw(st.sampled_from([
        {"instruction": "q", "input": "", "output": "a"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "completion": "a", "label": True},
        {"text": "some text"},
    ]))
    row = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(list(base) + ["images", "system", "tools", "x"]))
        row[key] = draw(json_values)
    return draw(st.sampled_from([row, row, row, draw(json_values)]))


@st.composite
def data_files(draw) -> tuple[str, bytes]:  # noqa: ANN001
    """(file name, bytes): rows as JSON lines or a JSON array, with broken lines, deep nesting, huge numbers,
    odd encodings or gzip."""
    rows = [_row(draw) for _ in range(draw(st.integers(0, 6)))]
    kind = draw(st.sampled_from([".jsonl", ".json", ".jsonl.gz", ".json.gz"]))
    if kind.startswith(".jsonl"):
        lines = [json.dumps(r, allow_nan=True) for r in rows]
        for _ in range(draw(st.integers(0, 2))):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(
                ['{"instruction": "x", "inp', "[1,", "", "null", "9" * 5000, DEEP[0], DEEP[1], "\u0000{}", "{}"])))
        text = "\n".join(lines) + draw(st.sampled_from(["\n", ""]))
    else:
        text = json.dumps(rows, allow_nan=True)
        if draw(st.booleans()):
            text = text[: draw(st.integers(0, len(text)))]
    enc = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = text.encode(enc, "replace")
    if kind.endswith(".gz"):
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
    return "data" + kind, data


def _fuzzed_mapping(draw, keys: list[str]) -> dict:  # noqa: ANN001
    out = {}
    for k in draw(st.lists(st.sampled_from(sorted(keys)), max_size=8, unique=True)):
        out[k] = draw(json_values)
    return out


@st.composite
def foreign_configs(draw) -> tuple[str, str | None, dict[str, bytes]]:  # noqa: ANN001
    """(format or None = detect, main file name, {file name: bytes}) of an LLaMA-Factory YAML (with a
    dataset_info.json), a Nova recipe, or FPT / OCI / watsonx JSON, with wrong types and odd values."""
    fmt = draw(st.sampled_from(["llamafactory", "nova", "fpt_studio", "oci", "watsonx"]))
    files: dict[str, bytes] = {}
    if fmt == "llamafactory":
        d = {"stage": draw(st.sampled_from(["sft", "dpo", "kto", "rm", "pt", 5, None])),
             "finetuning_type": draw(st.sampled_from(["lora", "full", "freeze", [1], {"a": 1}])),
             "model_name_or_path": draw(st.sampled_from(["m", 7, ["a"], "x" * 300])),
             "dataset": draw(st.sampled_from(["ds", "ds,other", ["ds", 5], 3, ",".join(f"d{i}" for i in range(2000))])),
             "dataset_dir": "dd"}
        d.update(_fuzzed_mapping(draw, list(LF_KEYS)))
        main, text = "job.yaml", yaml.safe_dump(d, allow_unicode=True)
        info = draw(st.sampled_from([
            {"ds": {"file_name": "rows.jsonl"}},
            {"ds": {"file_name": draw(json_values), "columns": draw(json_values), "formatting": draw(json_values)}},
            {"ds": draw(json_values)}, draw(json_values), "not json {"]))
        files["dd/dataset_info.json"] = (info if isinstance(info, str) else json.dumps(info, allow_nan=True)).encode()
        files["dd/rows.jsonl"] = b'{"instruction": "q", "input": "", "output": "a"}\n'
    elif fmt == "nova":
        tc = {"model": draw(st.sampled_from([{"optim": draw(json_values), "peft": draw(json_values)},
                                             draw(json_values)])),
              "trainer": draw(json_values), "exp_manager": draw(json_values)}
        tc.update(_fuzzed_mapping(draw, ["max_length", "global_batch_size", "allow_percentage_invalid_samples"]))
        d = {"run": {"name": draw(json_values), "model_type": draw(st.sampled_from(
            ["amazon.nova-micro-v1:0:128k", "amazon.nova-lite-v1:0:300k", 5, None])),
                     "model_name_or_path": draw(json_values), "data_s3_path": draw(json_values)},
             "training_config": tc}
        main, text = "recipe.yaml", yaml.safe_dump(d, allow_unicode=True)
    else:
        keys = {"fpt_studio": FPT_KEYS, "oci": OCI_KEYS, "watsonx": WATSONX_KEYS}[fmt]
        d = _fuzzed_mapping(draw, list(keys))
        if fmt == "oci" and draw(st.booleans()):
            d = {"hyperparameters": d}
        main, text = "params.json", json.dumps(d, allow_nan=True)
    if draw(st.integers(0, 9)) == 0:  # deep nesting or a huge integer in the main file
        text = draw(st.sampled_from([text.rstrip("\n") + "\nextra: " + DEEP[0] + "\n" if main.endswith("yaml")
                                     else '{"a": ' + DEEP[0] + "}", text.replace("sft", "9" * 5000, 1)]))
    files[main] = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"])), "replace")
    return (fmt if draw(st.booleans()) else None), main, files


def _write(base: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# ------------------------------------------------------------------ the properties

@FUZZ
@given(preset=preset_texts(), cmd=st.sampled_from(["validate", "show", "estimate"]))
def test_preset_commands_end_in_exit_0_or_one_line(preset, cmd):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "job.toml"
        p.write_bytes(preset)
        check(cmd, str(p))


@FUZZ
@given(preset=preset_texts(), to=st.sampled_from(EXPORT_FORMATS), to_file=st.booleans())
def test_export_ends_in_exit_0_or_one_line(preset, to, to_file):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "job.toml"
        p.write_bytes(preset)
        if to_file:
            check("export", str(p), "--to", to, "-o", str(Path(d) / "out" / "x.yaml"))
        else:
            check("export", str(p), "--to", to)


@FUZZ
@given(f=data_files(), fmt=st.sampled_from(FORMATS), stage=st.sampled_from((None,) + STAGES),
       max_length=st.sampled_from([None, "1", "64", "0", "-5", "99999999999999999999"]),
       allow=st.sampled_from([None, "0", "50", "nan", "inf", "-1", "100"]))
def test_data_check_ends_in_exit_0_or_one_line(f, fmt, stage, max_length, allow):
    name, data = f
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        argv = ["data", "check", str(p), "--format", fmt]
        argv += ["--trainer", stage] if stage else []
        argv += ["--max-length", max_length] if max_length else []
        argv += ["--allow-invalid", allow] if allow else []
        check(*argv)


@FUZZ
@given(f=data_files(), cmd=st.sampled_from(["validate", "estimate"]))
def test_validate_and_estimate_read_the_data_file_safely(f, cmd):
    name, data = f
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        preset = Path(d) / "job.toml"
        preset.write_text(DEMO_TEXT.replace('"finetui:samples/alpaca_demo.jsonl"', json.dumps(str(p))))
        check(cmd, str(preset))


@FUZZ
@given(cfg=foreign_configs(), to_file=st.booleans())
def test_import_ends_in_exit_0_or_one_line(cfg, to_file):
    fmt, main, files = cfg
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d), files)
        argv = ["import", str(Path(d) / main)] + (["--format", fmt] if fmt else [])
        argv += ["-o", str(Path(d) / "imported.toml")] if to_file else []
        r = check(*argv)
        if to_file and (Path(d) / "imported.toml").exists():  # what import wrote loads again (maybe invalid)
            check("validate", str(Path(d) / "imported.toml"))
        assert r.code in (0, 2)


@pytest.mark.parametrize("cmd", ["validate", "show", "estimate", "import", "data"])
def test_non_files_end_in_one_line(tmp_path, cmd):
    """A folder, a missing file, a device, a path too long: one line for every command that reads a file."""
    for target in (str(tmp_path), str(tmp_path / "missing.toml"), "/dev/null", "/dev/zero",
                   str(tmp_path / ("x" * 300))):
        argv = ["data", "check", target, "-f", "alpaca"] if cmd == "data" else [cmd, target]
        r = check(*argv)
        assert r.code == 2 or (cmd == "data" and target == "/dev/null" and r.code == 2), r.out

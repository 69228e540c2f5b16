"""TOML presets: load and save a :class:`JobConfig`.

A preset holds the profile and the values the user set, in the schema's groups::

    name = "demo"
    profile = "native"

    [general]
    learning_rate = 0.001

Loading then saving gives back the same file (round trip exact).  An unknown
key is an error with a "did you mean" suggestion; a secret is never written — a
preset names the environment variable that holds it instead.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from engine import userfiles
from engine.schema import (FIELD_BY_NAME, GROUP_FIELDS, GROUPS, SECRET_KEYS, ConfigError, JobConfig,
                           Problem, spec, suggest)

TOP_KEYS = ("name", "profile")
def _presets_dir() -> Path:
    """The shipped presets: ``presets/`` in a source checkout (editable install), else the
    copy a wheel installs under ``<prefix>/share/finetui/presets``."""
    here = Path(__file__).resolve().parent.parent / "presets"
    if here.is_dir():
        return here
    import sys

    return Path(sys.prefix) / "share" / "finetui" / "presets"


PRESETS_DIR = _presets_dir()


class PresetError(ConfigError):
    """A preset file that cannot be read; ``str()`` names the file (and line)."""


def parse(data: dict[str, Any], source: str = "<preset>") -> JobConfig:
    probs: list[Problem] = []
    job = JobConfig(profile=str(data.get("profile", "native")))
    if "name" in data:
        job.name = str(data["name"])
    group_keys = [g for g, _ in GROUPS]
    for key, val in data.items():
        if key in TOP_KEYS:
            continue
        if key == "sweep":  # a study over this job (engine.sweep): checked here, run by `finetui sweep`
            from engine.sweep import parse_table

            job.sweep, more = parse_table(val, source)
            probs += more
            continue
        if key not in group_keys:
            if key.lower() in SECRET_KEYS:
                probs.append(Problem(key, "secrets are never stored in a preset; name an environment variable "
                                          "(e.g. data.s3_secret_key_env) instead"))
                continue
            hint = suggest(key, group_keys + list(TOP_KEYS))
            # a field written at the top level instead of inside its group
            owners = [f.name for f in FIELD_BY_NAME.values() if f.key == key]
            if owners:
                hint = f"; did you mean `{owners[0]}` (put it in the [{owners[0].split('.')[0]}] table)?"
            probs.append(Problem(key, f"unknown key in {source}{hint}"))
            continue
        if not isinstance(val, dict):
            probs.append(Problem(key, f"must be a table ([{key}]) in {source}"))
            continue
        names = {f.key for f in GROUP_FIELDS.get(key, [])}
        for k, v in val.items():
            dotted = f"{key}.{k}"
            if k.lower() in SECRET_KEYS or k.lower().endswith(("secret_key", "_token", "password", "api_key")):
                where = ("the W&B API key is read from the WANDB_API_KEY environment variable only" if "wandb" in
                         k.lower() else "name an environment variable instead (e.g. s3_secret_key_env = \"MY_SECRET\")")
                probs.append(Problem(dotted, f"secrets are never stored in a preset; {where}"))
                continue
            if k not in names:
                probs.append(Problem(dotted, f"unknown key in {source}{suggest(dotted, FIELD_BY_NAME)}"))
                continue
            job.values[dotted] = v
    if probs:
        raise PresetError(probs)
    return job


def _preset_error(where: str, reason: str) -> PresetError:
    return PresetError([Problem(where, reason)])


#: how deeply a preset's values may nest (a field holds at most a list of strings)
MAX_DEPTH = 8


def loads(text: str, source: str = "<preset>") -> JobConfig:
    try:
        with userfiles.parsing(source, _preset_error):
            data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError([Problem(source, f"not valid TOML: {e}")]) from None
    if userfiles.max_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise _preset_error(source, f"values nested more than {MAX_DEPTH} levels deep; a preset holds tables of "
                                    "values and lists")
    return parse(data, source)


def load(path: str | os.PathLike[str]) -> JobConfig:
    p = Path(path)
    if not userfiles.exists(p) and userfiles.path_problem(str(p)) is None:
        raise _preset_error(str(p), "no such preset file")
    job = loads(userfiles.read_text(p, str(p), _preset_error), str(p))
    _resolve_relative_paths(job, p.parent)
    return job


def _resolve_relative_paths(job: JobConfig, base: Path) -> None:
    """Data paths in a preset are relative to the preset's folder (kept as written when absolute)."""
    from engine.datapaths import data_paths, join_paths, map_paths

    def resolve(v: str) -> str:
        if v.startswith(("s3://", "finetui:", "/", "~")):
            return v
        cand = base / v
        return str(cand.resolve()) if userfiles.exists(cand) and not userfiles.exists(v) else v

    for name in ("data.train_path", "data.validation_path"):
        v = job.values.get(name)
        if isinstance(v, str) and v and map_paths(v, resolve) != join_paths(data_paths(v)):
            job.values[name] = map_paths(v, resolve)


def load_run_config(path: str | os.PathLike[str]) -> JobConfig:
    """A run directory's ``config.toml`` (a resolved dump) as a job to edit or start again.  Runs written before
    resolved dumps left them out hold the defaults of fields that do not apply (``zero_stage`` without DeepSpeed,
    ``simpo_gamma`` without SimPO), which a preset may not set: those are dropped."""
    job = load(path)
    res = job.resolved()
    for name, value in list(job.values.items()):
        f = FIELD_BY_NAME[name]
        if not f.is_visible(res) and value == spec(name, job.profile).default:
            del job.values[name]
    return job


def dumps(job: JobConfig, resolved: bool = False) -> str:
    """The job as preset text; secrets are left out, and a URI keeps no ``user:password@`` (engine.redact)."""
    from engine import redact

    data = job.nested(resolved=resolved)
    for g in list(data):
        if isinstance(data[g], dict):
            for k in list(data[g]):
                if FIELD_BY_NAME[f"{g}.{k}"].secret:
                    del data[g][k]
                elif isinstance(data[g][k], list):
                    data[g][k] = [redact.strip(v) for v in data[g][k]]
                else:
                    data[g][k] = redact.strip(data[g][k])
    text = _emit(data)
    if job.sweep and not resolved:  # (a run's resolved config is one trial: no sweep)
        from engine.sweep import table_for_toml

        text += "\n" + _tomli_w().dumps({"sweep": table_for_toml(job.sweep)})
    return text


def _tomli_w() -> Any:
    import tomli_w  # imported when a preset is written, not when finetui starts

    return tomli_w


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):  # (never produced by the schema; an imported value that is wrong keeps its form)
        return "{" + ", ".join(f"{_tomli_w().dumps({k: 0}).split('=', 1)[0].strip()} = {_value(x)}"
                               for k, x in v.items() if x is not None) + "}"
    # scalars: the library writes the value
    return _tomli_w().dumps({"x": v}).split("=", 1)[1].strip()


def _emit(data: dict[str, Any]) -> str:
    """Canonical preset text: top-level keys, then one table per group in schema order,
    short arrays inline (so a hand-written preset in this form round-trips byte for byte)."""
    lines = [f"{k} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for g, tbl in data.items():
        if isinstance(tbl, dict):
            lines.append("")
            lines.append(f"[{g}]")
            lines.extend(f"{k} = {_value(v)}" for k, v in tbl.items() if v is not None)  # (TOML has no null)
    return "\n".join(lines) + "\n"


def save(job: JobConfig, path: str | os.PathLike[str], resolved: bool = False) -> Path:
    """Write atomically (temp file + rename), so a failed save never destroys the old file."""
    from engine.safeio import atomic_write

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, dumps(job, resolved=resolved))
    return p


def shipped() -> list[Path]:
    return sorted(PRESETS_DIR.glob("*.toml")) if PRESETS_DIR.is_dir() else []

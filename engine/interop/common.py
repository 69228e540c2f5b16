"""Helpers shared by the importers and exporters: validation for a target, leftovers, values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from engine.schema import FIELD_BY_NAME, FIELDS, ConfigError, JobConfig, Problem, _num, coerce, spec
from engine.redact import redact
from engine.samples import SAMPLES_DIR, SAMPLES_PREFIX


class InteropError(ConfigError):
    """A file that cannot be imported, or a job that cannot be exported (one line per problem)."""


def fail(where: str, message: str, allowed: str = "") -> InteropError:
    return InteropError([Problem(where, message, allowed)])


def kind_of(v: Any) -> str:
    """What a foreign value is, in a config's words (for "expected a table, found a list")."""
    return {dict: "a table", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(v), type(v).__name__)


def table(parent: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """``parent[key]`` when it is a mapping; ``{}`` when it is missing or empty; else a one-line InteropError."""
    v = parent.get(key)
    if v is None or v == "" or v == [] or v == {}:
        return {}
    if not isinstance(v, dict):
        raise fail(f"{where}{key}", f"expected a table (key: value mapping), found {kind_of(v)}")
    return v


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, str):
        return f'"{redact(v)}"'
    return redact(str(v))


def effective_values(job: JobConfig) -> dict[str, Any]:
    """What the job means: explicit values plus every visible resolved value."""
    res = job.resolved()
    out = {}
    for f in FIELDS:
        if f.name in job.values or f.is_visible(res):
            out[f.name] = res[f.name]
    return out


def validate_for(job: JobConfig, target_profile: str | None = None) -> None:
    """Raise :class:`InteropError` when the job is invalid, or invalid under ``target_profile``."""
    probs = job.problems()
    if not probs and target_profile and target_profile != job.profile:
        probs = JobConfig(target_profile, effective_values(job)).problems()
        for p in probs:
            if "profile" not in p.message:
                p.message += f" (profile {target_profile})"
    if probs:
        raise InteropError(probs)


def leftovers(job: JobConfig, consumed: Iterable[str], baseline_profile: str, target: str) -> list[str]:
    """One warning per visible field the target cannot express whose value matters.

    A value "matters" when it differs from what the target would assume anyway: the
    schema/profile default of ``baseline_profile``.
    """
    res = job.resolved()
    used = set(consumed)
    out = []
    for f in FIELDS:
        if f.name in used or f.secret:
            continue
        if not f.is_visible(res) and f.name not in job.values:
            continue
        # an explicit value counts as set; otherwise the job's profile default (not a dynamic default
        # such as eval_steps = logging_steps, which follows another field)
        v = res[f.name] if f.name in job.values else spec(f.name, job.profile).default
        if v == spec(f.name, baseline_profile).default:
            continue
        out.append(f"{f.name} = {fmt(v) if not isinstance(v, list) else v}: {target} has no equivalent; not written")
    return out


def to_field(name: str, value: Any) -> Any:
    """Coerce an imported value to the field's type (YAML reads ``1e-5`` as text); keep it if impossible."""
    try:
        return coerce(name, value)
    except ValueError:
        return value


def sample_or_path(p: str | os.PathLike[str]) -> str:
    """A bundled sample's absolute path back to ``finetui:samples/<file>``; other paths unchanged."""
    s = str(p)
    try:
        rp = Path(s).resolve()
        if rp.parent == SAMPLES_DIR.resolve() and rp.exists():
            return SAMPLES_PREFIX + rp.name
    except OSError:
        pass
    return s


def real_path(p: str) -> str:
    """A data path as another tool must see it: samples resolved, relative paths made absolute."""
    if p.startswith(SAMPLES_PREFIX):
        from engine.samples import resolve_sample

        try:
            return str(resolve_sample(p))
        except FileNotFoundError:
            return str(SAMPLES_DIR / p[len(SAMPLES_PREFIX):])
    if "://" in p or not p:
        return p
    return str(Path(p).expanduser().resolve())


def set_value(job: JobConfig, name: str, value: Any) -> None:
    assert name in FIELD_BY_NAME, name
    job.values[name] = to_field(name, value)


class TrainingChange(str):
    """An import warning for something dropped that changes the training itself (an optimizer such as GaLore,
    a LoRA initialisation such as PiSSA, OFT, ...): the imported job trains differently.  A plain ``str`` for
    every reader; ``kind`` tells them apart (the CLI and the launch step show these first, unmissably)."""

    kind = "trains_differently"

    def __new__(cls, key: str, value: Any, what: str, instead: str = "") -> "TrainingChange":
        v = fmt(value) if not isinstance(value, (dict, list)) else str(value)
        return super().__new__(cls, f"{key} = {v}: THE JOB WILL TRAIN DIFFERENTLY — finetui has no {what}; "
                                    + (instead or "dropped, the imported job trains without it"))


def training_changes(warnings: Iterable[str]) -> list[str]:
    """The warnings that say the imported job trains differently."""
    return [w for w in warnings if getattr(w, "kind", None) == TrainingChange.kind]

"""A job: a profile name plus the values the user set explicitly, keyed by dotted name
(``runtime.learning_rate``).  ``resolved()`` fills every other field from the profile's
defaults, then the schema's.  Also each field's effective spec under a profile, coercion of
typed values and the per-value check."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

from engine.schema import profiles as P
from engine.schema.fields import FIELD_BY_NAME, FIELDS, GROUP_FIELDS, GROUPS, HOST_FORM, Field, Range, host_problem
from engine.schema.kinds import _fmt, _num
from engine.schema.problems import ConfigError, Problem, suggest
from engine.schema.rules import accumulation_for, cross_field_problems

# --------------------------------------------------------------------------
# Effective field specs under a profile
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A field as a profile presents it: effective range, choices and default."""

    field: Field
    range: Range | None
    choices: tuple[Any, ...] | None
    default: Any
    profile: str
    overridden: bool  # the profile changed range or choices

    def allowed(self) -> str:
        if self.choices is not None:
            return ", ".join(_fmt(c) for c in self.choices)
        return self.field.kind.allowed(self.field, self.range)


def spec(name: str, profile: str | None = None) -> Spec:
    f = FIELD_BY_NAME[name]
    prof = P.get(profile or "native")
    ov = prof.fields.get(name)
    if ov is None:
        return Spec(f, f.range, f.choices, f.default, prof.name, False)
    return Spec(f, ov.range(f.range), ov.choices_of(f.choices), prof.default(name), prof.name, ov.limits)


# --------------------------------------------------------------------------
# Coercion and per-field checks
# --------------------------------------------------------------------------


def coerce(name: str, value: Any) -> Any:
    """Parse a value (possibly a string typed in the TUI) to the field's type.

    Raises ``ValueError`` with a short reason when it cannot.
    """
    f = FIELD_BY_NAME[name]
    return f.kind.parse(f, value)


def check_value(name: str, value: Any, profile: str | None = None) -> Problem | None:
    """Type, range and choice check of one value under a profile."""
    sp = spec(name, profile)
    where = f" in profile {sp.profile}" if sp.profile != "native" else ""
    try:
        v = coerce(name, value)
    except ValueError as e:
        if sp.field.kind.has_choices and value is not None:
            return Problem(name, f"{_fmt(value)} is not offered{where}", sp.allowed())
        return Problem(name, str(e), sp.allowed())
    if v is None:
        return None
    if sp.choices is not None and v not in sp.choices:
        return Problem(name, f"{_fmt(v)} is not offered{where}", sp.allowed())
    if sp.range is not None and isinstance(v, (int, float)) and not sp.range.contains(v):
        return Problem(name, f"{_num(v)} is out of range{where}", sp.allowed())
    checks = [c for c in (sp.field.check, sp.field.kind.value_problem) if c]
    for c in checks:
        for item in (v if isinstance(v, list) else [v]):
            why = c(item)
            if why:
                return Problem(name, why, HOST_FORM if c is host_problem else "")
    return None


# --------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------


@dataclass
class JobConfig:
    """A profile plus the values the user set explicitly (dotted names)."""

    profile: str = "native"
    values: dict[str, Any] = dc_field(default_factory=dict)
    name: str | None = None  # free-text description, kept in presets
    secrets: dict[str, str] = dc_field(default_factory=dict)  # never written anywhere
    #: what an import says changes the training itself (interop.TrainingChange), kept with the job it made so the
    #: launch step can show it; not written to presets
    notes: list[str] = dc_field(default_factory=list)
    #: the preset's ``[sweep]`` table, normalised (engine.sweep); the job itself is the sweep's base
    sweep: dict[str, Any] | None = None

    # -- access ---------------------------------------------------------
    def resolved(self) -> dict[str, Any]:
        """Every field's value: explicit, else the profile's default, else the schema's."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            if f.name in self.values:
                try:
                    out[f.name] = coerce(f.name, self.values[f.name])
                except ValueError:
                    out[f.name] = self.values[f.name]
            else:
                out[f.name] = _copy(spec(f.name, self.profile).default)
        # per-model defaults of the profile (watsonx: llama vs granite, granite-13b by task type)
        for name, v in self.model_defaults(out).items():
            if name not in self.values:
                out[name] = _copy(v)
        # dynamic defaults
        if "runtime.quantization_bit" not in self.values and out["trainer.training_type"] == "qlora":
            out["runtime.quantization_bit"] = 4
        # a profile that evaluates by default (OCI: early stopping) does so when there is validation data; the
        # document states no hold-out, so without a validation file the run trains every epoch (a warning says so)
        if not out.get("data.validation_path") and not out.get("data.val_size") \
                and "eval.evaluation_strategy" not in self.values and out["eval.evaluation_strategy"] != "no":
            out["eval.evaluation_strategy"] = "no"
        gb = out.get("general.global_batch_size")
        if gb is not None and "runtime.gradient_accumulation_steps" not in self.values:
            out["runtime.gradient_accumulation_steps"] = accumulation_for(out) or out["runtime.gradient_accumulation_steps"]
        if out.get("eval.eval_steps") is None:
            ls = out.get("eval.logging_steps")  # (an invalid value stays as written: problems() names it)
            out["eval.eval_steps"] = max(1, ls) if isinstance(ls, int) and not isinstance(ls, bool) else 1
        return out

    def get(self, name: str) -> Any:
        return self.resolved()[name]

    def set(self, name: str, value: Any) -> None:
        if name not in FIELD_BY_NAME:
            raise KeyError(f"{name}: unknown field{suggest(name, FIELD_BY_NAME)}")
        self.values[name] = value

    def unset(self, name: str) -> None:
        self.values.pop(name, None)

    def copy(self) -> "JobConfig":
        return JobConfig(self.profile, {k: _copy(v) for k, v in self.values.items()}, self.name, dict(self.secrets),
                         list(self.notes), __import__("copy").deepcopy(self.sweep))

    def visible(self, name: str) -> bool:
        return FIELD_BY_NAME[name].is_visible(self.resolved())

    def model_defaults(self, res: dict[str, Any] | None = None) -> dict[str, Any]:
        """The profile's defaults for this job's base model (and task type), over its own; {} when none."""
        prof = P.PROFILES.get(self.profile)
        if prof is None or not prof.model_defaults:
            return {}
        res = res if res is not None else self.resolved()
        d = prof.defaults_for(str(res.get("model.name_or_path") or ""), res.get("trainer.task_type"))
        return dict(d.fields) if d else {}

    def redefaulted(self, before: dict[str, Any]) -> str | None:
        """After an edit (``before``: the resolved values before it): one sentence naming the untouched fields the
        new base model's (or task type's) defaults changed, or None."""
        res = self.resolved()
        prof = P.PROFILES.get(self.profile)
        if prof is None or not prof.model_defaults:
            return None
        changed = [n for n in FIELD_BY_NAME if n not in self.values and before.get(n) != res.get(n)
                   and (n in self.model_defaults(res) or n in self.model_defaults(before))]
        if not changed:
            return None
        d = prof.defaults_for(str(res.get("model.name_or_path") or ""), res.get("trainer.task_type"))
        who = f"{d.label}'s defaults" if d else f"profile {prof.name}'s defaults"
        parts = ", ".join(f"{n.rsplit('.', 1)[1]} {_fmt(res[n])}" for n in changed)
        return f"{who} ({prof.title}) applied to the fields you have not set: {parts}"

    def default(self, name: str) -> Any:
        """What an untouched field resolves to: the model's default in this profile, else the profile's."""
        md = self.model_defaults()
        return md[name] if name in md else spec(name, self.profile).default

    def evaluation_waits(self, res: dict[str, Any]) -> bool:
        """The profile evaluates by default (OCI: early stopping) but there is no validation data yet, so the
        resolved evaluation is off until there is."""
        return res["eval.evaluation_strategy"] == "no" and "eval.evaluation_strategy" not in self.values \
            and spec("eval.evaluation_strategy", self.profile).default != "no"

    # -- validation -----------------------------------------------------
    def problems(self, include_warnings: bool = False) -> list[Problem]:
        probs: list[Problem] = []
        if self.profile not in P.PROFILES:
            return [Problem("profile", f"unknown profile {self.profile!r}{suggest(self.profile, P.PROFILES)}",
                            ", ".join(P.PROFILES))]
        for name in list(self.values):
            if name not in FIELD_BY_NAME:
                probs.append(Problem(name, f"unknown field{suggest(name, FIELD_BY_NAME)}"))
        res = self.resolved()
        for f in FIELDS:
            if not f.is_visible(res) and f.name not in self.values:
                continue
            p = check_value(f.name, res[f.name], self.profile)
            if p:
                probs.append(p)
        if not any(p.severity == "error" for p in probs):
            probs.extend(cross_field_problems(self, res))
        if not include_warnings:
            probs = [p for p in probs if p.severity == "error"]
        return probs

    def warnings(self) -> list[Problem]:
        return [p for p in self.problems(include_warnings=True) if p.severity == "warning"]

    def validate(self) -> dict[str, Any]:
        probs = self.problems()
        if probs:
            raise ConfigError(probs)
        return self.resolved()

    def config_hash(self) -> str:
        import hashlib
        import json

        blob = json.dumps({"profile": self.profile, **self.resolved()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def nested(self, resolved: bool = False) -> dict[str, Any]:
        """The job as nested TOML-ready tables (``None`` values omitted)."""
        vals = self.resolved() if resolved else self.values
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["profile"] = self.profile
        for g, _ in GROUPS:
            tbl = {}
            for f in GROUP_FIELDS.get(g, []):
                if f.name in vals and vals[f.name] is not None:
                    if resolved and f.name not in self.values and not f.is_visible(vals):
                        continue  # the default of a field that does not apply: the dump must load as a preset
                    if resolved and f.name == "eval.evaluation_strategy" and self.evaluation_waits(vals):
                        continue  # the profile's evaluation, off until there is validation data: kept so on load
                    tbl[f.key] = vals[f.name]
            if tbl:
                out[g] = tbl
        return out


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v

"""The parameter reference (``docs/parameters.md``), rendered from the schema and the profiles.

Nothing here is written by hand: every range, default, help text, visibility rule
and provider alias comes from :data:`engine.schema.FIELDS` and
:data:`engine.schema.PROFILES` — the same ``Field.help`` the TUI shows next to
each input.  ``scripts/gen_docs.py`` writes the file; a test fails when the
committed page is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.schema import FIELDS, GROUP_FIELDS, GROUPS, Field, Spec, _num, spec
from engine.schema.names import NAMES, key_of
from engine.schema.profiles import PROFILES, Profile

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"

_KIND = {"int": "integer", "float": "number", "bool": "boolean", "enum": "choice", "str": "text",
         "list": "list of text", "path": "path"}


def _val(v: Any) -> str:
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, list):
        return "[" + ", ".join(f'"{x}"' for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"' if v else '""'
    return str(v)


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _allowed(sp: Spec) -> str:
    f = sp.field
    if sp.choices is not None:
        return ", ".join(_val(c) for c in sp.choices)
    if f.kind in ("int", "float"):
        r = sp.range.interval() if sp.range else "any"
        return r + (" or unset" if f.optional else "")
    if f.kind == "bool":
        return "true, false"
    if f.kind == "list":
        return "list of text"
    return "text" + (" or unset" if f.optional else "")


def _code_name(n: str) -> str:
    """``key (note)`` → ```key` (note)``."""
    k = key_of(n)
    return f"`{k}`{n[len(k):]}" if n.startswith(k) else n


def _profile_rows(f: Field) -> list[tuple[str, str, str]]:
    """(profiles, allowed, default): native first, then each profile that differs from it."""
    base = spec(f.name, "native")
    rows = [("native", _allowed(base), _val(base.default))]
    diff: dict[tuple[str, str], list[str]] = {}
    for name in PROFILES:
        if name == "native":
            continue
        sp = spec(f.name, name)
        a, d = _allowed(sp), _val(sp.default)
        if (a, d) != (rows[0][1], rows[0][2]):
            diff.setdefault((a, d), []).append(name)
    for (a, d), names in diff.items():
        rows.append((", ".join(names), a, d))
    return rows


def _profile_section(p: Profile) -> list[str]:
    out = [f"### `{p.name}` — {p.title}", "", p.description, ""]
    out.append(f"- source document: {p.source}")
    out.append(f"- trainers: {', '.join(p.stages)}")
    out.append(f"- tuning methods: {', '.join(p.methods)}")
    fmts = "; ".join(f"{s} → {', '.join(v)}" for s, v in p.formats_by_stage.items() if s in p.stages)
    out.append(f"- data formats by trainer: {fmts}")
    if p.lr_by_method:
        out.append("- learning rate by method: " + "; ".join(f"{m} {r.interval()}" for m, r in p.lr_by_method.items()))
    if p.max_steps_epochs_exclusive:
        out.append("- set max_steps or epochs, not both")
    if p.replicas_by_model:
        out.append("- nodes (replicas) by model: " + "; ".join(
            f"{m} {', '.join(map(str, c))}" for m, c in p.replicas_by_model.items()))
    for d in p.model_defaults:
        vals = ", ".join(f"`{n}` {_val(v)}" for n, v in d.fields.items())
        task = f", task type {d.task_type}" if d.task_type else ""
        out.append(f"- defaults for {d.label} (model id containing {' or '.join(map(repr, d.match))}{task}): {vals}")
    if p.models:
        own = "other models allowed, with a warning" if p.allow_own_models else "no other model"
        out.append(f"- model catalog ({own}): " + ", ".join(f"`{m}`" for m in p.models))
    out.append(f"- preset: `presets/{p.name}.toml`")
    out.append("")
    return out


def _field_section(f: Field) -> list[str]:
    out = [f"### `{f.name}` — {f.label}", ""]
    out.append(_cell(f.help))
    out.append("")
    facts = [f"type: {_KIND.get(f.kind, f.kind)}"]
    if f.visible_text:
        facts.append(f"shown when: {f.visible_text}")
    if f.aliases:
        facts.append("provider names: " + ", ".join(f"`{a}`" for a in f.aliases))
    other = NAMES.get(f.name)
    if other:
        facts.append("in other tools: " + "; ".join(f"{tool} {_code_name(n)}" for tool, n in other.items()))
    if f.secret:
        facts.append("secret: never written to a preset")
    out.extend(f"- {x}" for x in facts)
    out.append("")
    out.append("| profiles | allowed | default |")
    out.append("|---|---|---|")
    for who, allowed, default in _profile_rows(f):
        out.append(f"| {_cell(who)} | {_cell(allowed)} | {_cell(default)} |")
    out.append("")
    return out


def render() -> str:
    """The whole page as Markdown (deterministic)."""
    out = [
        "# finetui parameters",
        "",
        "<!-- Generated by scripts/gen_docs.py from engine/schema/. "
        "Do not edit by hand. -->",
        "",
        "Every parameter of a finetui job, by group. A preset writes a parameter in its group's table "
        "(`[general]` `learning_rate = 1e-4`); the CLI and the validation messages use the dotted name "
        "(`general.learning_rate`). Each parameter's table gives the native range and default, then "
        "every profile that narrows the range, restricts the choices or changes the default; profiles "
        "not listed behave as native. Intervals: `[` `]` include the bound, `(` `)` exclude it. "
        "\"In other tools\" gives the name `finetui import` reads and `finetui export` writes "
        "(LLaMA-Factory YAML, Nova recipe, FPT AI Studio / OCI / watsonx hyperparameter JSON); a field "
        "without a name there is reported in a warning on export.",
        "",
        "## Profiles",
        "",
    ]
    for p in PROFILES.values():
        out.extend(_profile_section(p))
    out.append("## Parameters")
    out.append("")
    for g, title in GROUPS:
        fields = GROUP_FIELDS.get(g, [])
        if not fields:
            continue
        out.append(f"## [{g}] — {title}")
        out.append("")
        out.append("| parameter | type | native default |")
        out.append("|---|---|---|")
        for f in fields:
            out.append(f"| [`{f.name}`](#{_anchor(f)}) | {_KIND.get(f.kind, f.kind)} | "
                       f"{_cell(_val(spec(f.name, 'native').default))} |")
        out.append("")
        for f in fields:
            out.extend(_field_section(f))
    assert len([f for f in FIELDS]) == sum(len(v) for v in GROUP_FIELDS.values())
    return "\n".join(out).rstrip("\n") + "\n"


def _anchor(f: Field) -> str:
    """GitHub's heading anchor for ``### `group.key` — Label``."""
    text = f"{f.name} — {f.label}".lower()
    keep = "".join(c for c in text if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def write(path: Path | None = None) -> Path:
    p = Path(path) if path else DOC_PATH
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(), encoding="utf-8")
    return p


def is_stale(path: Path | None = None) -> bool:
    p = Path(path) if path else DOC_PATH
    return not p.is_file() or p.read_text(encoding="utf-8") != render()

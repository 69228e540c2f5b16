"""The layers' import contracts (docs/architecture.md), checked on every module rather than hoped for.

- every ``tui`` module imports without torch, transformers, deepspeed, trl, peft or ``engine.train``
  (the interface starts in well under a second; the training stack loads only in the worker);
- nothing in ``engine`` imports ``tui`` or ``textual`` (the engine has no UI), at any level;
- the schema (the package ``engine/schema/``, and the two leaf helpers it uses: the data-path syntax,
  ``engine/datapaths.py``, and credential redaction, ``engine/redact.py``) imports nothing else of engine but the
  error type (``engine/errors.py``), at any level: every other part renders from it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HEAVY = ("torch", "transformers", "deepspeed", "trl", "peft", "engine.train")
# (engine.errors: the one user-facing error type, which the schema's errors subclass; it imports nothing of engine)
SCHEMA_PACKAGES = ("engine.schema",)
SCHEMA_LEAVES = {"engine.datapaths", "engine.redact", "engine.errors"}

def modules(package: str) -> list[str]:
    base = ROOT / package
    out = []
    for p in sorted(base.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def imported(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module a file imports (top level, inside functions, relative imports resolved) with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]  # each may be a module
    return out


def test_no_tui_module_loads_the_training_stack():
    mods = modules("tui")
    assert len(mods) > 20 and "tui.app" in mods and "tui.screens.monitor" in mods
    code = ("import importlib, json, sys\n"
            f"heavy = {HEAVY!r}\n"
            "out = {}\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "    out[m] = [h for h in heavy if h in sys.modules]\n"
            "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = {m: bad for m, bad in json.loads(r.stdout).items() if bad}
    # the first module named is the one that pulled them in
    assert not loaded, f"importing {next(iter(loaded))} loads {loaded[next(iter(loaded))]}"


def test_engine_never_imports_the_interface():
    bad = [f"{m}:{line} imports {name}" for m in modules("engine")
           for line, name in imported(ROOT / _file(m), m)
           if name.split(".")[0] in ("tui", "textual")]
    assert not bad, "\n".join(bad)


def test_the_schema_imports_nothing_else_of_engine():
    schema = [m for p in SCHEMA_PACKAGES for m in modules(p.replace(".", "/"))]
    assert "engine.schema.fields" in schema and "engine.schema.rules" in schema
    allowed = set(SCHEMA_PACKAGES) | SCHEMA_LEAVES
    bad = [f"{m}:{line} imports {name}" for m in sorted(set(schema) | SCHEMA_LEAVES)
           for line, name in imported(ROOT / _file(m), m)
           if name.split(".")[0] == "engine" and name != "engine"
           and not any(name == s or name.startswith(s + ".") for s in allowed)]
    assert not bad, "\n".join(bad)


def test_the_schema_has_no_import_cycle():
    """Its modules import each other one way (kinds → fields → problems → profiles → rules → job), at any level
    (imports for type annotations only, under ``if TYPE_CHECKING:``, aside)."""
    schema = [m for p in SCHEMA_PACKAGES for m in modules(p.replace(".", "/"))]
    graph = {}
    for m in schema:
        if m in SCHEMA_PACKAGES:
            continue
        tree = ast.parse((ROOT / _file(m)).read_text(encoding="utf-8"))
        typing_only = {n for node in ast.walk(tree) if isinstance(node, ast.If)
                       and getattr(node.test, "id", None) == "TYPE_CHECKING"
                       for n in range(node.lineno, node.end_lineno + 1)}
        graph[m] = {n for line, n in imported(ROOT / _file(m), m)
                    if n in schema and n != m and n not in SCHEMA_PACKAGES and line not in typing_only}

    def cycle_from(m: str, path: list[str]) -> list[str] | None:
        for n in sorted(graph.get(m, ())):
            if n in path:
                return path[path.index(n):] + [n]
            found = cycle_from(n, path + [n])
            if found:
                return found
        return None

    cycles = [c for m in graph if (c := cycle_from(m, [m]))]
    assert not cycles, " → ".join(cycles[0])


def test_the_scan_sees_imports_at_every_level(tmp_path):
    """The AST scan is not fooled by lazy, relative or from-imports (what the contracts above rely on)."""
    f = tmp_path / "x.py"
    f.write_text("import os\nfrom . import profiles\ndef f():\n    from ..data import load\n"
                 "    import engine.train.worker\n")
    assert {n for _, n in imported(f, "engine.sub.x")} == {
        "os", "engine.sub", "engine.sub.profiles", "engine.data", "engine.data.load", "engine.train.worker"}


def _file(module: str) -> Path:
    p = Path(*module.split("."))
    return p / "__init__.py" if (ROOT / p).is_dir() else p.with_suffix(".py")


#: tui's overrides of private Textual methods (each has a comment naming the upstream behaviour it works
#: around; pyproject pins textual below 9).  A new one is listed here; one whose upstream name went away fails.
PRIVATE_TEXTUAL_OVERRIDES = {
    "tui.app.FinetuiApp._on_resize", "tui.app.FinetuiApp._handle_exception", "tui.app.WizardScreen._on_screen_resume",
    "tui.app.WizardScreen._compositor_refresh", "tui.app.WizardScreen._on_resize",
    "tui.screens.base.QuietScreen._compositor_refresh", "tui.screens.base.QuietScreen._extend_compose",
    "tui.widgets.lazyselect._LazySelect._setup_options_renderables", "tui.widgets.lazyselect._LazySelect._watch_value",
    "tui.widgets.lazyselect._LazySelect._watch_prompt", "tui.widgets.lazyselect._LazySelect._watch_expanded",
}


def test_private_textual_overrides_are_listed_and_exist_upstream():
    import importlib
    import inspect

    found = set()
    for m in modules("tui"):
        mod = importlib.import_module(m)
        for cls in vars(mod).values():
            if not inspect.isclass(cls) or cls.__module__ != m:
                continue
            for attr, fn in vars(cls).items():
                if not (attr.startswith("_") and not attr.startswith("__") and inspect.isfunction(fn)):
                    continue
                upstream = [b for b in cls.__mro__[1:] if b.__module__.startswith("textual") and attr in vars(b)]
                if upstream:
                    found.add(f"{m}.{cls.__name__}.{attr}")
                    first = inspect.getsource(fn).splitlines()[1].strip()  # the line under the def
                    assert first.startswith("# ") and f"{upstream[0].__name__}.{attr}" in first, \
                        f"{m}.{cls.__name__}.{attr}: no comment naming the upstream method it works around"
    assert found == PRIVATE_TEXTUAL_OVERRIDES

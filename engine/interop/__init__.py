"""Import and export of jobs in other tools' formats (no torch, no textual).

Formats: ``llamafactory`` (LLaMA-Factory training YAML), ``nova`` (Amazon Nova HyperPod
recipe), ``fpt_studio`` (FPT AI Studio hyperparameter JSON), ``oci`` (OCI Generative AI
hyperparameters JSON), ``watsonx`` (watsonx.ai tuning parameters JSON).

* :func:`export_job` — ``(text, warnings)``; the job is validated first (against the target's
  profile where it has one) and an :class:`InteropError` lists every problem.  Every field the
  target cannot express, and whose value matters, is named in one warning line.
* :func:`export_files` — the same, plus the side files written beside the output
  (LLaMA-Factory: ``dataset_info.json`` and the generated DeepSpeed ZeRO config).
* :func:`import_file` — ``(JobConfig, warnings)``, detecting the format from the content.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from engine import userfiles
from engine.schema import JobConfig
from engine.errors import FinetuiError, crash_log
from engine.interop import jsonparams, llamafactory, nova
from engine.interop.common import InteropError, TrainingChange, fail, training_changes

EXPORT_FORMATS = ("llamafactory", "nova", "fpt_studio", "oci", "watsonx")
IMPORT_FORMATS = EXPORT_FORMATS
FORMAT_ALIASES = {"llama-factory": "llamafactory", "llama_factory": "llamafactory", "lf": "llamafactory",
                  "fpt": "fpt_studio", "fpt-studio": "fpt_studio", "ibm": "watsonx"}
SUFFIX = {"llamafactory": ".yaml", "nova": ".yaml", "fpt_studio": ".json", "oci": ".json", "watsonx": ".json"}

__all__ = ["export_job", "export_files", "import_file", "import_text", "detect_format", "file_kind", "InteropError",
           "EXPORT_FORMATS", "IMPORT_FORMATS", "TrainingChange", "training_changes"]


def _norm(fmt: str) -> str:
    f = FORMAT_ALIASES.get(fmt.lower().strip(), fmt.lower().strip())
    if f not in EXPORT_FORMATS:
        raise fail("format", f"unknown format {fmt!r}", ", ".join(EXPORT_FORMATS))
    return f


def export_files(job: JobConfig, to: str, path: str | os.PathLike[str] | None = None
                 ) -> tuple[str, dict[str, str], list[str]]:
    """(main text, {side file name: text}, warnings); side files belong beside ``path``."""
    to = _norm(to)
    p = Path(path) if path is not None else None
    if to == "llamafactory":
        return llamafactory.export(job, p)
    if to == "nova":
        text, w = nova.export(job)
        return text, {}, w
    text, w = jsonparams.EXPORTERS[to](job)
    return text, {}, w


def export_job(job: JobConfig, to: str, path: str | os.PathLike[str] | None = None) -> tuple[str, list[str]]:
    text, _side, warnings = export_files(job, to, path)
    return text, warnings


def write_export(job: JobConfig, to: str, out: str | os.PathLike[str]) -> tuple[list[Path], list[str]]:
    """Export into ``out`` and its side files beside it (atomically each); returns the paths written.

    A user's file beside ``out`` is never lost: an existing ``dataset_info.json`` gets the new entries merged in
    (its own kept; a same-name entry that differs refuses the export), any other side file that exists with
    other content refuses it.  Everything is checked before anything is written."""
    from engine.safeio import atomic_write

    out = Path(out)
    text, side, warnings = export_files(job, to, out)
    plan: list[tuple[Path, str]] = [(out, text)]
    for name, content in side.items():
        target = out.parent / name
        merged = _beside(target, content)
        if merged is not None:
            plan.append((target, merged))
    out.parent.mkdir(parents=True, exist_ok=True)
    for target, content in plan:
        atomic_write(target, content)
    return [t for t, _ in plan], warnings


def _beside(target: Path, content: str) -> str | None:
    """What to write into a side file that may already exist (None: it already says this)."""
    try:
        old = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return content
    except (OSError, UnicodeDecodeError) as e:
        raise fail(str(target), f"exists and cannot be read ({e.__class__.__name__}); not overwritten") from None
    if old == content:
        return None
    if target.name != "dataset_info.json":
        raise fail(str(target), "exists with other content; not overwritten (export to another folder, or move it)")
    try:
        have = json.loads(old)
    except (ValueError, RecursionError):
        have = None
    if not isinstance(have, dict):
        raise fail(str(target), "exists but is not a JSON object of datasets; not overwritten (fix or move it)")
    new = json.loads(content)
    for name, entry in new.items():
        if name in have and have[name] != entry:
            raise fail(str(target), f"already has a dataset `{name}` with other settings; not overwritten (rename or "
                                    f"remove that entry, or export to another folder)")
    if all(name in have for name in new):
        return None
    return json.dumps({**have, **new}, indent=2, ensure_ascii=False) + "\n"


#: how deeply an imported config may nest (the deepest real one, a Nova recipe, has 5 levels)
MAX_DEPTH = 32


def _parse(text: str, source: str) -> Any:
    if userfiles.text_depth(text, MAX_DEPTH) > MAX_DEPTH:
        raise fail(source, f"nested more than {MAX_DEPTH} levels deep; not a training config")
    s = text.lstrip()
    with userfiles.parsing(source, fail):
        if s.startswith("{") or s.startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise fail(source, f"not valid JSON: line {e.lineno}: {e.msg}") from None
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise fail(source, f"not valid YAML: {str(e).splitlines()[0]}") from None
    if userfiles.max_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise fail(source, f"nested more than {MAX_DEPTH} levels deep; not a training config")
    return data


#: the refusal of a file whose format is not recognised with confidence (one line)
READS = ("LLaMA-Factory YAML (classic or v1: model:, train_dataset:), Nova recipes (run:, training_config:), "
         "FPT AI Studio / OCI / watsonx hyperparameter JSON")


def detect_format(data: Any) -> str | None:
    """The one place that decides what a foreign file is: a format only when its content says so with confidence
    (its own structure, or keys most of which are that format's); None otherwise, and the file is refused."""
    if nova.looks_like(data):
        return "nova"
    if llamafactory.looks_like(data) or llamafactory.looks_like_v1(data):
        return "llamafactory"
    return jsonparams.detect(data)


def import_text(text: str, fmt: str | None = None, base_dir: str | os.PathLike[str] = ".",
                source: str = "<text>") -> tuple[JobConfig, list[str]]:
    data = _parse(text, source)
    if isinstance(data, dict) and isinstance(data.get("hyperparameters"), dict) and fmt != "llamafactory":
        data = data["hyperparameters"]  # a wrapper object around the service's hyperparameters
    f = _norm(fmt) if fmt else detect_format(data)
    if f is None:
        raise fail(source, f"not a format finetui reads with confidence — it reads {READS}; name one with --format",
                   ", ".join(IMPORT_FORMATS))
    if not isinstance(data, dict):
        raise fail(source, f"not a {f} file (expected a mapping)")
    try:
        if f == "llamafactory":
            if llamafactory.looks_like_v1(data):
                return _training_changes_first(llamafactory.import_v1(data, Path(base_dir).resolve(), source))
            return _training_changes_first(llamafactory.import_data(data, Path(base_dir).resolve(), source))
        if f == "nova":
            if not nova.looks_like(data):
                raise fail(source, "not a Nova recipe (expected run: and training_config:)")
            return nova.import_data(data, source)
        return jsonparams.IMPORTERS[f](data)
    except FinetuiError:
        raise
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError) as e:
        # the importers read a foreign file's values; one of a type they do not expect (a list for a name,
        # a table for a number, nan for a count) ends here in one line naming the file; the traceback goes
        # to a crash log in case it is a bug of the importer's instead
        log = crash_log(e, context=f"import {source} as {f}")
        raise fail(source, f"cannot import it as {f}: a value of an unexpected type or size "
                           f"({type(e).__name__}: {str(e)[:160]}; details in {log})") from None


def _training_changes_first(result: tuple[JobConfig, list[str]]) -> tuple[JobConfig, list[str]]:
    job, warnings = result
    job.notes = training_changes(warnings)  # the launch step shows them
    return job, sorted(warnings, key=lambda w: getattr(w, "kind", None) != TrainingChange.kind)


def import_file(path: str | os.PathLike[str], fmt: str | None = None) -> tuple[JobConfig, list[str]]:
    p = Path(path)
    text = userfiles.read_text(p, str(p), fail)
    return import_text(text, fmt, p.resolve().parent, str(p))


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """What a job file is, without importing it: ``"toml"`` for a finetui preset, one of
    :data:`IMPORT_FORMATS`, or None when it is none of them (an unreadable file raises InteropError)."""
    import tomllib

    p = Path(path)
    text = userfiles.read_text(p, str(p), fail)
    if p.suffix.lower() == ".toml":
        return "toml"
    try:
        with userfiles.parsing(str(p), fail):
            tomllib.loads(text)
        return "toml"
    except (tomllib.TOMLDecodeError, InteropError):  # not TOML (or TOML nested too deeply: not a preset either)
        pass
    try:
        data = _parse(text, str(p))
    except InteropError:
        return None
    if isinstance(data, dict) and isinstance(data.get("hyperparameters"), dict):
        data = data["hyperparameters"]
    return detect_format(data)

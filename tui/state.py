"""User state: the autosaved job and the recently used presets.

Lives in ``$FINETUI_STATE_DIR`` (default ``~/.local/state/finetui``):

- ``autosave.toml`` — the job being edited, written (debounced) by the app after
  every change and removed on a clean exit or an explicit save; present at start
  means the last session ended without saving (crash, closed terminal).
- ``recent.json`` — the last presets opened or saved, newest first.

Secrets are never written here: ``presets.dumps`` drops them and ``JobConfig.secrets``
is memory-only.  No textual import: the CLI may use this module too.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.schema import JobConfig
from engine.safeio import atomic_write

AUTOSAVE = "autosave.toml"
RECENT = "recent.json"
MAX_RECENT = 10


def state_dir() -> Path:
    env = os.environ.get("FINETUI_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "finetui"


def runs_dir(job: JobConfig | None = None) -> str:
    """Where the TUI lists and launches runs: $FINETUI_RUNS_DIR when set (it overrides the job's, as for
    ``finetui train`` and ``finetui runs``), else the job's ``launch.runs_dir``, else ``runs``."""
    env = os.environ.get("FINETUI_RUNS_DIR")
    if env:
        return env
    return str((job.resolved().get("launch.runs_dir") if job is not None else None) or "runs")


def autosave_path() -> Path:
    return state_dir() / AUTOSAVE


def write_autosave(job: JobConfig, preset_path: str | os.PathLike[str] | None = None) -> Path | None:
    """Write the job atomically; the preset it came from is kept in a comment line."""
    import json

    from engine import presets

    p = autosave_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        header = f"# finetui autosave; preset = {json.dumps(str(preset_path) if preset_path else '')}\n"
        atomic_write(p, header + presets.dumps(job))
        return p
    except OSError:
        return None


def read_autosave() -> tuple[JobConfig, str | None] | None:
    """The autosaved job and its preset path, or None when absent or unreadable."""
    import json

    from engine import presets

    p = autosave_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError:
        return None
    preset = None
    first = text.splitlines()[0] if text else ""
    if first.startswith("# finetui autosave; preset = "):
        try:
            preset = json.loads(first.split("= ", 1)[1]) or None
        except (ValueError, IndexError):
            preset = None
    try:
        job = presets.loads(text, str(p))
    except Exception:
        return None
    return job, preset


def clear_autosave() -> None:
    try:
        autosave_path().unlink()
    except OSError:
        pass


def recent_presets() -> list[Path]:
    import json  # here, not at start-up

    try:
        items = json.loads((state_dir() / RECENT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out = []
    for s in items if isinstance(items, list) else []:
        if isinstance(s, str) and Path(s).is_file():
            out.append(Path(s))
    return out


def add_recent(path: str | os.PathLike[str]) -> None:
    import json

    p = str(Path(path).expanduser().resolve())
    items = [str(x) for x in recent_presets() if str(x) != p]
    items.insert(0, p)
    d = state_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / RECENT, json.dumps(items[:MAX_RECENT], indent=1))
    except OSError:
        pass

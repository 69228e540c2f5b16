"""The user's own keys: the ``[keys]`` table of finetui's user config file, and copy actions.

The file is ``$FINETUI_CONFIG_DIR/config.toml`` (default ``$XDG_CONFIG_HOME/finetui/config.toml``,
i.e. ``~/.config/finetui/config.toml``)::

    [keys]
    launch = "f5"             # action = key (several: "f5,ctrl+l")
    runs = "ctrl+r"
    copy_job = "ctrl+y"       # the copy actions have no key until given one (the palette has them)
    vim = true                # j / k: next / previous field (or row), h / l: previous / next step

Each action is the name of a key binding (:data:`ACTIONS`); a binding's first key is the one a
``[keys]`` entry replaces (its other keys, e.g. Esc beside q, keep working).  The keys are applied through
Textual's keymap, so the key bar and the help (F1) show them.  A wrong entry is one line naming the file
and the entry, shown when the app starts; the rest of the file still applies.

The copy actions put text on the clipboard through OSC 52 (Textual's ``App.copy_to_clipboard``): the
terminal sets its clipboard, locally and over SSH alike (tmux needs ``set -g set-clipboard on``).
No torch, no engine imports beyond the schema's helpers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

CONFIG_FILE = "config.toml"

#: every action a [keys] entry may name → what it does (the screens' bindings, and the copy actions)
ACTIONS: dict[str, str] = {
    # the wizard (app-wide)
    "help": "help for the focused field, or the screen's keys",
    "quit_or_back": "quit, or leave a screen (outside text fields)",
    "back": "the previous step",
    "next_step": "the next step",
    "prev_step": "the previous step",
    "save_preset": "save the job as TOML",
    "open_preset": "open a preset or import a config",
    "launch": "review and launch",
    "runs": "the runs screen",
    "show_toml": "the job as TOML",
    "quit": "quit",
    "copy_job": "copy the job as TOML to the clipboard",
    "copy_command": "copy the command that launches the job",
    "launch_sweep": "start the job's [sweep]",
    # the runs screen
    "attach": "a run's dashboard",
    "stop": "stop the run (or sweep)",
    "delete": "delete a run",
    "resume": "resume a run from its last checkpoint",
    "open_config": "a run's config as a new job",
    "mark": "mark a run (two: overlay)",
    "overlay": "overlay two runs' loss",
    "sweep": "the sweep's table",
    "refresh": "list the runs again",
    "copy_path": "copy the run's directory path",
    # a run's dashboard
    "detach": "leave the dashboard (the run goes on)",
    "search": "search the log",
    "toggle_log": "wide log",
    "try_model": "try the finished model",
}
#: app actions that have no key by default: a [keys] entry binds them
UNBOUND = ("copy_job", "copy_command", "launch_sweep")
_KEY = re.compile(r"^[a-z0-9_+\-]+$")


@dataclass
class UserKeys:
    keymap: dict[str, str] = field(default_factory=dict)  # action → keys ("f5" or "f5,ctrl+l")
    vim: bool = False
    problems: list[str] = field(default_factory=list)  # one line each, naming the file and the entry
    path: Path | None = None


def config_dir() -> Path:
    env = os.environ.get("FINETUI_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "finetui"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


def load(path: str | os.PathLike[str] | None = None) -> UserKeys:
    """The ``[keys]`` table of the user config file (none: no keys of one's own, no problem)."""
    import tomllib

    from engine.schema import suggest

    p = Path(path) if path is not None else config_path()
    out = UserKeys(path=p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except (OSError, UnicodeDecodeError) as e:
        out.problems.append(f"{p}: cannot read it ({e.__class__.__name__}); the default keys apply")
        return out
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        out.problems.append(f"{p}: not valid TOML ({e}); the default keys apply")
        return out
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        out.problems.append(f"{p}: keys must be a table ([keys])")
        return out
    used: dict[str, str] = {}
    for action, value in keys.items():
        where = f"{p}: keys.{action}"
        if action == "vim":
            if not isinstance(value, bool):
                out.problems.append(f"{where}: must be true or false")
            else:
                out.vim = value
            continue
        if action not in ACTIONS:
            out.problems.append(f"{where}: unknown action{suggest(action, ACTIONS)} (the actions are listed in "
                                f"the README's Keys section)")
            continue
        if not isinstance(value, str) or not value.strip():
            out.problems.append(f"{where}: must be a key name in quotes, e.g. \"f5\" or \"ctrl+y\"")
            continue
        names = [k.strip().lower() for k in value.split(",") if k.strip()]
        bad = [k for k in names if not _KEY.match(k)]
        if bad or not names:
            out.problems.append(f"{where}: {bad[0] if bad else value!r} is not a key name (e.g. \"f5\", \"ctrl+y\", "
                                f"\"j\", \"question_mark\")")
            continue
        clash = [k for k in names if k in used and used[k] != action]
        if clash:
            out.problems.append(f"{where}: {clash[0]} is already given to {used[clash[0]]}")
            continue
        for k in names:
            used[k] = action
        out.keymap[action] = ",".join(names)
    return out


def with_ids(bindings: Iterable[Any]) -> list[Any]:
    """``bindings`` with each action's first binding given its action as id (what a keymap entry names);
    other bindings of the same action (alternates, e.g. Esc beside q) keep theirs and stay."""
    from textual.binding import Binding

    out, seen = [], set()
    for b in bindings:
        if isinstance(b, Binding) and b.id is None and b.action not in seen and b.action in ACTIONS:
            b = replace(b, id=b.action)
        if isinstance(b, Binding):
            seen.add(b.action)
        out.append(b)
    return out


def key_names(bindings: Iterable[Any], keymap: dict[str, str]) -> list[tuple[str, str, str]]:
    """(action, keys as bound now, description) for each binding: the keymap's keys where it names it."""
    out = []
    for b in bindings:
        keys = keymap.get(b.id, b.key) if getattr(b, "id", None) else b.key
        out.append((b.action, keys, b.description))
    return out


def describe(user: UserKeys) -> str:
    """The user's own keys, for the help screen ('' when there are none)."""
    if not user.keymap and not user.vim:
        return ""
    lines = [f"Your keys ({user.path}):"]
    lines += [f"  {k:<15} {a}: {ACTIONS.get(a, '')}" for a, k in user.keymap.items()]
    if user.vim:
        lines.append("  j / k           next / previous field or row; h / l: previous / next step")
    return "\n".join(lines)


# ------------------------------------------------------------------ what the copy actions copy

def launch_command(job: Any, preset_path: str | os.PathLike[str] | None, dirty: bool) -> str:
    """The shell command that launches the job: ``finetui train PRESET`` when the job is its saved preset; else
    the job written out by a here-document, then that command (works pasted in any POSIX shell)."""
    import shlex

    if preset_path is not None and not dirty:
        return f"finetui train {shlex.quote(str(preset_path))}"
    from engine import presets

    text = presets.dumps(job)
    name = "finetui-job.toml"
    return f"cat > {name} <<'FINETUI_JOB'\n{text}FINETUI_JOB\nfinetui train {name}"


def apply_user_keys(app: Any, path: str | os.PathLike[str] | None = None) -> UserKeys:
    """Load the user's keys and apply them to ``app``: Textual's keymap for the bound actions, new app
    bindings for the copy actions given a key, and j/k/h/l with ``vim = true``."""
    user = load(path)
    app.set_keymap({a: k for a, k in user.keymap.items() if a not in UNBOUND})
    for a in UNBOUND:
        if a in user.keymap:
            app.bind(user.keymap[a], a, description=ACTIONS[a].split(" to ")[0].capitalize(), show=False)
    if user.vim:
        for key, where in (("j", "down"), ("k", "up"), ("h", "left"), ("l", "right")):
            app.bind(key, f"vim_move('{where}')", description="", show=False)
    return user


def copy_path(screen: Any, path: str | os.PathLike[str]) -> None:
    """A run's directory (absolute) to the clipboard, said in a notification."""
    text = str(Path(path).resolve())
    screen.app.copy_to_clipboard(text)
    screen.notify(f"Copied {text}")

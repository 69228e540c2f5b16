"""Helpers shared by the CLI commands: loading presets, one-line errors, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from engine.schema import ConfigError, JobConfig


def err(msg: str) -> None:
    from engine.redact import redact

    typer.echo(redact(msg), err=True)


def fail(msg: str, code: int = 2) -> NoReturn:
    """One clear line on stderr, then exit (2 = bad input)."""
    err(msg)
    raise typer.Exit(code)


def load_job(path: Path | str) -> JobConfig:
    """Load a preset or exit 2 with one line per problem."""
    from engine import presets

    try:
        return presets.load(path)
    except ConfigError as e:
        for p in e.problems:
            err(str(p))
        raise typer.Exit(2)


def demo_preset_path() -> Path:
    from engine.presets import PRESETS_DIR

    return PRESETS_DIR / "demo.toml"


def exit_for_outcome(outcome: str) -> NoReturn:
    raise typer.Exit(0 if outcome == "completed" else 1)


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except Exception:
        return False

"""`finetui diff RUN_A RUN_B` — the configuration fields that differ between two runs, and each run's card
(final and best eval loss, tokens seen, wall time, GPU-hours and cost when launch.gpu_hour_price is set)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from tui.commands.launch import RUNS_DIR_OPT, _resolve
from tui.widgets.rundiff import diff_table


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff(run_a: str = typer.Argument(..., help="First run: a name, a unique prefix or a run directory."),
             run_b: str = typer.Argument(..., help="Second run."),
             runs_dir: Optional[Path] = RUNS_DIR_OPT,
             as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON.")) -> None:
        """The configuration fields that differ between two runs (their config.toml), and each run's final and
        best eval loss, tokens seen, wall time and GPU-hour cost."""
        from engine.compare import compare
        from tui.commands import common

        refs = [_resolve(r, runs_dir) for r in (run_a, run_b)]
        try:
            rep = compare(refs[0].run_dir, refs[1].run_dir)
        except ValueError as e:
            common.fail(str(e))
        if as_json:
            typer.echo(json.dumps(rep, default=str))
            return
        from rich.console import Console

        Console(highlight=False, soft_wrap=not sys.stdout.isatty()).print(diff_table(rep))

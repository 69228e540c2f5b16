"""The `finetui` command line (typer); :func:`tui.cli.main` is the entry point.

`finetui` with no command opens the TUI (``tui.cli`` opens it without importing typer
when the arguments are only ``--demo`` / ``--preset``).  Headless commands call the engine.
Exit codes: 0 success; 1 the run failed / was stopped; 2 bad input (one clear
line per problem, never a traceback); 130 interrupted.

Each area registers its commands from ``tui/commands/<area>.py`` (listed in
:func:`_register_areas`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tui.commands import common

app = typer.Typer(
    name="finetui",
    help="Fine-tune large language models from the terminal: validated jobs, TOML presets, "
    "detached local or SSH runs, a live dashboard.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    preset: Optional[Path] = typer.Option(None, "--preset", "-p", help="Open the TUI filled from this preset."),
    demo: bool = typer.Option(False, "--demo", help="Open the TUI on the built-in demo preset."),
    runs: bool = typer.Option(False, "--runs", help="Open the TUI on the runs screen "
                              "(runs in $FINETUI_RUNS_DIR, else the preset's launch.runs_dir, else runs/)."),
    attach: Optional[str] = typer.Option(None, "--attach", metavar="RUN",
                                         help="Open the TUI on a run's live dashboard (a run name, a unique "
                                         "prefix of one, or a run directory); Esc goes to the runs screen."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", metavar="DIR",
                                            help="Where the TUI lists and launches runs (as $FINETUI_RUNS_DIR: it "
                                            "overrides the preset's launch.runs_dir)."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from importlib.metadata import version as v

        typer.echo(f"finetui {v('finetui')}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is not None:
        return
    if runs_dir is not None:
        import os

        os.environ["FINETUI_RUNS_DIR"] = str(runs_dir.expanduser().resolve())
    job = None
    imported = None
    if demo and preset is None:
        preset = common.demo_preset_path()
    if preset is not None and preset.suffix.lower() != ".toml" and preset.is_file():
        from engine import interop  # another tool's config: imported (why not, in one line per problem)

        try:
            kind = interop.file_kind(preset)
            if kind not in ("toml", None):
                job, notes = interop.import_file(preset)
                imported = (preset.name, notes)
        except interop.InteropError as e:
            for prob in e.problems:
                common.err(str(prob))
            raise typer.Exit(2)
    if preset is not None and job is None:
        job = common.load_job(preset)
    ref = None
    if attach is not None:
        import engine.launch as L
        from tui import state

        try:
            ref = L.resolve_run(attach, state.runs_dir(job))
        except L.LaunchError as e:
            common.fail(f"--attach: {e}")
    from tui.app import FinetuiApp

    FinetuiApp(job=job, preset_path=None if imported else preset, start="runs" if runs else None, attach=ref,
               imported=imported).run()


@app.command()
def validate(file: Path = typer.Argument(..., help="A TOML preset.")) -> None:
    """Check a preset: exit 0 when valid, else exit 2 with one line per problem."""
    job = common.load_job(file)
    probs = job.problems(include_warnings=True)
    errors = [p for p in probs if p.severity == "error"]
    for p in probs:
        if p.severity == "warning":
            common.err(f"warning: {p}")
    trial_lines = []
    if job.sweep and not errors:  # a sweep's base is valid: each of its trials must be too
        from engine.sweep import trial_problems

        trial_lines = trial_problems(job)
    if errors or trial_lines:
        for p in errors:
            common.err(str(p))
        for line in trial_lines:
            common.err(line)
        raise typer.Exit(2)
    from engine.data.loader import check_data_before_launch

    for note in check_data_before_launch(job.resolved()):  # (the data files: exist and parse, file:line if not)
        common.err(f"note: {note}")
    if job.sweep:
        from engine.sweep import trials

        typer.echo(f"{file}: valid (profile {job.profile}; sweep of {len(trials(job))} trials)")
        return
    typer.echo(f"{file}: valid (profile {job.profile})")


@app.command()
def show(file: Path = typer.Argument(..., help="A TOML preset.")) -> None:
    """Print the resolved configuration (profile defaults applied) as TOML."""
    from engine import presets

    job = common.load_job(file)
    typer.echo(presets.dumps(job, resolved=True), nl=False)


def _register_areas() -> None:
    import importlib

    for mod in ("data", "launch", "estimate", "interop", "generate", "compare", "serving", "sweep", "cache"):
        importlib.import_module(f"tui.commands.{mod}").register(app)


_register_areas()

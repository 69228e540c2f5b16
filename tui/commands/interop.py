"""`finetui export` and `finetui import`: other tools' formats ↔ finetui presets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from engine.userfiles import os_reason
from tui.commands import common

FORMATS_HELP = "llamafactory, nova, fpt_studio, oci, watsonx"


def _refuse(problems) -> None:  # noqa: ANN001
    """Exit 2 with one line per problem."""
    for p in problems:
        common.err(str(p))
    raise typer.Exit(2)


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        common.err(f"warning: {w}")


def export_cmd(
    file: Path = typer.Argument(..., help="A TOML preset."),
    to: str = typer.Option(..., "--to", "-t", help=f"Target format: {FORMATS_HELP}."),
    out: Optional[Path] = typer.Option(None, "--output", "-o",
                                       help="Write here (side files such as dataset_info.json and the DeepSpeed "
                                            "config go beside it); default: print to stdout."),
) -> None:
    """Export a preset as a LLaMA-Factory YAML, a Nova recipe, or a provider's hyperparameter JSON.

    The job is validated against the target's profile first (exit 2, one line per problem);
    every field the target cannot express is named in a warning.
    """
    from engine import interop

    job = common.load_job(file)
    try:
        if out is None:
            text, side, warnings = interop.export_files(job, to)
            written: list[Path] = []
        else:
            written, warnings = interop.write_export(job, to, out)
            side = {}
    except interop.InteropError as e:
        _refuse(e.lines())
    except OSError as e:  # (the output: a folder, a device, not writable)
        common.fail(f"{out}: cannot write it ({os_reason(e)})")
    _warn(warnings)
    if out is None:
        typer.echo(text, nl=False)
        if side:
            common.err(f"warning: not written (give -o to write them beside the output): {', '.join(side)}")
    else:
        for p in written:
            common.err(f"wrote {p}")


def import_cmd(
    file: Path = typer.Argument(..., help="A LLaMA-Factory YAML, a Nova recipe, or FPT / OCI / watsonx "
                                          "hyperparameter JSON."),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the preset here (TOML); default: stdout."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=f"Input format ({FORMATS_HELP}); default: "
                                                                    "detected from the content."),
) -> None:
    """Import another tool's training config as a finetui preset.

    Values that finetui cannot represent are named in warnings. Exit 2 when the file cannot be
    read, or when the imported preset does not validate (it is still written, to be fixed).
    """
    from engine import interop, presets

    try:
        job, warnings = interop.import_file(file, fmt)
    except interop.InteropError as e:
        _refuse(e.lines())
    _warn(warnings)
    if out is None:
        typer.echo(presets.dumps(job), nl=False)
    else:
        try:
            presets.save(job, out)
        except OSError as e:  # (the output: a folder, a device, not writable)
            common.fail(f"{out}: cannot write it ({os_reason(e)})")
        common.err(f"wrote {out} (profile {job.profile})")
    probs = job.problems()
    if probs:
        for p in probs:
            common.err(str(p))
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)

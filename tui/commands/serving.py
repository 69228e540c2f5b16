"""``finetui export-model RUN --to hf|vllm|ollama [-o DIR]``: a finished run's model ready for a server.

stdout: the folder written, then the command that serves it (vLLM, Ollama); progress and notes on
stderr.  Exit 0 when the exported model generates what the run's model does (greedy), 1 when that
check fails or the export fails, 2 for bad input (an existing folder, a run without a model).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer

from tui.commands import common


def register(app: typer.Typer) -> None:
    from tui.commands.generate import finished_run
    from tui.commands.launch import RUNS_DIR_OPT

    @app.command("export-model")
    def export_model(
        run: str = typer.Argument(..., help="Run name or directory."),
        to: str = typer.Option(..., "--to", help="hf (one model folder), vllm (base + LoRA adapter, or the "
                                                 "merged model; the serve command) or ollama (merged model + "
                                                 "Modelfile; GGUF when llama.cpp's converter is installed)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: RUN/export-<to>); "
                                                                     "an existing one is refused."),
        check: bool = typer.Option(True, "--check/--no-check", help="Load the exported folder and compare its "
                                                                    "greedy first tokens with the run's model's."),
        runs_dir: Optional[Path] = RUNS_DIR_OPT,
    ) -> None:
        """Export a finished run's model for serving (vLLM, Ollama, or a plain Hugging Face folder)."""
        from engine.serving import TARGETS

        if to not in TARGETS:
            common.fail(f"--to: {to!r} is not offered (allowed: {', '.join(TARGETS)})")
        if out is not None and (out.exists() or out.is_symlink()):
            common.fail(f"{out} already exists; choose another folder with -o")
        ref = finished_run(run, runs_dir, "export-model")
        from engine.serving import export_model as export
        from engine.train.generate import GenerateError

        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries the folder and the command only
                exp = export(ref.run_dir, to, out, check=check, say=common.err)
        except GenerateError as e:
            common.fail(str(e), e.code)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            common.fail(f"export failed: {type(e).__name__}: {first}", 1)
        for n in exp.notes:
            common.err(f"note: {n}")
        typer.echo(str(exp.out))
        if exp.serve:
            typer.echo(exp.serve)
        if exp.check:
            c = exp.check
            if not c["same"]:
                common.fail(f"check failed: the exported model's first {len(c['run_tokens'])} greedy tokens "
                            f"{c['export_tokens']} differ from the run's model's {c['run_tokens']} "
                            f"(kept in {exp.out} to look at)", 1)
            common.err(f"checked: the exported model loads with from_pretrained and generates the run model's "
                       f"first {len(c['run_tokens'])} tokens (greedy)")

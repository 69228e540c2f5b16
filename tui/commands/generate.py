"""``finetui generate RUN [--prompt TEXT]``: try a finished run's model at once.

Loads the run's ``final/`` (the adapter onto the base model, or the full / merged
model) and prints the generated text.  torch is imported only inside the command.
Bad run name, a run without a final model → one line, exit 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from tui.commands import common


def finished_run(run: str, runs_dir: Optional[Path], command: str) -> Any:
    """The run, checked to hold a final model here (one line and exit 2 if not), with the libraries quiet."""
    from tui.commands.launch import _resolve

    ref = _resolve(run, runs_dir)
    if ref.is_remote:
        common.fail(f"run {ref.name} ran on {ref.host}: its model is there ({ref.run_dir.name}/final); "
                    f"copy it here or run `finetui {command}` on that host")
    from engine.train.generate import GenerateError, final_dir

    try:
        final_dir(ref.run_dir)  # fast checks before the heavy imports
    except GenerateError as e:
        common.fail(str(e), e.code)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return ref


def register(app: typer.Typer) -> None:
    from tui.commands.launch import RUNS_DIR_OPT

    _finished = finished_run

    @app.command()
    def generate(
        run: str = typer.Argument(..., help="Run name or directory."),
        prompt: Optional[str] = typer.Option(None, "--prompt", "-p",
                                             help="The prompt (a user message for chat-trained runs). Without "
                                                  "it, prompts are read one per line (typed, or piped in) and "
                                                  "answered by the model loaded once."),
        max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Tokens to generate at most."),
        min_new_tokens: int = typer.Option(0, "--min-new-tokens", min=0,
                                           help="Generate at least this many tokens before the end token."),
        temperature: float = typer.Option(0.0, "--temperature", min=0.0,
                                          help="Sampling temperature; 0 = greedy (the default)."),
        top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling (with --temperature)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
        runs_dir: Optional[Path] = RUNS_DIR_OPT,
    ) -> None:
        """Load a finished run's model (adapter or merged) and generate from a prompt."""
        if device not in (None, "cpu", "cuda"):
            common.fail(f"--device: {device!r} is not offered (allowed: cpu, cuda)")
        ref = _finished(run, runs_dir, "generate")
        from engine.train.generate import GenerateError, complete, load

        opts = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, temperature=temperature,
                    top_p=top_p, seed=seed)
        try:
            model, tok, res = load(ref.run_dir, device)
            if prompt is not None:
                typer.echo(complete(model, tok, res, prompt, **opts))
                return
            tty = common.stdin_is_tty()
            if tty:
                common.err(f"{ref.name}: type a prompt and Enter; an empty line or Ctrl-D ends")
            while True:
                try:
                    line = input("you ▸ " if tty else "")
                except EOFError:
                    break
                if not line.strip():
                    if tty:
                        break
                    continue
                text = complete(model, tok, res, line, **opts)
                typer.echo(f"model ▸ {text.strip()}\n" if tty else text.replace("\n", " ").strip())
        except GenerateError as e:
            common.fail(str(e), e.code)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            common.fail(f"generation failed: {type(e).__name__}: {first}", 1)

    @app.command()
    def merge(
        run: str = typer.Argument(..., help="Run name or directory."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: RUN/merged); "
                                                                     "an existing non-empty one is refused."),
        runs_dir: Optional[Path] = RUNS_DIR_OPT,
    ) -> None:
        """Merge a finished LoRA / QLoRA / T-Few run's adapter into its base model: one plain model folder."""
        ref = _finished(run, runs_dir, "merge")
        from engine.train.generate import GenerateError
        from engine.train.merge import merge_run

        import contextlib
        import sys

        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries the folder only (libraries print)
                written = merge_run(ref.run_dir, out)
        except GenerateError as e:
            common.fail(str(e), e.code)
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            common.fail(f"merge failed: {type(e).__name__}: {first}", 1)
        typer.echo(str(written))

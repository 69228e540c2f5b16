"""`finetui estimate FILE` — memory per GPU, steps per epoch and time, each formula shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from engine.data.sources import count_examples, local_data_files
from tui.commands import common

#: Above this size the data file is not read through the data check just to measure row lengths.
_MEASURE_LIMIT = 64 * 1024 * 1024


def measure_tokens_per_example(res: dict, sample: int = 500) -> float | None:
    """Mean tokens per training row after truncation, from a sample of a local data file read with a local
    tokenizer (the data check's token statistics); None when either is remote or cannot be read."""
    from engine.data.tokenize import local_tokenizer

    model, path = str(res.get("model.name_or_path") or ""), str(res.get("data.train_path") or "")
    src = local_tokenizer(model)
    files = local_data_files(path)
    if not src or not files or sum(f.stat().st_size for f in files) > _MEASURE_LIMIT:
        return None  # remote, unreadable, or too large to check just for this: --tokens-per-example
    try:
        from engine.data.check import check
        from engine.data.tokenize import load_tokenizer

        tok = load_tokenizer(src, bool(res.get("model.trust_remote_code")))
        rep = check(path, str(res["data.format"]), stage=str(res["trainer.stage"]),
                    max_length=int(res["general.max_sequence_length"]), tokenizer=tok, tokenizer_name=src,
                    token_sample=sample, preview_rows=0)
        t = rep.get("tokens") or {}
        return float(t["mean_trained_length"]) if t.get("sampled_rows") else None
    except Exception:  # noqa: BLE001 - token lengths only refine the estimate
        return None


def register(app: typer.Typer) -> None:
    @app.command("estimate")
    def estimate_cmd(
        file: Path = typer.Argument(..., help="A TOML preset."),
        gpu_memory: Optional[float] = typer.Option(None, "--gpu-memory", help="GPU memory in GB (as cards are "
                                                   "sold, e.g. 80); over it, suggestions with new estimates."),
        examples: Optional[int] = typer.Option(None, "--examples", help="Training examples (default: counted "
                                               "from the data file when it is local)."),
        tokens_per_s: Optional[float] = typer.Option(None, "--tokens-per-s", help="Measured throughput of the "
                                                     "whole job, for the time to finish."),
        tokens_per_example: Optional[float] = typer.Option(None, "--tokens-per-example", help="Mean tokens of a "
                                                           "training row (default: measured on a sample of the data "
                                                           "file when it and the tokenizer are local)."),
        as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
    ) -> None:
        """Memory per GPU (weights, gradients, optimizer, activations, logits, overhead), steps and time."""
        from engine.schema import MAX_ROWS, MAX_TOKENS
        from engine.estimate import estimate
        from engine.modelinfo import ModelInfoError

        import math

        if gpu_memory is not None and not (0 < gpu_memory <= 1e6):
            common.fail(f"--gpu-memory: {gpu_memory:g} is not a memory size (allowed: 0 < x ≤ 1000000 GB)")
        if examples is not None and not (1 <= examples <= MAX_ROWS):
            common.fail(f"--examples: {examples:.3g} is not a count (allowed: 1 ≤ x ≤ {MAX_ROWS:.0e}, an integer)")
        if tokens_per_example is not None and not (0 < tokens_per_example <= MAX_TOKENS):
            common.fail(f"--tokens-per-example: {tokens_per_example:g} is not a length (allowed: 0 < x ≤ {MAX_TOKENS})")
        if tokens_per_s is not None and not (0 < tokens_per_s < math.inf):
            common.fail(f"--tokens-per-s: {tokens_per_s:g} is not a throughput (allowed: a finite number > 0)")
        job = common.load_job(file)
        bad = [p for p in job.problems() if not p.field.startswith("data.train_path")]
        if bad:
            for p in bad:
                common.err(str(p))
            raise typer.Exit(2)
        res = job.resolved()
        counted = examples is None
        if examples is None:
            examples = count_examples(str(res.get("data.train_path") or ""))
        measured = None
        from engine.schema import packs

        if tokens_per_example is None and examples is not None and (packs(res) or tokens_per_s):
            # the packed step count, or the tokens a step holds for the time, depend on the rows' length
            tokens_per_example = measured = measure_tokens_per_example(res)
        try:
            est = estimate(res, num_examples=examples, gpu_memory_gb=gpu_memory, throughput_tokens_per_s=tokens_per_s,
                           tokens_per_example=tokens_per_example)
        except ModelInfoError as e:
            common.fail(f"model.name_or_path: {e}")
        if as_json:
            typer.echo(json.dumps(est.to_dict(), indent=2, default=str))
            return
        if counted and examples is not None:
            est.notes.insert(0, f"{examples} examples counted in {res['data.train_path']}")
        if measured is not None:
            est.notes.insert(1 if counted else 0, f"{measured:g} tokens per example (mean after truncation, measured "
                                                   f"on a sample with {res['model.name_or_path']}'s tokenizer)")
        elif examples is None:
            est.notes.insert(0, "examples unknown (remote or unreadable data file): give --examples N for steps")
        typer.echo(est.to_text(), nl=False)

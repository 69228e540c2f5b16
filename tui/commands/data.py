"""`finetui data …` — the data check (validation report).  Exit 2 when the check fails."""

from __future__ import annotations

import contextlib

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from engine.schema import FIELD_BY_NAME
from tui.commands import common

data_app = typer.Typer(help="Check training data: formats, invalid rows, token lengths, a preview.",
                       no_args_is_help=True)


def _option(name: str, *short: str, help: str) -> Any:
    """The option that sets field ``name``: the flag the field declares (the TUI's check writes the same)."""
    return typer.Option(None, FIELD_BY_NAME[name].flag, *short, help=help)


def _prompt_secret(name: str) -> str:
    import getpass

    return getpass.getpass(f"{name} (not echoed, not stored): ")


@data_app.command("check")
def check_cmd(
    path: str = typer.Argument(..., help="A .json/.jsonl/.zip file, a folder, finetui:samples/<file> or s3://bucket/key."),
    fmt: Optional[str] = _option("data.format", "-f", help="Data format (alpaca, corpus, sharegpt, "
                                 "sharegpt_image, preference, bedrock_converse, kto); default: the preset's, else told "
                                 "from the first rows."),
    trainer: Optional[str] = _option("trainer.stage", "-t", help="Check compatibility with this trainer "
                                     "(pretrain, sft, dpo, kto, reward)."),
    max_length: Optional[int] = _option("general.max_sequence_length", help="Max sequence length in tokens."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer for token lengths: a model "
                                            "folder / id, or finetui:tiny-llama."),
    allow_invalid: Optional[float] = _option("data.allow_percentage_invalid_samples",
                                             help="Allowed share of invalid rows, %."),
    preset: Optional[Path] = typer.Option(None, "--preset", "-p", help="Take format, trainer, max length, "
                                          "tokenizer (model), S3 connection from this preset."),
    endpoint_url: Optional[str] = _option("data.s3_endpoint_url", help="S3 endpoint URL."),
    region: Optional[str] = _option("data.s3_region", help="S3 region."),
    access_key_env: Optional[str] = _option("data.s3_access_key_env", help="Variable holding the access key id."),
    secret_key_env: Optional[str] = _option("data.s3_secret_key_env", help="Variable holding the secret key."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (what the TUI reads)."),
    preview: int = typer.Option(3, "--preview", help="Rows to preview, rendered as the worker renders them "
                                "(with --tokenizer or a preset's model: trained tokens highlighted, the prompt "
                                "dimmed, token counts, loss-mask problems)."),
    progress: str = typer.Option("auto", "--progress", help="How the check says its progress on stderr: auto (a "
                                 "bar in a terminal, else nothing), lines (a line `finetui-progress {json}` at most "
                                 "every 0.2 s: rows, bytes read, bytes in all, seconds; what the TUI reads) or none."),
) -> None:
    """Validate a data file: rows valid/invalid, trainer compatibility, token lengths, duplicates, a preview."""
    from engine.schema import FORMATS, STAGES, JobConfig, check_value

    if progress not in PROGRESS_MODES:
        common.fail(f"--progress: `{progress}` is not one of {', '.join(PROGRESS_MODES)}")
    job = common.load_job(preset) if preset else JobConfig()
    # an option that sets a field is checked as the field is (its type, range and form), in the option's name
    for name, v in (("general.max_sequence_length", max_length),
                    ("data.allow_percentage_invalid_samples", allow_invalid),
                    ("data.s3_access_key_env", access_key_env), ("data.s3_secret_key_env", secret_key_env)):
        p = check_value(name, v, job.profile) if v is not None else None
        if p is not None:
            common.fail(f"{FIELD_BY_NAME[name].flag}: {p.message}" + (f" (allowed: {p.allowed})" if p.allowed else ""))
    if preview < 0 or preview > 1000:
        common.fail(f"--preview: {preview} rows (allowed: 0 ≤ x ≤ 1000)")
    res = job.resolved()
    secrets = dict(getattr(job, "secrets", {}) or {})
    fmt = fmt or (res["data.format"] if preset else None)
    if not fmt:  # told from the first rows (distinctive keys), and said
        from engine.data.check import sniff
        from engine.data.formats import FORMAT_WORDS, detect_format
        from engine.datapaths import any_s3

        if any_s3(path):
            common.fail(f"--format is required for S3 data (allowed: {', '.join(FORMATS)})")
        fmt = detect_format(sniff(path, res, secrets))
        if not fmt:
            common.fail(f"--format is required: the first rows of {path} look like no format "
                        f"(allowed: {', '.join(FORMATS)})")
        common.err(f"format: {fmt} — the first rows look like {FORMAT_WORDS.get(fmt, fmt)} (--format to choose)")
    if fmt not in FORMATS:
        common.fail(f"--format: unknown format `{fmt}` (allowed: {', '.join(FORMATS)})")
    stage = trainer or (res["trainer.stage"] if preset else None)
    if stage and stage not in STAGES:
        common.fail(f"--trainer: unknown trainer `{stage}` (allowed: {', '.join(STAGES)})")
    if max_length is None:
        max_length = res["general.max_sequence_length"]
    if tokenizer is None and preset:
        tokenizer = res["model.name_or_path"]
    if allow_invalid is None:
        allow_invalid = float(res["data.allow_percentage_invalid_samples"] or 0.0)
    for k, v in (("data.s3_endpoint_url", endpoint_url), ("data.s3_region", region),
                 ("data.s3_access_key_env", access_key_env), ("data.s3_secret_key_env", secret_key_env)):
        if v is not None:
            res[k] = v
    from engine.datapaths import any_s3

    if any_s3(path):
        from engine.data import s3

        missing = s3.missing_credentials(res, secrets)
        if missing and common.stdin_is_tty():
            for name in missing:
                secrets[name] = _prompt_secret(name)
        elif missing:
            common.fail(f"{path}: no S3 credentials — set {' and '.join(missing)}")

    import contextlib

    # stdout carries the report only (libraries loaded below may print to it)
    with contextlib.redirect_stdout(sys.stderr):
        rep = _run_check(path, fmt, stage, max_length, tokenizer, allow_invalid, res, secrets,
                         job.profile if preset else None, preview,
                         show_progress=("lines" if progress == "lines" else
                                        "bar" if progress == "auto" and not as_json and sys.stderr.isatty() else None))
    if as_json:
        typer.echo(json.dumps(rep, ensure_ascii=False))
    elif sys.stdout.isatty() and rep.get("loss_mask"):
        # in a terminal: the rows with rich, trained tokens highlighted and the prompt dimmed
        from rich.console import Console

        from engine.data.check import format_report
        from tui.widgets.maskview import mask_preview

        con = Console(highlight=False)
        con.print(format_report(rep, color=True, with_preview=False), markup=False, highlight=False)
        con.print(mask_preview(rep))
    else:
        color = sys.stdout.isatty()
        from engine.data.check import format_report

        typer.echo(format_report(rep, color=color))
    if not rep["ok"]:
        if as_json:
            for e in rep["errors"]:
                common.err(e)
        raise typer.Exit(2)


#: --progress's values
PROGRESS_MODES = ("auto", "lines", "none")
#: the start of a progress line (``--progress lines``): then one JSON object
PROGRESS_PREFIX = "finetui-progress "
PROGRESS_EVERY_S = 0.2


@contextlib.contextmanager
def check_progress(show: str | None):
    """The data check's progress on stderr, as ``show`` says: ``bar`` (a bar: rows, rows/s, time left by bytes
    read), ``lines`` (a :data:`PROGRESS_PREFIX` line of JSON at most every :data:`PROGRESS_EVERY_S`, and the last)
    or None (nothing); yields its callback."""
    import time

    t0 = time.perf_counter()
    if show == "lines":
        last = [0.0]

        def line(rows: int, done: int, total: int) -> None:
            now = time.perf_counter() - t0
            if now - last[0] < PROGRESS_EVERY_S and not (total and done >= total):
                return
            last[0] = now
            sys.stderr.write(PROGRESS_PREFIX + json.dumps({"rows": rows, "bytes": done, "total": total,
                                                                "seconds": round(now, 3)}) + "\n")
            sys.stderr.flush()

        yield line
        return
    if show != "bar":
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("checking"), BarColumn(), TextColumn("{task.fields[rows]}"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("check", total=None, rows="")

        def update(rows: int, done: int, total: int) -> None:
            rate = rows / max(1e-9, time.perf_counter() - t0)
            prog.update(task, completed=done if total else None, total=total or None,
                        rows=f"{rows:,} rows · {rate:,.0f} rows/s")

        yield update


def _run_check(path, fmt, stage, max_length, tokenizer, allow_invalid, res, secrets, profile, preview,
               show_progress: str | None = None) -> dict:
    if "numpy" not in sys.modules:
        # numpy's OpenBLAS starts a thread per core that spins for work the check never gives it: ~0.1 s of CPU
        # taken from the check's own threads (1M rows: 1.2 → 1.0 s on 2 cores); this process only checks
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    tok = None
    if tokenizer:
        try:
            from engine.data.tokenize import load_tokenizer

            tok = load_tokenizer(tokenizer, bool(res.get("model.trust_remote_code")))
            tok.model_max_length = int(1e9)  # lengths are reported, not warned about
        except Exception as e:  # noqa: BLE001 - one clear line
            from engine.hub import NotCachedOffline

            if isinstance(e, NotCachedOffline):
                common.fail(f"--tokenizer: {e}")
            common.fail(f"--tokenizer: cannot load `{tokenizer}` ({type(e).__name__}: {str(e).splitlines()[0][:200]})")

    fallback = None
    if tok is not None:  # as the worker prepares it: a pad token, ChatML when it has no chat template
        from engine.data.tokenize import prepare_tokenizer

        fallback = prepare_tokenizer(tok, stage, lambda _m: None)
    from engine.data.check import check

    with check_progress(show_progress) as progress:
        return check(path, fmt, stage=stage, max_length=max_length, tokenizer=tok, tokenizer_name=tokenizer,
                     allow_invalid=allow_invalid, res=res, secrets=secrets, profile=profile,
                     preview_rows=preview, seed=int(res.get("runtime.seed") or 0), template_fallback=fallback,
                     progress=progress)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")

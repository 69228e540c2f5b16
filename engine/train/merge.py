"""``finetui merge RUN``: a finished adapter run's model merged into its base, as one plain model folder.

What serving tools (vLLM, TGI, llama.cpp's converter) load: the base model loaded in full precision,
the run's saved adapter applied and merged (``merge_and_unload``), saved with ``save_pretrained``
beside the tokenizer.  The same code merges at the end of a run with ``adapter.merge_adapter``.
Nothing already written is overwritten: the folder is written under a temporary name and renamed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.launch.rundir import CONFIG_FILE
from engine.train.generate import GenerateError, final_dir, tokenizer_source


def merge_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Merge the adapter of ``run_dir/final`` into its base model; → the folder written (default
    ``run_dir/merged``).  Raises :class:`GenerateError` (one line) for a run that has nothing to merge."""
    run_dir = Path(run_dir)
    final, res = final_dir(run_dir)
    if not (final / "adapter_config.json").exists():
        raise GenerateError(f"run {run_dir.name}: {final} is already a full model (trained with "
                            f"{res.get('trainer.training_type')}{' and merged' if res.get('adapter.merge_adapter') else ''}); "
                            f"nothing to merge")
    if res.get("trainer.training_type") == "prompt_tuning":
        raise GenerateError(f"run {run_dir.name} trained prompt tuning: its virtual tokens are inputs, not weights, "
                            f"and do not merge (PEFT loads them onto the base model: finetui generate does)")
    out = Path(out).expanduser() if out is not None else run_dir / "merged"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenerateError(f"{out} already exists; choose another folder with -o")
    try:
        merge_into(res, final, out, tokenizer_source(final, res))
    except (OSError, ValueError) as e:
        raise GenerateError(f"cannot merge run {run_dir.name}: {e}", 1) from None
    return out


def merge_into(res: dict, adapter: Path, out: Path, tokenizer: str | Path) -> None:
    """The base model of ``res`` with the adapter saved in ``adapter`` merged, written to ``out`` (under a
    temporary name, then renamed; an empty ``out`` is replaced).  OSError / ValueError: one line."""
    from transformers import AutoTokenizer

    from engine.hub import not_cached_hint, offline_if_unreachable
    from engine.tiny import resolve_model_path
    from engine.train.worker import merge_adapter

    base = resolve_model_path(res["model.name_or_path"])
    offline_if_unreachable(base)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=bool(res["model.trust_remote_code"]))
        merge_adapter(base, Path(adapter), tmp, res, tok)
    except (OSError, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{first}{not_cached_hint(base)}") from None
    if out.exists():
        out.rmdir()  # (empty: checked by the callers)
    tmp.rename(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.train.merge --run-dir DIR --adapter DIR --out DIR``: the end-of-run merge
    (``adapter.merge_adapter``), in a process of its own once the ranks are done (engine/train/worker.py)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="engine.train.merge")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from engine import presets

    res = presets.load(Path(a.run_dir) / CONFIG_FILE).resolved()
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: {out} already exists", file=sys.stderr)
        return 2
    try:
        merge_into(res, Path(a.adapter), out, a.adapter)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

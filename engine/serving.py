"""``finetui export-model RUN --to hf|vllm|ollama``: a finished run's model as a serving tool loads it.

* ``hf``: one plain model folder (an adapter merged into its base by :mod:`engine.train.merge`'s code, a
  full model copied) with its tokenizer and chat template.
* ``vllm``: a LoRA run stays base + adapter (``adapter/``: vLLM loads LoRA adapters itself:
  ``--enable-lora --lora-modules NAME=adapter``); anything else is the merged / full model folder.  The
  ``vllm serve`` command line is written to ``serve.sh`` and printed.
* ``ollama``: the merged / full model folder and a ``Modelfile``: FROM the folder (or the GGUF file when
  llama.cpp's converter is installed here), the TEMPLATE converted from the tokenizer's Jinja chat
  template (:mod:`engine.chattemplate`; a note where it cannot be converted faithfully) and one
  ``PARAMETER stop`` per end-of-turn / end-of-sequence token.

Then the check: the exported folder is loaded with ``from_pretrained`` (base + the exported adapter for a
vLLM LoRA export) and its greedy first tokens for a fixed prompt are compared with the run's own model's
(:func:`engine.train.generate.load`); the result is recorded in ``export.json``.  The folder is written
under a temporary name and renamed at the end: an existing folder is never written into.
torch / transformers / peft are imported inside the functions only.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.train.generate import GenerateError, final_dir, tokenizer_source

TARGETS = ("hf", "vllm", "ollama")
CHECK_PROMPT = "Name three colours."
CHECK_TOKENS = 8
#: adapter-side files a merged or full export does not carry
_TRAINING_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


@dataclass
class Export:
    out: Path
    to: str
    layout: str  # "merged" | "full" | "adapter"
    serve: str = ""  # the command that serves it ('' for hf)
    notes: list[str] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)


def gguf_converter() -> list[str] | None:
    """llama.cpp's HF → GGUF converter as a command, when installed here: ``convert_hf_to_gguf.py`` (or the
    ``convert-hf-to-gguf`` entry point) on PATH, or in ``$LLAMA_CPP_DIR``."""
    for name in ("convert_hf_to_gguf.py", "convert-hf-to-gguf", "convert_hf_to_gguf"):
        exe = shutil.which(name)
        if exe:
            return [sys.executable, exe] if exe.endswith(".py") else [exe]
    root = os.environ.get("LLAMA_CPP_DIR")
    if root and (Path(root) / "convert_hf_to_gguf.py").is_file():
        return [sys.executable, str(Path(root) / "convert_hf_to_gguf.py")]
    return None


def _adapter_type(final: Path) -> str | None:
    try:
        return str(json.loads((final / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type", ""))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "?"


def _copy_model(final: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for p in final.iterdir():
        if p.name in _TRAINING_FILES or p.name.startswith("."):
            continue
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, dest / p.name)


def _first(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def export_model(run_dir: str | Path, to: str, out: str | Path | None = None, *, check: bool = True,
                 say: Callable[[str], None] = lambda s: None) -> Export:
    """Export ``run_dir``'s final model for ``to`` into ``out`` (default ``run_dir/export-<to>``).

    Raises :class:`GenerateError` (one line; code 2 = bad input) for a run or folder it cannot export; a
    failed check does not raise: ``Export.check["same"]`` is False."""
    if to not in TARGETS:
        raise GenerateError(f"--to: {to!r} is not offered (allowed: {', '.join(TARGETS)})")
    run_dir = Path(run_dir)
    final, res = final_dir(run_dir)
    out = Path(out).expanduser() if out is not None else run_dir / f"export-{to}"
    if out.exists() or out.is_symlink():
        raise GenerateError(f"{out} already exists; choose another folder with -o")
    peft_type = _adapter_type(final)
    if peft_type == "PROMPT_TUNING" or res.get("trainer.training_type") == "prompt_tuning":
        raise GenerateError(f"run {run_dir.name} trained prompt tuning: its virtual tokens are inputs, not weights; "
                            f"no server loads them (try it with finetui generate)")
    if res.get("trainer.stage") == "pretrain" and to == "ollama":
        say("note: a pre-training run has no chat turns; the Modelfile's template is the tokenizer's chat template")
    from engine.tiny import resolve_model_path

    base = resolve_model_path(res["model.name_or_path"])
    layout = "adapter" if (to == "vllm" and peft_type == "LORA") else ("merged" if peft_type else "full")
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    exp = Export(out=out, to=to, layout=layout)
    try:
        _write(run_dir, final, res, base, tmp, exp, say)
        if check:
            say("checking: the exported model loads with from_pretrained and generates what the run's model does")
            exp.check = _check(run_dir, tmp, base, exp, res)
        (tmp / "export.json").write_text(json.dumps(
            {"run": run_dir.name, "to": to, "layout": layout, "base": str(res["model.name_or_path"]),
             "serve": exp.serve, "notes": exp.notes, "check": exp.check}, indent=2) + "\n", encoding="utf-8")
    except GenerateError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        from engine.hub import not_cached_hint

        raise GenerateError(f"cannot export run {run_dir.name}: {_first(e)}{not_cached_hint(base)}", 1) from None
    tmp.rename(out)
    return exp


def _write(run_dir: Path, final: Path, res: dict, base: str, tmp: Path, exp: Export,
           say: Callable[[str], None]) -> None:
    """The export's files into ``tmp``; the commands name ``exp.out``, where ``tmp`` is renamed to."""
    from transformers import AutoTokenizer

    from engine.hub import offline_if_unreachable

    trust = bool(res.get("model.trust_remote_code"))
    if exp.layout != "full":
        offline_if_unreachable(base)
    tok = AutoTokenizer.from_pretrained(tokenizer_source(final, res), trust_remote_code=trust)
    name = run_dir.name
    if exp.layout == "merged":
        say(f"merging the adapter of {name} into {res['model.name_or_path']}")
        from engine.train.worker import merge_adapter

        merge_adapter(base, final, tmp, res, tok)
    elif exp.layout == "full":
        _copy_model(final, tmp)
        tok.save_pretrained(str(tmp))
    else:
        _copy_model(final, tmp / "adapter")
        tok.save_pretrained(str(tmp / "adapter"))
    if exp.to == "vllm":
        exp.serve = _vllm_command(name, base, tmp, exp.out, exp.layout, trust)
    elif exp.to == "ollama":
        exp.serve = _ollama(name, tmp, tok, exp, say)
    if exp.serve:
        (tmp / "serve.sh").write_text(f"#!/bin/sh\n# Written by finetui export-model for run {name}\n"
                                      f"{'' if '&&' in exp.serve else 'exec '}{exp.serve}\n", encoding="utf-8")
        (tmp / "serve.sh").chmod(0o755)


def _vllm_command(name: str, base: str, tmp: Path, out: Path, layout: str, trust: bool) -> str:
    folder = str((out / "adapter" if layout == "adapter" else out).resolve())
    if layout == "adapter":
        cfg = json.loads((tmp / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
        rank = int(cfg.get("r") or 8)
        args = ["vllm", "serve", base, "--enable-lora", "--lora-modules", f"{name}={folder}", "--tokenizer", folder]
        if rank > 16:  # vLLM's default --max-lora-rank
            args += ["--max-lora-rank", str(next(r for r in (32, 64, 128, 256, 320, 512) if r >= rank))]
    else:
        args = ["vllm", "serve", folder, "--served-model-name", name]
    if trust:
        args.append("--trust-remote-code")
    return shlex.join(args)


def _ollama(name: str, tmp: Path, tok: Any, exp: Export, say: Callable[[str], None]) -> str:
    from engine import chattemplate as ct

    render = ct.tokenizer_render(tok)
    notes: list[str] = []
    if render is None:
        conv = ct.GoTemplate(None, "the tokenizer has no chat template")
    else:
        ids = tok("x")["input_ids"]
        conv = ct.convert(render, bos=tok.bos_token, adds_bos=bool(ids) and ids[0] == tok.bos_token_id)
    if conv.template is None:
        notes.append(f"no TEMPLATE in the Modelfile: {conv.note}")
    eos = [tok.eos_token] if tok.eos_token else []
    try:
        from transformers import GenerationConfig

        gen_eos = GenerationConfig.from_pretrained(str(tmp)).eos_token_id
        for i in gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else []:
            eos.append(tok.convert_ids_to_tokens(int(i)))
    except (OSError, ValueError):
        pass
    special = {t: i for t, i in zip(tok.all_special_tokens, tok.all_special_ids)}
    special.update({str(t): i for i, t in getattr(tok, "added_tokens_decoder", {}).items()
                    if getattr(t, "special", False)})
    stops = ct.stop_tokens(render, special, eos)
    source = "."
    conv_cmd = gguf_converter()
    if conv_cmd is None:
        notes.append("GGUF: llama.cpp's converter (convert_hf_to_gguf.py) is not installed here; the Modelfile "
                     "imports the safetensors folder (ollama create converts it)")
    else:
        say("converting to GGUF with llama.cpp's converter")
        r = subprocess.run([*conv_cmd, str(tmp), "--outfile", str(tmp / "model.gguf"), "--outtype", "f16"],
                           capture_output=True, text=True)
        if r.returncode == 0 and (tmp / "model.gguf").is_file():
            source = "./model.gguf"
        else:
            tail = (r.stderr or r.stdout).strip().splitlines()
            notes.append(f"GGUF: the converter failed ({tail[-1] if tail else f'exit {r.returncode}'}); the "
                         f"Modelfile imports the safetensors folder")
    exp.notes += notes
    (tmp / "Modelfile").write_text(ct.modelfile(source, conv, stops, note_lines=notes), encoding="utf-8")
    model = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())
    # (FROM . is the folder: run from it, whichever way this Ollama resolves a relative FROM)
    return f"cd {shlex.quote(str(exp.out.resolve()))} && ollama create {shlex.quote(model)} -f Modelfile"


def _check(run_dir: Path, tmp: Path, base: str, exp: Export, res: dict) -> dict[str, Any]:
    """Greedy first tokens of the run's model and of the exported folder (loaded with from_pretrained)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.train.generate import load, prompt_ids

    trust = bool(res.get("model.trust_remote_code"))
    model, tok, _ = load(run_dir, "cpu")
    ids = prompt_ids(tok, CHECK_PROMPT, res)
    want = _greedy(model, ids, tok)
    del model
    folder = tmp / "adapter" if exp.layout == "adapter" else tmp
    etok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust)
    if exp.layout == "adapter":
        from peft import PeftModel

        emodel = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, trust_remote_code=trust),
                                           str(folder))
    else:
        emodel = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=trust)
    emodel.eval()
    eids = prompt_ids(etok, CHECK_PROMPT, res)
    got = _greedy(emodel, eids, etok)
    return {"prompt": CHECK_PROMPT, "same_prompt_ids": eids == ids, "run_tokens": want, "export_tokens": got,
            "same": want == got and eids == ids}


def _greedy(model: Any, ids: list[int], tok: Any) -> list[int]:
    import torch

    inp = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=False,
                             max_new_tokens=CHECK_TOKENS, min_new_tokens=CHECK_TOKENS,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return [int(t) for t in out[0, inp.shape[1]:]]

"""Try a finished run's model at once: load ``final/`` and generate (``finetui generate``).

``final/`` holds either a PEFT adapter (LoRA, T-Few / IA3, prompt tuning; loaded onto
the run's base model with ``PeftModel.from_pretrained``) or a full model (full / freeze
fine-tuning, or LoRA with ``merge_adapter``; loaded with ``from_pretrained``).  Runs
trained on conversations get the tokenizer's chat template with the generation prompt;
pre-training runs continue the raw text.  torch / transformers / peft are imported
inside the functions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import FinetuiError
from engine.events import EVENTS_FILE
from engine.launch.rundir import CONFIG_FILE, FINAL_DIR



class GenerateError(FinetuiError, ValueError):
    """A run that cannot generate; ``str()`` is one line. ``code`` 2 = bad input."""

    def __init__(self, msg: str, code: int = 2):
        super().__init__(msg)
        self.code = code


def _end_record(run_dir: Path) -> dict | None:
    end = None
    try:
        for line in (run_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("kind") == "end":
                end = r
    except OSError:
        pass
    return end


def final_dir(run_dir: str | Path) -> tuple[Path, dict]:
    """The run's ``final/`` folder and resolved config, or a one-line :class:`GenerateError`."""
    from engine import presets
    from engine.schema import ConfigError

    run_dir = Path(run_dir)
    try:
        res = presets.load(run_dir / CONFIG_FILE).resolved()
    except (OSError, ConfigError) as e:
        raise GenerateError(f"{run_dir}: cannot read the run's config.toml ({str(e).splitlines()[0]})") from None
    final = run_dir / FINAL_DIR
    has_model = final.is_dir() and any((final / f).exists() for f in
                                        ("adapter_config.json", "config.json"))
    if not has_model:
        end = _end_record(run_dir)
        if end is None:
            why = "it has not finished (no end record yet)"
        elif end.get("outcome") in ("completed", "early_stopped"):
            why = "its final/ folder is missing or empty"
        else:
            why = f"it ended {end.get('outcome')}"
        raise GenerateError(f"run {run_dir.name} has no final model in {final}: {why}")
    if res.get("trainer.stage") == "reward":
        raise GenerateError(f"run {run_dir.name} trained a reward model: it scores text and does not generate")
    return final, res


def tokenizer_source(final: Path, res: dict) -> str:
    """Where a run's tokenizer is read from: the one saved beside its final model, else its base model's."""
    from engine.tiny import resolve_model_path

    return str(final) if (final / "tokenizer_config.json").exists() else resolve_model_path(res["model.name_or_path"])


def load(run_dir: str | Path, device: str | None = None) -> tuple[Any, Any, dict]:
    """(model, tokenizer, resolved config) of a finished run, ready to generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.tiny import resolve_model_path

    final, res = final_dir(run_dir)
    trust = bool(res.get("model.trust_remote_code"))
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kw: dict[str, Any] = {"trust_remote_code": trust}
    if dev == "cuda":
        kw["dtype"] = "auto"
    from engine.hub import not_cached_hint, offline_if_unreachable

    if (final / "adapter_config.json").exists() or not (final / "tokenizer_config.json").exists():
        offline_if_unreachable(resolve_model_path(res["model.name_or_path"]))  # the base model is loaded too
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_source(final, res), trust_remote_code=trust)
        if (final / "adapter_config.json").exists():
            from peft import PeftModel

            base_path = resolve_model_path(res["model.name_or_path"])
            base = AutoModelForCausalLM.from_pretrained(base_path, **kw)
            model = PeftModel.from_pretrained(base, str(final))
        else:
            model = AutoModelForCausalLM.from_pretrained(str(final), **kw)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GenerateError(f"cannot load the model of run {Path(run_dir).name} from {final}: {first}"
                            f"{not_cached_hint(str(res['model.name_or_path']))}", 1) from None
    model.to(dev)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return model, tok, res


def prompt_ids(tok: Any, prompt: str, res: dict) -> list[int]:
    """Conversation-trained runs: the chat template with the generation prompt; pre-training: raw text."""
    if res.get("trainer.stage") != "pretrain" and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        return list(tok(text, add_special_tokens=False)["input_ids"])
    return list(tok(prompt)["input_ids"])


def generate(run_dir: str | Path, prompt: str, *, max_new_tokens: int = 64, min_new_tokens: int = 0,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
             device: str | None = None) -> str:
    """Load the run's result and return the generated continuation (special tokens removed)."""
    model, tok, res = load(run_dir, device)
    return complete(model, tok, res, prompt, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                    temperature=temperature, top_p=top_p, seed=seed)


def complete(model: Any, tok: Any, res: dict, prompt: str, *, max_new_tokens: int = 64, min_new_tokens: int = 0,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None) -> str:
    """One answer from a loaded model (:func:`load`)."""
    import torch

    ids = prompt_ids(tok, prompt, res)
    if not ids:
        raise GenerateError("--prompt: the prompt is empty after tokenization")
    dev = next(model.parameters()).device
    inp = torch.tensor([ids], device=dev)
    gen: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "pad_token_id": tok.pad_token_id}
    if min_new_tokens:
        gen["min_new_tokens"] = min(int(min_new_tokens), int(max_new_tokens))
    if tok.eos_token_id is not None:
        gen["eos_token_id"] = tok.eos_token_id
    if temperature and temperature > 0:
        gen.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
        if seed is not None:
            torch.manual_seed(int(seed))
    else:
        gen.update(do_sample=False)
    with torch.no_grad():
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), **gen)
    new = out[0, inp.shape[1]:] if out.shape[1] > inp.shape[1] else out[0, :0]
    return tok.decode(new, skip_special_tokens=True)


def serve(run_dir: str | Path, device: str | None = None, stdin: Any = None, stdout: Any = None) -> int:
    """The model of a run, loaded once, answering prompts: one JSON object per line in (``{"prompt", and
    optionally max_new_tokens, min_new_tokens, temperature, top_p, seed}``), one per line out (``{"text"}`` or
    ``{"error"}``), after a first ``{"ready": ...}`` line (or ``{"error"}`` when the model does not load).  Ends
    at the end of the input.  The TUI's "try the model" screen talks to it."""
    import sys

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def say(obj: dict) -> None:
        stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        stdout.flush()

    try:
        model, tok, res = load(run_dir, device)
    except GenerateError as e:
        say({"error": str(e)})
        return e.code
    say({"ready": True, "model": str(res.get("model.name_or_path")), "device": str(next(model.parameters()).device),
         "chat": res.get("trainer.stage") != "pretrain" and bool(getattr(tok, "chat_template", None))})
    keys = ("max_new_tokens", "min_new_tokens", "temperature", "top_p", "seed")
    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            say({"text": complete(model, tok, res, str(req["prompt"]), **{k: req[k] for k in keys if k in req})})
        except GenerateError as e:
            say({"error": str(e)})
        except (ValueError, KeyError, TypeError) as e:
            say({"error": f"bad request: {e.__class__.__name__}: {e}"})
    return 0


if __name__ == "__main__":
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="engine.train.generate", description=serve.__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    sys.exit(serve(a.run_dir, a.device))

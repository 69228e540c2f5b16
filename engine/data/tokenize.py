"""Canonical rows → token ids and labels, through the tokenizer's chat template.

The training worker and the data check's preview both use :func:`tokenize_row`, so what
the preview marks as trained is exactly what the loss sees.

* corpus (pre-training): the text + EOS, every token trained.
* conversations: the chat template renders the messages; the tokens of each assistant
  turn (its content and end-of-turn marker) are trained, everything else is ``-100``.
* preference / kto rows: the prompt + chosen (or completion) conversation, same masking;
  a preference row also gets ``rejected`` ids/labels.

Imports nothing heavy at module level; ``load_tokenizer`` imports transformers lazily.
"""

from __future__ import annotations

import json
from typing import Any

from engine.data.errors import DataError
from engine.data.formats import as_messages

IGNORE = -100


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """A tokenizer from a folder / model id, or ``finetui:tiny-llama`` (built on first use)."""
    from transformers import AutoTokenizer

    from engine.tiny import resolve_model_path

    path = resolve_model_path(str(name_or_path))  # (finetui:tiny-llama / tiny-vlm: built on first use)
    from engine.hub import NotCachedOffline, not_cached_hint, offline_if_unreachable

    offline_if_unreachable(path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        hint = not_cached_hint(path)
        if not hint:
            raise
        raise NotCachedOffline(f"cannot load `{path}`{hint}") from e


FALLBACK_NOTE = "the tokenizer has no chat template; using ChatML (<|im_start|>role ... <|im_end|>)"


def prepare_tokenizer(tok: Any, stage: str | None, warn: Any) -> str | None:
    """What the worker does to a loaded tokenizer before tokenizing: a pad token (EOS or UNK when it has
    none) and, for every stage but pre-training, ChatML when it has no chat template (said through
    ``warn``).  Returns that note, or None when the tokenizer's own template is used."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if not getattr(tok, "chat_template", None) and stage != "pretrain":
        from engine.tiny import CHAT_TEMPLATE

        tok.chat_template = CHAT_TEMPLATE
        warn(FALLBACK_NOTE)
        return FALLBACK_NOTE
    return None


def _has_template(tok: Any) -> bool:
    return bool(getattr(tok, "chat_template", None))


def _render(tok: Any, msgs: list[dict], gen: bool, tools: Any) -> str:
    if _has_template(tok):
        kw: dict = {"tokenize": False, "add_generation_prompt": gen}
        if tools is not None:
            kw["tools"] = tools
        try:
            try:
                return tok.apply_chat_template(msgs, **kw)
            except TypeError:
                kw.pop("tools", None)
                return tok.apply_chat_template(msgs, **kw)
        except Exception as e:  # jinja's TemplateError and friends: one clear line
            roles = ", ".join(dict.fromkeys(m["role"] for m in msgs))
            name = getattr(tok, "name_or_path", "") or "the tokenizer"
            raise DataError(f"the chat template of {name} cannot render this conversation (roles: {roles}): "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    # no chat template: a plain "role: content" transcript
    text = "".join(f"{m['role']}: {m['content']}\n" for m in msgs)
    if gen:
        text += "assistant: "
    return text


def _tools(row: dict) -> Any:
    t = row.get("tools")
    if not t:
        return None
    try:
        v = json.loads(t) if isinstance(t, str) else t
    except ValueError:
        return None
    return v if isinstance(v, list) else [v]


def conversation_spans(tok: Any, msgs: list[dict], tools: Any = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the trained (assistant) parts."""
    full = _render(tok, msgs, False, tools)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _render(tok, msgs[:i], True, tools)
        upto = _render(tok, msgs[: i + 1], False, tools)
        if full.startswith(upto) and upto.startswith(before) and len(before) >= cursor:
            start, end = len(before), len(upto)
        else:  # the template rewrites earlier turns: find the content itself
            start = full.find(m["content"], cursor)
            if start < 0:
                continue
            end = start + len(m["content"])
            # include the end-of-turn marker when it follows directly
            eos = getattr(tok, "eos_token", None)
            if eos and full.startswith(eos, end):
                end += len(eos)
        # trailing whitespace after the end-of-turn marker is not trained
        while end > start and full[end - 1] in " \n\t\r":
            end -= 1
        if end > start:
            spans.append((start, end))
            cursor = end
    return full, spans


def _encode_with_spans(tok: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    enc = None
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):
        enc = None
    if enc is not None and "offset_mapping" in enc:
        ids = list(enc["input_ids"])
        labels = []
        si = 0
        for tid, (a, b) in zip(ids, enc["offset_mapping"]):
            while si < len(spans) and spans[si][1] <= a:
                si += 1
            inside = si < len(spans) and a < spans[si][1] and b > spans[si][0]
            labels.append(tid if inside else IGNORE)
        return ids, labels
    # slow tokenizers: encode piece by piece
    ids, labels = [], []
    pos = 0
    for a, b in spans + [(len(text), len(text))]:
        if a > pos:
            p = tok.encode(text[pos:a], add_special_tokens=False)
            ids += p
            labels += [IGNORE] * len(p)
        if b > a:
            p = tok.encode(text[a:b], add_special_tokens=False)
            ids += p
            labels += p
        pos = b
    return ids, labels


def _truncate(ids: list[int], labels: list[int], max_length: int | None) -> tuple[list[int], list[int], int]:
    if max_length and len(ids) > max_length:
        return ids[:max_length], labels[:max_length], len(ids) - max_length
    return ids, labels, 0


def tokenize_messages(tok: Any, msgs: list[dict], max_length: int | None = None, tools: Any = None) -> dict:
    text, spans = conversation_spans(tok, msgs, tools)
    ids, labels = _encode_with_spans(tok, text, spans)
    ids, labels, cut = _truncate(ids, labels, max_length)
    return {"input_ids": ids, "labels": labels, "truncated": cut}


def tokenize_text(tok: Any, text: str, max_length: int | None = None) -> dict:
    return tokenize_texts(tok, [text], max_length)[0]


def tokenize_texts(tok: Any, texts: list[str], max_length: int | None = None) -> list[dict]:
    """:func:`tokenize_text` of several texts, encoded in one call (the tokenizer's batch: the same ids)."""
    eos = getattr(tok, "eos_token_id", None)
    out = []
    for ids in tok(texts, add_special_tokens=True)["input_ids"] if texts else []:
        ids = list(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        ids, labels, cut = _truncate(ids, list(ids), max_length)
        out.append({"input_ids": ids, "labels": labels, "truncated": cut})
    return out


def tokenize_row(tokenizer: Any, row: dict, stage: str | None = None, max_length: int | None = None) -> dict:
    """``{"input_ids", "labels", "truncated"}`` for one canonical row (see the module doc)."""
    if "text" in row:
        return tokenize_text(tokenizer, row["text"], max_length)
    tools = _tools(row)
    out = tokenize_messages(tokenizer, as_messages(row), max_length, tools)
    if "rejected" in row and "prompt" in row:
        rej = tokenize_messages(tokenizer, row["prompt"] + row["rejected"], max_length, tools)
        out["rejected"] = rej
    return out


def render_preview(tokenizer: Any, ids: list[int], labels: list[int]) -> list[dict]:
    """Consecutive runs of tokens as ``[{"text", "trained"}]`` — the conversation the model sees."""
    segs: list[dict] = []
    run: list[int] = []
    cur: bool | None = None
    for tid, lab in zip(ids, labels):
        t = lab != IGNORE
        if cur is not None and t != cur:
            segs.append({"text": tokenizer.decode(run, skip_special_tokens=False), "trained": cur})
            run = []
        run.append(tid)
        cur = t
    if run:
        segs.append({"text": tokenizer.decode(run, skip_special_tokens=False), "trained": bool(cur)})
    return segs


def local_tokenizer(model: str) -> str | None:
    """The model to read token lengths with, when that costs no download and no build: the tiny
    model once built, or a local folder with tokenizer files; None otherwise."""
    from pathlib import Path

    from engine.schema import TINY_MODELS

    if model.strip() in TINY_MODELS:
        try:
            from engine import tiny

            return model if tiny._is_built(tiny.tiny_model_dir(model.strip())) else None
        except Exception:  # noqa: BLE001 - token lengths are optional
            return None
    d = Path(model).expanduser()
    if d.is_dir() and any((d / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return str(d)
    try:  # a Hub name already in this machine's cache loads offline
        from engine.hub import cached_models, is_hub_name

        if is_hub_name(model) and model.strip() in cached_models():
            return model.strip()
    except Exception:  # noqa: BLE001 - token lengths are optional
        return None
    return None

"""What the loss trains on, before launch: the first rows rendered exactly as the worker renders them.

The worker builds ``input_ids`` / ``labels`` with :func:`engine.data.tokenize.tokenize_row` (pre-tokenized
for SFT / pre-training by ``engine.train.trainers.tokenize_lm``) on a tokenizer prepared by
:func:`engine.data.tokenize.prepare_tokenizer` (ChatML when the tokenizer has no chat template).  This
module runs the same two functions and reads the result back: per row, the spans of trained and masked
(prompt) tokens, the token count of each part, and the problems that make a row teach nothing or teach
the wrong thing:

* the tokenizer has no chat template (and finetui falls back to ChatML);
* ``max_sequence_length`` cuts the answer (and how many rows lose their whole answer: the worker drops
  those rows);
* a row has no trained token at all;
* the end-of-turn marker is missing from the trained span (the model never learns to stop);
* a BOS token twice at the start.

Imports nothing heavy at module level; :func:`preview` loads transformers when called (the TUI runs it in
a child process: ``finetui data check --preview N --json``).
"""

from __future__ import annotations

from typing import Any, Callable

from engine.data.tokenize import IGNORE, render_preview, tokenize_row

PROBE_USER = "Say the probe."
PROBE_ANSWER = "PROBE-ANSWER-7431"


def end_of_turn(tok: Any) -> str | None:
    """The text the chat template puts right after an assistant turn's content (``<|im_end|>``,
    ``<|eot_id|>``, ``</s>``…); None when it puts nothing there (the model is never shown where to stop)."""
    from engine.data.tokenize import _render

    msgs = [{"role": "user", "content": PROBE_USER}, {"role": "assistant", "content": PROBE_ANSWER}]
    try:
        full = _render(tok, msgs, False, None)
    except Exception:  # noqa: BLE001 - a template that cannot render is reported by the rows themselves
        return None
    at = full.find(PROBE_ANSWER)
    if at < 0:
        return None
    rest = full[at + len(PROBE_ANSWER):].lstrip(" \t")
    marker = rest.split("\n", 1)[0].strip()
    if marker:
        return marker
    eos = getattr(tok, "eos_token", None)
    return None if not eos else (eos if rest.startswith(eos) else None)


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive trained tokens."""
    out, start = [], None
    for i, lab in enumerate(labels + [IGNORE]):
        if lab != IGNORE and start is None:
            start = i
        elif lab == IGNORE and start is not None:
            out.append((start, i))
            start = None
    return out


def inspect_row(tok: Any, row: dict, stage: str | None, max_length: int | None, eot: str | None) -> dict:
    """One canonical row through the worker's tokenization: segments, counts, problems."""
    full = tokenize_row(tok, row, stage, None)
    cut = tokenize_row(tok, row, stage, max_length)
    ids, labels = cut["input_ids"], cut["labels"]
    pretrain = "text" in row
    trained_before = sum(1 for x in full["labels"] if x != IGNORE)
    trained = sum(1 for x in labels if x != IGNORE)
    segs = render_preview(tok, ids, labels)
    # token counts per segment (render_preview decodes runs of equal trained-ness)
    sizes, cur, n = [], None, 0
    for lab in labels:
        t = lab != IGNORE
        if cur is not None and t != cur:
            sizes.append(n)
            n = 0
        n += 1
        cur = t
    if n:
        sizes.append(n)
    for s, k in zip(segs, sizes):
        s["tokens"] = k
    problems: list[str] = []
    if trained == 0:
        if trained_before:
            problems.append(f"max_sequence_length {max_length} cuts the whole answer "
                            f"({trained_before} trained tokens): this row teaches nothing and is dropped")
        else:
            problems.append("no trained token: the row has no assistant answer to learn; it is dropped")
    elif trained < trained_before:
        problems.append(f"max_sequence_length {max_length} cuts the answer: {trained_before - trained} of "
                        f"{trained_before} trained tokens lost")
    if not pretrain and eot and trained:
        runs = _runs(labels)
        missing = 0
        for a, b in runs:
            if b == len(labels) and cut["truncated"]:
                continue  # cut off: already said
            text = tok.decode(ids[a:b], skip_special_tokens=False).rstrip()
            if not text.endswith(eot):
                missing += 1
        if missing:
            problems.append(f"the end-of-turn marker {eot} is not in the trained span of {missing} answer"
                            f"{'s' if missing != 1 else ''}: the model does not learn to stop")
    bos = getattr(tok, "bos_token_id", None)
    if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        problems.append(f"BOS {tok.bos_token} twice at the start: the text (or the template) has one and "
                        "the tokenizer adds another")
    return {"segments": segs, "tokens": len(ids), "trained_tokens": trained,
            "prompt_tokens": len(ids) - trained, "truncated": cut["truncated"],
            "answer_tokens": trained_before, "answer_lost": trained_before - trained, "problems": problems}


def inspect_rows(tok: Any, rows: list[tuple[str, dict]], stage: str | None, max_length: int | None,
                 fallback: str | None = None) -> dict:
    """``rows`` as ``(location, canonical row)``; the preview of each and what is wrong, as a dict:
    ``rows`` (per row: location, segments with ``text``/``trained``/``tokens``, token counts, problems),
    ``end_of_turn``, ``chat_template``, ``fallback`` and ``problems`` (one line each, counted over the rows)."""
    from engine.data.errors import DataError

    eot = None if stage == "pretrain" else end_of_turn(tok)
    out: list[dict] = []
    problems: list[str] = []
    errors: list[str] = []
    for loc, row in rows:
        try:
            r = inspect_row(tok, row, stage, max_length, eot)
        except DataError as e:
            errors.append(f"{loc}: {e}")
            continue
        r["location"] = loc
        out.append(r)
    if fallback:
        problems.append(fallback)
    elif stage != "pretrain" and not eot and any("text" not in r for _, r in rows):
        problems.append("the chat template puts no end-of-turn marker after an answer: the model does not "
                        "learn to stop")
    n = len(out)
    whole = sum(1 for r in out if r["answer_lost"] and not r["trained_tokens"])
    cut = sum(1 for r in out if r["truncated"])
    if cut:
        problems.append(f"{cut} of {n} rows are cut by max_sequence_length {max_length}; {whole} of them lose "
                        f"their whole answer")
    empty = sum(1 for r in out if not r["answer_tokens"])
    if empty:
        problems.append(f"{empty} of {n} rows have no trained token")
    for kind, word in (("end-of-turn marker", "lack the end-of-turn marker in the trained span"),
                       ("BOS", "start with BOS twice")):
        k = sum(1 for r in out if any(kind in p for p in r["problems"]))
        if k:
            problems.append(f"{k} of {n} rows {word}")
    note = None
    if stage in ("dpo", "kto", "reward"):  # (only pre-training and SFT rows are pre-tokenized by finetui)
        note = (f"{stage} rows are tokenized by TRL's trainer itself, through the same chat template: shown is the "
                "prompt (masked) and the chosen answer")
    return {"rows": out, "end_of_turn": eot, "chat_template": bool(getattr(tok, "chat_template", None)),
            "fallback": fallback, "problems": problems + errors, "note": note,
            "rows_cut": cut, "rows_answer_lost": whole, "rows_no_trained": empty}


def first_canonical_rows(res: dict, n: int, secrets: dict | None = None) -> list[tuple[str, dict]]:
    """The first ``n`` valid rows of ``data.train_path`` as the worker's loader reads them."""
    from engine.data.loader import ScanCounts, open_sources, scan_all

    srcs = open_sources(str(res["data.train_path"]), res["data.format"], res["trainer.stage"], None, res, secrets)
    out: list[tuple[str, dict]] = []
    for loc, row in scan_all(srcs, ScanCounts(), materialize_images=False, stage=res["trainer.stage"]):
        out.append((loc, row))
        if len(out) >= n:
            break
    return out


def preview(res: dict, n: int = 3, secrets: dict | None = None, warn: Callable[[str], None] | None = None) -> dict:
    """The first ``n`` rows of the job's data through the job's tokenizer, as the worker renders them.

    Loads the tokenizer the way the worker does (``model.name_or_path``; ChatML when it has no chat
    template).  Imports transformers: call it from a worker thread or a child process, never the UI loop."""
    from engine.data.tokenize import load_tokenizer, prepare_tokenizer

    tok = load_tokenizer(str(res["model.name_or_path"]), bool(res.get("model.trust_remote_code")))
    fallback = prepare_tokenizer(tok, res["trainer.stage"], warn or (lambda _m: None))
    rows = first_canonical_rows(res, n, secrets)
    return inspect_rows(tok, rows, res["trainer.stage"], int(res["general.max_sequence_length"]), fallback)

"""Tokenize once: a job's tokenized rows cached on disk, memory-mapped by every rank and every later launch.

The cache key is a hash of what the tokens depend on: the canonical rows' content, the tokenizer (class, files'
vocabulary, special tokens, chat template — the ChatML fallback included, as the worker sets it), the stage,
the maximum length and the tokenizing code itself (engine/data/tokenize.py).  The entry lives in the host's
cache folder (``FINETUI_CACHE_DIR`` or ~/.cache/finetui, under ``tokenized/``) as a ``datasets`` Arrow folder.

Ranks on one host take a file lock in turn: the first tokenizes and writes the entry (to a temporary folder
renamed into place, so a killed launch leaves none half-written), the others wait on the lock and then
memory-map it; a second launch of the same job finds it and starts without tokenizing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.data.sources import cache_dir

#: bump when the entry's layout changes
LAYOUT = 1


def _tokenizer_id(tok: Any) -> dict:
    backend = getattr(tok, "backend_tokenizer", None)
    vocab = None
    if backend is not None:
        vocab = hashlib.sha256(backend.to_str().encode()).hexdigest()
    else:
        try:
            vocab = hashlib.sha256(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()
        except Exception:  # noqa: BLE001 — a tokenizer without a vocabulary listing: its name and size stand for it
            vocab = None
    return {"class": type(tok).__name__, "name": getattr(tok, "name_or_path", ""), "len": len(tok), "vocab": vocab,
            "special": {k: str(v) for k, v in sorted((getattr(tok, "special_tokens_map", None) or {}).items())},
            "template": getattr(tok, "chat_template", None)}


def cache_key(tok: Any, rows: list[dict], stage: str, max_len: int) -> str:
    """The entry's name: a hash of the rows' content, the tokenizer, the stage, the length and the tokenizing code."""
    h = hashlib.sha256()
    code = (Path(__file__).parent / "tokenize.py").read_bytes()
    h.update(json.dumps({"layout": LAYOUT, "stage": stage, "max_len": max_len, "tok": _tokenizer_id(tok),
                         "code": hashlib.sha256(code).hexdigest()}, sort_keys=True).encode())
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


#: rows tokenized between two looks at the clock; progress is said at most every PROGRESS_S seconds
CHUNK = 2000
PROGRESS_S = 2.0


def progress_text(done: int, total: int, seconds: float, what: str = "rows") -> str:
    """``12,000 / 100,000 rows · 3,400 rows/s · about 23 s left``."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = f" · about {(total - done) / rate:.0f} s left" if rate and total > done else ""
    return f"{done:,} / {total:,} {what} · {rate:,.0f} rows/s{eta}"


def _in_chunks(tok: Any, rows: list[dict], stage: str, max_len: int, tokenize: Callable, status: Callable,
               what: str) -> tuple[list[dict], int]:
    """``tokenize`` over ``rows`` a chunk at a time, saying its progress (phase "preparing data", with
    ``fraction``, rows/s and the seconds left) when it takes longer than :data:`PROGRESS_S`."""
    out: list[dict] = []
    trunc = 0
    t0 = last = time.perf_counter()
    for at in range(0, len(rows), CHUNK):
        part, n = tokenize(tok, rows[at:at + CHUNK], stage, max_len)
        out.extend(part)
        trunc += n
        now = time.perf_counter()
        done = min(len(rows), at + CHUNK)
        if now - last >= PROGRESS_S and done < len(rows):
            last = now
            status("preparing data", "tokenizing: " + progress_text(done, len(rows), now - t0, f"{what} rows"),
                   fraction=round(done / len(rows), 4), rows_done=done, rows_total=len(rows),
                   rows_per_s=round(done / (now - t0), 1))
    return out, trunc


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tokenized(tok: Any, rows: list[dict], stage: str, max_len: int,
              tokenize: Callable[[Any, list[dict], str, int], tuple[list[dict], int]],
              status: Callable[..., None], what: str = "training") -> tuple[Any, int]:
    """``tokenize(tok, rows, stage, max_len)`` → (tokenized rows, rows truncated), done once per key: a
    memory-mapped ``datasets.Dataset`` of the rows and the count.  ``status("tokenizing", text, **kw)`` says
    whether the rows were tokenized or the cache reused."""
    from datasets import Dataset, load_from_disk

    key = cache_key(tok, rows, stage, max_len)
    root = cache_dir() / "tokenized"
    entry = root / key
    with _locked(root / f"{key}.lock"):
        meta_file = entry / "meta.json"
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            status("tokenizing", f"reused cache: {meta['rows']} {what} rows tokenized before ({entry})",
                   cache="reused", cache_dir=str(entry), rows=meta["rows"])
            return (load_from_disk(str(entry / "data")) if meta["rows"] else []), int(meta["truncated"])
        t0 = time.perf_counter()
        out, trunc = _in_chunks(tok, rows, stage, max_len, tokenize, status, what)
        tmp = root / f"{key}.part{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if out:  # (no row left: nothing to map; the trainer says why)
            Dataset.from_list(out).save_to_disk(str(tmp / "data"))
        secs = time.perf_counter() - t0
        (tmp / "meta.json").write_text(json.dumps({"rows": len(out), "truncated": trunc, "seconds": round(secs, 3),
                                                   "stage": stage, "max_len": max_len}))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
        status("tokenizing", f"tokenized {len(rows)} {what} rows in {secs:.1f} s; cached in {entry}",
               cache="written", cache_dir=str(entry), rows=len(out))
        return (load_from_disk(str(entry / "data")) if out else []), trunc

"""Tokenize once: a job's tokenized rows cached on disk, memory-mapped by every rank and every later launch.

The cache key is a hash of what the tokens depend on: the canonical rows' content (their digest, computed while
they were counted: :class:`engine.data.loader.Rows`), the tokenizer (class, files' vocabulary, special tokens, chat
template — the ChatML fallback included, as the worker sets it), the stage, the maximum length and the tokenizing
code itself (engine/data/tokenize.py).  The entry lives in the host's cache folder (``FINETUI_CACHE_DIR`` or
~/.cache/finetui, under ``tokenized/``): ``data.arrow`` (an Arrow stream file, memory-mapped as a ``datasets``
Dataset) and ``meta.json``.

Bounded memory: the rows stream from their sources a chunk at a time, are tokenized by :func:`workers` processes
(``FINETUI_TOKENIZE_WORKERS``, default the host's cores up to 8; a few chunks in flight, results written in the
rows' order, so the file is the same whatever the count) and each chunk is appended to the Arrow file as it comes.

Ranks on one host take a file lock in turn: the first tokenizes and writes the entry (to a temporary folder
renamed into place, so a killed launch leaves none half-written), the others wait on the lock and then
memory-map it; a second launch of the same job finds it and starts without tokenizing.

The cache is bounded: after writing an entry, the least recently used others are removed until the folder holds
at most ``FINETUI_TOKENIZED_CACHE_GB`` (default 50) GiB; an entry in use (its lock held) is never removed.
``finetui cache list|clear`` shows and empties it (:func:`entries`, :func:`clear`).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from engine.data.sources import cache_dir

#: bump when the entry's layout changes
LAYOUT = 2
DATA_FILE = "data.arrow"
META_FILE = "meta.json"
DEFAULT_CAP_GB = 50.0


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


def cache_key(tok: Any, rows: Iterable[dict], stage: str, max_len: int) -> str:
    """The entry's name: a hash of the rows' content, the tokenizer, the stage, the length and the tokenizing code.
    Rows that carry their ``digest`` (:class:`engine.data.loader.Rows`) are not read for it."""
    from engine.data.loader import row_digest

    h = hashlib.sha256()
    code = (Path(__file__).parent / "tokenize.py").read_bytes()
    h.update(json.dumps({"layout": LAYOUT, "stage": stage, "max_len": max_len, "tok": _tokenizer_id(tok),
                         "code": hashlib.sha256(code).hexdigest()}, sort_keys=True).encode())
    digest = getattr(rows, "digest", None) or row_digest(rows).hexdigest()
    h.update(digest.encode())
    return h.hexdigest()[:32]


#: rows tokenized per task; progress is said at most every PROGRESS_S seconds
CHUNK = 1000
PROGRESS_S = 2.0
MAX_WORKERS = 8
#: rows per Arrow record batch of a cache file (or fewer, BATCH_BYTES): a mapped file's every batch costs the reader
#: ~2.5 KB of heap in each rank (24 MiB for 10M rows in batches of 1,000); the writer holds one batch at a time
BATCH_ROWS = 32768
BATCH_BYTES = 16 << 20


class _Batches:
    """Tables written to an Arrow stream as record batches of :data:`BATCH_ROWS` rows or :data:`BATCH_BYTES` bytes,
    whichever comes first (long rows: a batch of 32k rows of 4k tokens would hold 640 MB)."""

    def __init__(self, writer: Any):
        self.writer, self.held, self.rows, self.bytes = writer, [], 0, 0

    def write(self, table: Any) -> None:
        self.held.append(table)
        self.rows += table.num_rows
        self.bytes += table.nbytes
        if self.rows >= BATCH_ROWS or self.bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.held:
            self.writer.write_table(pa.concat_tables(self.held).combine_chunks(), max_chunksize=None)
            self.held, self.rows, self.bytes = [], 0, 0


def workers() -> int:
    """Processes that tokenize: ``FINETUI_TOKENIZE_WORKERS``, else this host's usable cores up to 8."""
    env = os.environ.get("FINETUI_TOKENIZE_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def progress_text(done: int, total: int, seconds: float, what: str = "rows") -> str:
    """``12,000 / 100,000 rows · 3,400 rows/s · about 23 s left``."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = f" · about {(total - done) / rate:.0f} s left" if rate and total > done else ""
    return f"{done:,} / {total:,} {what} · {rate:,.0f} rows/s{eta}"


def reading_text(rows: int, done: int, total: int, seconds: float) -> str:
    """``1,200,000 rows · 950,000 rows/s · about 3 s left``: rows read so far, and the time left by the bytes read
    (``done`` of ``total``) — the data check's and the first pass's progress."""
    parts = [f"{rows:,} rows"]
    if seconds > 0:
        parts.append(f"{rows / seconds:,.0f} rows/s")
        if total and 0 < done < total:
            parts.append(f"about {seconds * (total - done) / done:.0f} s left")
    return " · ".join(parts)


# -- tokenizing a chunk (in this process or a forked worker) ----------------------------------------------------

#: (tokenizer, tokenize, stage, max_len) of the tokenization under way: set before the workers fork
_JOB: tuple | None = None


def _arrow_ids(table: Any) -> Any:
    """Token columns as 32-bit lists (half the disk and page cache of Python's 64-bit default)."""
    import pyarrow as pa

    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_list(t) and (pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type)):
            t = pa.list_(pa.int32())
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields))


def _tokenize_chunk(rows: list[dict]) -> tuple[bytes | None, int, int]:
    """One chunk → (its tokenized rows as Arrow IPC bytes, None when no row is left; rows kept; rows truncated)."""
    import pyarrow as pa

    assert _JOB is not None
    tok, tokenize, stage, max_len = _JOB
    out, trunc = tokenize(tok, rows, stage, max_len)
    if not out:
        return None, 0, trunc
    table = _arrow_ids(pa.Table.from_pylist(out))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes(), len(out), trunc


def _worker_init() -> None:
    import signal

    # (the training worker blocks these in every thread and waits on them in one: a tokenizing child takes the
    # defaults, so the run's stop ends it)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(rows)
    while True:
        part = []
        for r in it:
            part.append(r)
            if len(part) >= size:
                break
        if not part:
            return
        yield part


def _tokenized_chunks(rows: Iterable[dict], n_workers: int) -> Iterator[tuple[int, bytes | None, int, int]]:
    """``(rows in the chunk, Arrow bytes, rows kept, rows truncated)`` in the rows' order: in this process, or by
    ``n_workers`` forked processes with at most two chunks each in flight (memory stays bounded)."""
    parts = chunks(rows, CHUNK)
    if n_workers <= 1:
        for part in parts:
            yield (len(part), *_tokenize_chunk(part))
        return
    import multiprocessing as mp

    pending: collections.deque = collections.deque()
    with mp.get_context("fork").Pool(n_workers, initializer=_worker_init) as pool:
        for part in parts:
            pending.append((len(part), pool.apply_async(_tokenize_chunk, (part,))))
            if len(pending) >= 2 * n_workers:
                n, res = pending.popleft()
                yield (n, *res.get())
        while pending:
            n, res = pending.popleft()
            yield (n, *res.get())


def _write(tok: Any, rows: Iterable[dict], n_rows: int, stage: str, max_len: int, tokenize: Callable,
           status: Callable, what: str, dest: Path) -> tuple[int, int]:
    """Tokenize ``rows`` into the Arrow stream file ``dest``, saying its progress (phase "preparing data", with
    ``fraction``, rows/s and the seconds left) when it takes longer than :data:`PROGRESS_S`.
    → (rows written, rows truncated)."""
    import pyarrow as pa

    global _JOB
    n_workers = workers() if n_rows > CHUNK else 1
    kept = trunc = done = 0
    writer = batches = schema = None
    t0 = last = time.perf_counter()
    _JOB = (tok, tokenize, stage, max_len)
    try:
        with open(dest, "wb") as fh:
            for n, data, k, t in _tokenized_chunks(rows, n_workers):
                done += n
                kept += k
                trunc += t
                if data is not None:
                    table = pa.ipc.open_stream(data).read_all()
                    if writer is None:
                        schema = table.schema
                        writer = pa.ipc.new_stream(fh, schema)
                        batches = _Batches(writer)
                    batches.write(table if table.schema == schema else table.cast(schema))
                now = time.perf_counter()
                if now - last >= PROGRESS_S and done < n_rows:
                    last = now
                    status("preparing data",
                           "tokenizing: " + progress_text(done, n_rows, now - t0, f"{what} rows"),
                           fraction=round(done / n_rows, 4), rows_done=done, rows_total=n_rows,
                           rows_per_s=round(done / (now - t0), 1), workers=n_workers)
            if writer is not None:
                batches.flush()
                writer.close()
    finally:
        _JOB = None
    return kept, trunc


# -- the cache folder -------------------------------------------------------------------------------------------

def root() -> Path:
    return cache_dir() / "tokenized"


@contextmanager
def _locked(path: Path, block: bool = True) -> Iterator[bool]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _size(p: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def entries() -> list[dict]:
    """The cached tokenizations, most recently used first: key, path, size in bytes, last use (unix time) and
    what ``meta.json`` says (rows, stage, max_len, source, tokenizer, seconds it took)."""
    out = []
    base = root()
    if not base.is_dir():
        return out
    for d in base.iterdir():
        meta_file = d / META_FILE
        if not d.is_dir() or ".part" in d.name or not meta_file.is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
            used = meta_file.stat().st_mtime
        except (OSError, ValueError):
            meta, used = {}, 0.0
        out.append({**meta, "key": d.name, "path": str(d), "bytes": _size(d), "last_used": used})
    out.sort(key=lambda e: -e["last_used"])
    return out


def _remove(key: str) -> bool:
    """Remove one entry unless a run holds it (its lock taken); True when removed."""
    base = root()
    with _locked(base / f"{key}.lock", block=False) as got:
        if not got:
            return False
        shutil.rmtree(base / key, ignore_errors=True)
    try:
        (base / f"{key}.lock").unlink()
    except OSError:
        pass
    return True


def clear(keys: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """Remove the given entries (all when ``keys`` is None) → (removed, kept because a run is using them).
    A key may be given by its first characters when they name one entry."""
    have = [e["key"] for e in entries()]
    if keys is None:
        wanted = have
    else:
        wanted = []
        for k in keys:
            match = [h for h in have if h.startswith(k)]
            if len(match) != 1:
                from engine.errors import FinetuiError

                why = "no cached tokenization" if not match else f"{len(match)} cached tokenizations"
                raise FinetuiError(f"cache key `{k}`: {why} start with it (see `finetui cache list`)")
            wanted.append(match[0])
    if keys is None:  # (and the remembered first passes: engine.data.loader)
        shutil.rmtree(cache_dir() / "passes", ignore_errors=True)
    removed, busy = [], []
    for k in wanted:
        (removed if _remove(k) else busy).append(k)
    return removed, busy


def cap_bytes() -> int:
    env = os.environ.get("FINETUI_TOKENIZED_CACHE_GB", "").strip()
    try:
        gb = float(env) if env else DEFAULT_CAP_GB
    except ValueError:
        gb = DEFAULT_CAP_GB
    return int(max(0.0, gb) * 2**30)


def evict(keep: str | None = None, cap: int | None = None) -> list[str]:
    """Remove the least recently used entries (never ``keep``, never one in use) until the cache holds at most
    ``cap`` bytes (:func:`cap_bytes`); → the keys removed."""
    cap = cap_bytes() if cap is None else cap
    es = entries()
    total = sum(e["bytes"] for e in es)
    removed = []
    for e in reversed(es):  # least recently used first
        if total <= cap:
            break
        if e["key"] == keep:
            continue
        if _remove(e["key"]):
            total -= e["bytes"]
            removed.append(e["key"])
    return removed


@contextmanager
def _entry_written(entry: Path) -> Iterator[Path]:
    """A temporary folder to write an entry in, renamed into place when the block ends (removed if it fails): a
    killed launch leaves no half-written entry."""
    tmp = entry.with_name(f"{entry.name}.part{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(entry: Path) -> Any:
    from datasets import Dataset

    return Dataset.from_file(str(entry / DATA_FILE))  # (memory-mapped)


def tokenized(tok: Any, rows: Iterable[dict], stage: str, max_len: int,
              tokenize: Callable[[Any, list[dict], str, int], tuple[list[dict], int]],
              status: Callable[..., None], what: str = "training") -> tuple[Any, int]:
    """``tokenize(tok, rows, stage, max_len)`` → (tokenized rows, rows truncated), done once per key: a
    memory-mapped ``datasets.Dataset`` of the rows and the count.  ``rows`` is a list or
    :class:`engine.data.loader.Rows` (streamed from its sources, a chunk at a time).  ``status("tokenizing", text,
    **kw)`` says whether the rows were tokenized or the cache reused."""
    key = cache_key(tok, rows, stage, max_len)
    base = root()
    entry = base / key
    n_rows = len(rows)  # type: ignore[arg-type]
    with _locked(base / f"{key}.lock"):
        meta_file = entry / META_FILE
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            os.utime(meta_file)  # (last use: what eviction goes by)
            status("tokenizing", f"reused cache: {meta['rows']} {what} rows tokenized before ({entry})",
                   cache="reused", cache_dir=str(entry), rows=meta["rows"])
            return (_load(entry) if meta["rows"] else []), int(meta["truncated"])
        t0 = time.perf_counter()
        with _entry_written(entry) as tmp:
            kept, trunc = _write(tok, rows, n_rows, stage, max_len, tokenize, status, what, tmp / DATA_FILE)
            secs = time.perf_counter() - t0
            (tmp / META_FILE).write_text(json.dumps({
                "rows": kept, "rows_in": n_rows, "truncated": trunc, "seconds": round(secs, 3), "stage": stage,
                "max_len": max_len, "what": what, "source": getattr(rows, "display", ""),
                "tokenizer": str(getattr(tok, "name_or_path", "")), "created": time.time()}))
        status("tokenizing", f"tokenized {n_rows} {what} rows in {secs:.1f} s; cached in {entry}",
               cache="written", cache_dir=str(entry), rows=kept)
        gone = evict(keep=key)
        if gone:
            status("tokenizing", f"cache over {cap_bytes() / 2**30:g} GiB: removed {len(gone)} least recently "
                   "used tokenization(s)", cache_evicted=len(gone))
        return (_load(entry) if kept else []), trunc  # (mapped while locked: no eviction elsewhere between)


def derived(ds: Any, name: str, build: Callable[[Any, Path], Any]) -> tuple[Any, Any]:
    """A file made from a cached entry (its rows packed, say), made once under the entry's lock by
    ``build(ds, path)`` → (the memory-mapped Dataset of that file, what ``build`` returned or None when reused)."""
    from datasets import Dataset

    entry = Path(ds.cache_files[0]["filename"]).parent
    with _locked(root() / f"{entry.name}.lock"):
        f = entry / name
        made = None
        if not f.is_file():
            tmp = entry / f"{name}.part{os.getpid()}"
            try:
                made = build(ds, tmp)
                os.replace(tmp, f)
            finally:
                tmp.unlink(missing_ok=True)
        return Dataset.from_file(str(f)), made


def arrow_rows(rows: Any, keys: tuple[str, ...] | None, transform: Callable[[Iterable[dict]], Iterable[dict]] | None,
               what: str, status: Callable[..., None]) -> Any:
    """Canonical rows (:class:`engine.data.loader.Rows`, streamed) as a memory-mapped ``datasets.Dataset``, for the
    trainers that tokenize themselves (DPO, KTO, reward, images): written once per content to an Arrow file in the
    cache, a chunk at a time — the columns of ``Dataset.from_list`` (the first row's keys, or ``keys``; each
    column's type unified over every row) without the list.  ``transform`` (unpairing) applies to the stream."""
    import pyarrow as pa

    tname = getattr(transform, "__name__", "") if transform else ""
    key = hashlib.sha256(json.dumps({"layout": LAYOUT, "rows": rows.digest, "keys": keys, "transform": tname},
                                    sort_keys=True).encode()).hexdigest()[:32]
    base = root()
    entry = base / f"rows-{key}"

    def stream() -> Iterator[dict]:
        src = transform(rows) if transform else rows
        cols = keys
        for r in src:
            if cols is None:
                cols = tuple(r)  # (as Dataset.from_list: the first row's keys)
            yield {k: r.get(k) for k in cols}

    with _locked(base / f"rows-{key}.lock"):
        meta_file = entry / META_FILE
        if meta_file.is_file():
            os.utime(meta_file)
            return _load(entry)
        schema = None
        for part in chunks(stream(), CHUNK):  # the columns' types over every row, as one table would infer them
            s = pa.Table.from_pylist(part).schema
            schema = s if schema is None else pa.unify_schemas([schema, s], promote_options="permissive")
        if schema is None:
            return None
        n = 0
        with _entry_written(entry) as tmp:
            with open(tmp / DATA_FILE, "wb") as fh, pa.ipc.new_stream(fh, schema) as w:
                batches = _Batches(w)
                for part in chunks(stream(), CHUNK):
                    batches.write(pa.Table.from_pylist(part, schema=schema))
                    n += len(part)
                batches.flush()
            (tmp / META_FILE).write_text(json.dumps({"rows": n, "stage": "rows", "what": what, "created": time.time(),
                                                     "source": getattr(rows, "display", "")}))
        status("tokenizing", f"{n} {what} rows written to {entry} (memory-mapped; the trainer tokenizes them)",
               rows_file=str(entry), rows=n)
        evict(keep=entry.name)
        return _load(entry)

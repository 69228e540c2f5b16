"""Load a job's data: canonical rows, invalid rows dropped within the allowed share, a split.

``stream_rows(res, secrets)`` is the contract the training worker uses (rows counted and hashed in a first pass,
read again from the sources when they are tokenized: never all in memory); ``load_rows`` gives them as lists;
``scan`` is the streaming core shared with the data check.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

from engine.schema import FORMATS, FORMATS_BY_STAGE
from engine.data.errors import DataError, RowError
from engine.data.formats import normalizer
from engine.data.sources import Source, open_source
from engine.datapaths import sources
from engine.errors import FinetuiError

MAX_LISTED_INVALID = 50


@dataclass
class Invalid:
    location: str  # file:line
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.field + ': ' if self.field else ''}{self.reason}"

    def as_dict(self) -> dict:
        file, _, line = self.location.rpartition(":")
        return {"location": self.location, "file": file, "line": int(line) if line.isdigit() else None,
                "field": self.field, "reason": self.reason}


@dataclass
class ScanCounts:
    total: int = 0
    valid: int = 0
    invalid: int = 0
    listed: list[Invalid] = field(default_factory=list)

    def add_invalid(self, loc: str, e: RowError) -> None:
        """One more row, invalid: the first :data:`MAX_LISTED_INVALID` are listed."""
        self.total += 1
        self.invalid += 1
        if len(self.listed) < MAX_LISTED_INVALID:
            self.listed.append(Invalid(loc, e.field, e.reason))

    @property
    def invalid_pct(self) -> float:
        return 100.0 * self.invalid / self.total if self.total else 0.0


@dataclass
class LoadedData:
    train: Any  # list[dict] (load_rows) or Rows (stream_rows)
    eval: Any
    dropped: int
    report: dict


def allowed_formats(stage: str, profile: str | None = None) -> tuple[str, ...]:
    if profile:
        try:
            from engine.schema import profiles as P

            return tuple(P.get(profile).formats_by_stage.get(stage, FORMATS_BY_STAGE.get(stage, ())))
        except FinetuiError:  # an unknown profile (validation names it): the schema's formats
            pass
    return FORMATS_BY_STAGE.get(stage, ())


def check_compat(fmt: str, stage: str | None, profile: str | None = None) -> str | None:
    """None when the format can train the stage; else one line naming the allowed formats."""
    if fmt not in FORMATS:
        return f"data.format: unknown format `{fmt}` (allowed: {', '.join(FORMATS)})"
    if not stage:
        return None
    allowed = allowed_formats(stage, profile)
    if fmt not in allowed:
        return f"data.format: {fmt} data cannot train the {stage} trainer (allowed: {', '.join(allowed)})"
    return None


def scan(source: Source, fmt: str, counts: ScanCounts, *, materialize_images: bool = True,
         limit_valid: int | None = None, stage: str | None = None) -> Iterator[tuple[str, dict]]:
    """Stream ``(location, canonical row)`` for valid rows, counting invalid ones in ``counts``; ``stage`` decides
    how some formats read (sharegpt for DPO: conversations with chosen / rejected replies)."""
    norm = normalizer(fmt, stage)

    def lookup(ref: str) -> Optional[str]:
        return source.image(ref, materialize_images)

    lookup.where = source.missing_image  # type: ignore[attr-defined]

    for loc, obj in source.records():
        try:
            if isinstance(obj, RowError):
                raise obj
            row = norm(obj, lookup)
        except RowError as e:
            counts.add_invalid(loc, e)
            continue
        counts.total += 1
        counts.valid += 1
        yield loc, row
        if limit_valid is not None and counts.valid >= limit_valid:
            return


def threshold_error(display: str, counts: ScanCounts, allowed_pct: float) -> str | None:
    if counts.total == 0:
        return f"{display}: no rows"
    if counts.valid == 0:
        first = f"; first: {counts.listed[0]}" if counts.listed else ""
        return f"{display}: no valid rows ({counts.invalid} invalid){first}"
    if counts.invalid_pct > (allowed_pct or 0.0) + 1e-12:
        first = f"; first: {counts.listed[0]}" if counts.listed else ""
        return (f"{display}: {counts.invalid} of {counts.total} rows invalid ({counts.invalid_pct:.2f}%, "
                f"allowed {allowed_pct or 0:g}%){first}")
    return None


def open_sources(path: str, fmt: str, stage: str | None, profile: str | None, res: dict | None,
                 secrets: dict | None) -> list[tuple[Source, str]]:
    """Each source of a data path (``a.json,b.json#sharegpt``) with the format its rows are read in (its own,
    else ``fmt``).  Raises :class:`DataError` for a source whose own format cannot train ``stage``."""
    out = []
    for p, f in sources(path, fmt):
        msg = check_compat(f, stage, profile) if f != fmt else None
        if msg:
            raise DataError(f"{p}#{f}: {msg.split(': ', 1)[1]}")
        out.append((open_source(p, res, secrets), f))
    return out


def scan_all(srcs: list[tuple[Source, str]], counts: ScanCounts, *, materialize_images: bool = True,
             limit_valid: int | None = None, stage: str | None = None) -> Iterator[tuple[str, dict]]:
    """:func:`scan` over several sources in turn, one count, ``limit_valid`` rows in all."""
    for src, f in srcs:
        if limit_valid is not None and counts.valid >= limit_valid:
            return
        yield from scan(src, f, counts, materialize_images=materialize_images, limit_valid=limit_valid, stage=stage)


class Rows:
    """A part of the job's rows (training or validation) read afresh from its sources each time it is iterated:
    its length and content digest are known (from a first pass), its rows are never all in memory at once.
    ``rows[:k]`` gives the first ``k`` as a list."""

    def __init__(self, make: Callable[[], Iterator[dict]], n: int, digest: str, display: str = ""):
        self._make = make
        self.n = n
        self.digest = digest  # the rows' content: what a cache of their tokens is keyed on
        self.display = display

    def __iter__(self) -> Iterator[dict]:
        seen = 0
        for r in self._make():
            seen += 1
            yield r
        if seen != self.n:
            raise DataError(f"{self.display or 'the data'}: the data changed while it was read ({self.n} rows "
                            f"counted, {seen} read); start the run again")

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def __getitem__(self, k: slice) -> list[dict]:
        if not isinstance(k, slice) or k.step not in (None, 1) or (k.start or 0) < 0 or (k.stop or 0) < 0:
            raise TypeError("Rows: only a forward slice (rows[a:b]) is supported")
        return list(itertools.islice(self._make(), k.start or 0, k.stop))


def row_digest(rows: Iterable[dict], h: Any = None) -> Any:
    """A running sha256 over canonical rows (their JSON, keys sorted): what a row list's content is keyed on."""
    h = h or hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h


def keys_digest(srcs: list[tuple[Source, str]], counts: ScanCounts, stage: str | None,
                progress: Callable[[int, int, int], None] | None = None) -> str | None:
    """The first pass on the data check's Arrow path, when every source is a JSON-lines file of a format it reads
    (else None, nothing read): ``counts`` counted, and a sha256 over each part's canonical row keys (the check's
    duplicate keys, ``arrowscan.row_key``, each ``arrowscan.padded``) and their line numbers — file order and
    content, as the row reader's digest, without a Python row per line."""
    import numpy as np

    from engine.data import arrowscan

    fast = arrowscan.fast_paths(srcs, stage)
    if not fast or not all(fast):
        return None
    h = hashlib.sha256(b"finetui keys digest 3\0")
    total = sum(arrowscan.source_bytes(fs) for files in fast for fs in files)
    done = [0]

    def advance(n: int) -> None:  # (``progress(rows, bytes read, bytes in all)`` after each block)
        done[0] += n
        if progress is not None:
            progress(counts.total, done[0], total)

    for files, (_, f) in zip(fast, srcs):
        for fs in files:
            h.update(f"{fs.display}\0".encode())
            for part in arrowscan.counted(fs, f, counts, advance=advance):
                if isinstance(part, list):
                    for _, row in part:
                        h.update(arrowscan.padded(arrowscan.row_key(row)))
                    h.update(np.array([int(loc.rsplit(":", 1)[1]) for loc, _ in part], dtype=np.int64).tobytes())
                else:
                    part.digest_into(h)
    return h.hexdigest()


def _local_files(srcs: list[tuple[Source, str]]) -> list | None:
    """The plain local files behind ``srcs``, or None when any part is something else (an archive, an S3 object)."""
    from engine.data.sources import plain_files

    out = []
    for src, _ in srcs:
        parts = plain_files(src)
        if parts is None:
            return None
        out += [p.path for p in parts]
    return out


#: bump when what a first pass records changes (2: the digest of the Arrow path's keys, keys_digest; 3: those keys
#: as binary marks, arrowscan.row_key; 4: padded to whole words, arrowscan.padded)
_PASS_LAYOUT = 4


def _pass_key(files: list, srcs: list[tuple[Source, str]], stage: str | None, profile: str | None,
              limit: int | None) -> str | None:
    """A first pass's memo key: the files' bytes (sha256, about 1 s a GB), how they are read (format, stage,
    profile, row limit) and the reading code; None when a file cannot be read (the pass itself says why)."""
    from pathlib import Path

    h = hashlib.sha256()
    here = Path(__file__).parent
    code = hashlib.sha256()
    for name in ("loader.py", "formats.py", "sources.py", "arrowscan.py"):
        code.update((here / name).read_bytes())
    h.update(json.dumps({"layout": _PASS_LAYOUT, "formats": [f for _, f in srcs], "stage": stage,
                         "profile": profile, "limit": limit, "code": code.hexdigest()}, sort_keys=True).encode())
    try:
        for f in files:
            with open(f, "rb") as fh:
                h.update(f"{Path(f).resolve()}\0".encode())
                h.update(hashlib.file_digest(fh, "sha256").digest())
    except OSError:
        return None
    return h.hexdigest()[:32]


def _pass_memo(key: str):
    from engine.data.sources import cache_dir

    return cache_dir() / "passes" / f"{key}.json"


def _first_pass(path: str, res: dict, secrets: dict | None, fmt: str, limit: int | None,
                progress: Callable[[int, int, int], None] | None = None
                ) -> tuple[Callable[[], Iterator[dict]], ScanCounts, str, str]:
    """Count and hash a data path's rows without keeping them; raises the threshold's :class:`DataError`.
    → (a function streaming the rows again, the counts, the sources' display, the rows' digest).

    A pass over local files is remembered in the host cache (``passes/``), keyed on the files' bytes: a second
    launch of the same job hashes the files instead of reading every row — 1 s a GB instead of about a minute
    for 10M rows.  Rows that name images are not remembered (an image file can change or go without the data
    file changing)."""
    from engine.safeio import atomic_write

    stage = res.get("trainer.stage")
    srcs = open_sources(path, fmt, stage, res.get("profile"), res, secrets)
    display = ", ".join(s.display for s, _ in srcs)
    files = _local_files(srcs)
    key = _pass_key(files, srcs, stage, res.get("profile"), limit) if files else None
    counts = ScanCounts()
    digest = None
    if key is not None:
        try:
            memo = json.loads(_pass_memo(key).read_text())
            counts = ScanCounts(memo["total"], memo["valid"], memo["invalid"],
                                [Invalid(**i) for i in memo["listed"]])
            digest = memo["digest"]
        except (OSError, ValueError, KeyError, TypeError):
            counts = ScanCounts()
    if digest is None:
        images: list = []
        digest = keys_digest(srcs, counts, stage, progress) if limit is None else None
        if digest is None:  # (not every source on the Arrow path, or a row limit: row by row)
            def tap(rows: Iterator[tuple[str, dict]]) -> Iterator[dict]:
                for _, r in rows:
                    if not images and (r.get("images") or r.get("image")):
                        images.append(True)
                    yield r

            digest = row_digest(tap(scan_all(srcs, counts, limit_valid=limit, stage=stage))).hexdigest()
        if key is not None and not images:
            memo = {"total": counts.total, "valid": counts.valid, "invalid": counts.invalid, "digest": digest,
                    "listed": [asdict(i) for i in counts.listed]}
            try:
                _pass_memo(key).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(_pass_memo(key), json.dumps(memo))
            except OSError:  # (a read-only cache: the next launch reads the rows again)
                pass
    msg = threshold_error(display, counts, float(res.get("data.allow_percentage_invalid_samples") or 0.0))
    if msg:
        raise DataError(msg)

    def again() -> Iterator[dict]:
        return (r for _, r in scan_all(srcs, ScanCounts(), limit_valid=limit, stage=stage))

    return again, counts, display, digest


def held_out(n: int, val_size: float, seed: int) -> bytearray:
    """Which of ``n`` rows are held out for validation (1) — ``round(n × val_size)`` of them (at least one),
    chosen by the seed: the same rows :func:`split_rows` holds out, at 9 bytes a row while it is chosen."""
    k = max(1, int(round(n * val_size)))
    if k >= n:
        raise DataError(f"data.val_size: {val_size:g} of {n} rows leaves no training rows")
    idx = array("q", range(n))
    random.Random(seed).shuffle(idx)  # (the same draws as shuffling a list: the same permutation)
    held = bytearray(n)
    for i in idx[:k]:
        held[i] = 1
    return held


def split_rows(rows: list[dict], val_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic hold-out: ``round(n × val_size)`` rows (at least one) chosen by the seed."""
    held = held_out(len(rows), val_size, seed)
    return [r for i, r in enumerate(rows) if not held[i]], [r for i, r in enumerate(rows) if held[i]]


def unpair(rows: Iterable[dict]) -> Iterator[dict]:
    """Preference rows → KTO rows: chosen with label true, rejected with label false."""
    for r in rows:
        yield {"prompt": r["prompt"], "completion": r["chosen"], "label": True}
        yield {"prompt": r["prompt"], "completion": r["rejected"], "label": False}


def _derived(base: Callable[[], Iterator[dict]], how: Callable[[Iterator[dict]], Iterator[dict]]
             ) -> Callable[[], Iterator[dict]]:
    return lambda: how(base())


def stream_rows(res: dict, secrets: dict | None = None,
                progress: Callable[[int, int, int], None] | None = None) -> LoadedData:
    """The job's training (and evaluation) rows as :class:`Rows`: counted, checked against the allowed share of
    invalid rows and hashed in a first pass, then read again from the sources whenever they are iterated — the
    training worker's path, whose memory does not grow with the corpus.  ``progress(rows, bytes read, bytes in
    all)`` is called as a first pass on the Arrow path reads its files.  Raises :class:`DataError`."""
    fmt = res.get("data.format") or "alpaca"
    stage = res.get("trainer.stage")
    msg = check_compat(fmt, stage, res.get("profile"))
    if msg:
        raise DataError(msg)
    path = str(res.get("data.train_path") or "").strip()
    if not path:
        raise DataError("data.train_path: no training data set")
    limit = res.get("data.max_samples")
    again, counts, display, digest = _first_pass(path, res, secrets, fmt, limit, progress)
    train = Rows(again, counts.valid, digest, display)
    report: dict[str, Any] = {
        "train": {"source": display, "total": counts.total, "valid": counts.valid, "invalid": counts.invalid,
                  "invalid_pct": round(counts.invalid_pct, 4),
                  "invalid_rows": [i.as_dict() for i in counts.listed]},
        "format": fmt, "stage": stage,
    }
    dropped = counts.invalid
    eval_rows: Rows | None = None
    vpath = str(res.get("data.validation_path") or "").strip()
    if vpath:
        vagain, vcounts, vdisplay, vdigest = _first_pass(vpath, res, secrets, fmt, None, progress)
        eval_rows = Rows(vagain, vcounts.valid, vdigest, vdisplay)
        dropped += vcounts.invalid
        report["eval"] = {"source": vdisplay, "total": vcounts.total, "valid": vcounts.valid,
                          "invalid": vcounts.invalid, "invalid_rows": [i.as_dict() for i in vcounts.listed]}
    elif float(res.get("data.val_size") or 0.0) > 0:
        val_size, seed = float(res["data.val_size"]), int(res.get("runtime.seed") or 0)
        held = held_out(train.n, val_size, seed)
        k = sum(held)
        part = f"{digest}:val_size={val_size!r}:seed={seed}"
        keep = lambda want: lambda rows: (r for i, r in enumerate(rows) if held[i] == want)  # noqa: E731
        eval_rows = Rows(_derived(again, keep(1)), k, hashlib.sha256(f"{part}:held".encode()).hexdigest(), display)
        train = Rows(_derived(again, keep(0)), train.n - k, hashlib.sha256(f"{part}:train".encode()).hexdigest(),
                     display)
        report["eval"] = {"source": f"{display} (held out {k} rows, val_size "
                                    f"{res['data.val_size']:g}, seed {res.get('runtime.seed')})",
                          "valid": k}
    if stage == "kto" and fmt == "preference":
        # KTO learns from unpaired feedback: each pair gives a desirable and an undesirable row
        un = lambda r: Rows(_derived(r._make, unpair), 2 * r.n, hashlib.sha256(  # noqa: E731
            f"{r.digest}:unpaired".encode()).hexdigest(), r.display)
        train = un(train)
        eval_rows = un(eval_rows) if eval_rows is not None else None
        report["unpaired"] = True
    report["dropped"] = dropped
    report["train_rows"] = len(train)
    report["eval_rows"] = len(eval_rows) if eval_rows is not None else 0
    return LoadedData(train=train, eval=eval_rows, dropped=dropped, report=report)


def load_rows(res: dict, secrets: dict | None = None) -> LoadedData:
    """The job's training (and evaluation) rows in canonical form, as lists (:func:`stream_rows` keeps them on
    disk).  Raises :class:`DataError`."""
    d = stream_rows(res, secrets)
    return LoadedData(train=list(d.train), eval=list(d.eval) if d.eval is not None else None, dropped=d.dropped,
                      report=d.report)


class PreflightError(DataError):
    """The data files of a job that fail the fast data check; one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(errors[0] if errors else "")

    def lines(self) -> list[str]:
        return list(self.errors)


def count_rows(src: Source, fmt: str, counts: "ScanCounts", stage: str | None) -> None:
    """Every row of ``src`` read and counted (valid / invalid, with the invalid rows' ``file:line``), no row kept:
    JSON-lines files of the corpus and alpaca formats through the data check's Arrow path, about 7× faster than
    the row-by-row reader, which reads the others."""
    from engine.data import arrowscan

    files = arrowscan.fast_paths([(src, fmt)], stage)[0]
    if files is None:
        for _ in scan(src, fmt, counts, materialize_images=False, stage=stage):
            pass
        return
    for fs in files:
        for _ in arrowscan.counted(fs, fmt, counts, keyed=False):  # (counted only: no row keys made)
            pass


def check_data_before_launch(res: dict) -> list[str]:
    """:func:`preflight` for a job about to start; raises :class:`PreflightError`, else returns the notes."""
    from engine.schema import is_remote_job

    errors, notes = preflight(res, remote=is_remote_job(res))
    if errors:
        raise PreflightError(errors)
    return notes


def preflight(res: dict, *, remote: bool = False) -> tuple[list[str], list[str]]:
    """The fast data check a job gets before anything of its run exists: every local data file exists and its
    rows parse (no tokenizer, no images copied).  → (errors, notes): each error one line naming ``file:line``;
    notes say what was not checked here — S3 objects, and for a job on another host the paths that are not on
    this machine (the run reads them in place there)."""
    errors: list[str] = []
    notes: list[str] = []
    fmt = str(res.get("data.format") or "alpaca")
    allowed = float(res.get("data.allow_percentage_invalid_samples") or 0.0)
    for field_name in ("data.train_path", "data.validation_path"):
        for path, f in sources(res.get(field_name), fmt):
            if path.startswith("s3://"):
                notes.append(f"{field_name}: {path} is on S3; its rows are checked when the run reads them")
                continue
            if remote and not path.startswith("finetui:"):
                from engine.userfiles import exists

                if not exists(path):
                    notes.append(f"{field_name}: {path} is not on this machine; the run reads it on the remote host")
                    continue
            counts = ScanCounts()
            try:
                src = open_source(path)
                count_rows(src, f, counts, res.get("trainer.stage"))
            except DataError as e:
                errors.append(str(e))
                continue
            msg = threshold_error(src.display, counts, allowed)
            if msg and counts.listed:  # file:line first: the line to fix
                errors.append(f"{counts.listed[0]} ({counts.invalid} of {counts.total} rows invalid, allowed "
                              f"{allowed:g}%)")
            elif msg:
                errors.append(msg)
    return errors, notes

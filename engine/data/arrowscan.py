"""The data check's fast path: JSON-lines blocks parsed by Arrow, validated column by column.

A data file of the corpus or alpaca format in JSON lines is read in blocks of :data:`BLOCK_BYTES`
(cut at a line end) and parsed by ``pyarrow.json`` with a schema of the keys the format reads.
The checks the normaliser would make are made on whole columns: a key present and a string, its
text not blank.  Only the rows these checks cannot pass — a missing key, a blank answer, a
placeholder ``{{…}}``, text whose blankness Python and Arrow might judge differently — are
decoded again one by one and handed to the normaliser, so a failing row is reported with the
same ``file:line`` and reason as the row-by-row reader gives.  A block Arrow cannot parse (a
line that is not JSON, a value of another type, a key given twice, an alpaca ``history``) is
read row by row in full.  Memory: one block and its columns at a time (a few in flight).

The file may be plain, gzip-compressed or a zip archive's member (decompressed a block at a time).
Each valid row's key (:func:`row_key`, :func:`padded`) is hashed for the duplicates count
(:func:`hash_words`); the byte scans and the row hashes are done by the C library
``engine/data/_fastscan.c`` where ``pip install`` built it (:func:`_fast`), else by numpy — the
same results (tests/test_data_scale.py holds them to it).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from engine.data.errors import RowError
from engine import userfiles
from engine.data.sources import (MAX_LINE_BYTES, ZIP_ERRORS, ZIP_UNREADABLE, FileSource, MultiSource, Source,
                                 ZipSource, data_error, data_suffix, json_lines_head, jsonl_records, line_too_long)

#: bytes parsed at once (a block ends at a line end; a longer line is read whole, up to sources.MAX_LINE_BYTES)
BLOCK_BYTES = 8 << 20
#: the formats whose checks are made on columns (others are read row by row)
FAST_FORMATS = ("corpus", "alpaca")
#: a character that is certainly not white space for Python's ``str.strip`` (letters, digits, punctuation,
#: symbols): a text holding one is not blank.  Text without one (only spaces, marks, control characters)
#: is judged by the normaliser itself.
_SURELY_NOT_BLANK = r"[\pL\pN\pP\pS]"

#: the ASCII characters Python's ``str.strip`` removes
_PY_ASCII_SPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"

_STRING_KEYS = {"corpus": ("text",), "alpaca": ("instruction", "input", "output", "system", "history")}


def fast_files(src: Source, fmt: str) -> list[FileSource | ZipSource] | None:
    """The JSON-lines files of ``src`` when the fast path can read all of them (plain or gzip files, a folder's, a
    zip archive's data member), else None."""
    if fmt not in FAST_FORMATS:
        return None
    out: list[FileSource | ZipSource] = []
    for p in (src.parts if isinstance(src, MultiSource) else [src]):
        if not (type(p) is FileSource or isinstance(p, ZipSource)):
            return None
        suf = data_suffix(p.member if isinstance(p, ZipSource) else p.path.name)
        head = _head(p) if suf in (".json", ".jsonl", ".ndjson") else None
        if head is None or (suf == ".json" and not json_lines_head(head)):
            return None
        out.append(p)
    return out


def _head(src: FileSource | ZipSource) -> bytes | None:
    """The first bytes of a file the fast path may read: a plain or gzip file's (decompressed; none when damaged:
    reading it says why), a zip archive's member's — None for a gzip file inside one, or a member that cannot be
    read (the row reader reads it, and says why)."""
    if isinstance(src, ZipSource):
        try:
            with src.zf.open(src.member) as fh:
                head = fh.read(4096)
        except ZIP_ERRORS:
            return None
        return None if head.startswith(userfiles.GZIP_MAGIC) else head
    with userfiles.open_binary(src.path, src.display, data_error) as fh:  # (gzip: its first bytes decompressed)
        try:
            return fh.read(4096)
        except userfiles.GZIP_ERRORS:
            return b""


def fast_paths(srcs: list[tuple[Source, str]], stage: str | None) -> list[list[FileSource | ZipSource] | None]:
    """:func:`fast_files` of each ``(source, format)`` — none for a paired stage, whose rows the normaliser reads
    as pairs."""
    from engine.data.formats import PAIRED_STAGES

    return [None if stage in PAIRED_STAGES else fast_files(src, f) for src, f in srcs]


def counted(fs: FileSource | ZipSource, fmt: str, counts: Any, advance: Callable[[int], None] | None = None,
            hashed: bool = False, keyed: bool = True) -> Iterator[Any]:
    """:func:`scan_file`'s parts, each counted in ``counts`` (a :class:`engine.data.loader.ScanCounts`: the invalid
    rows as they come, the valid ones a part at a time)."""
    for part in scan_file(fs, fmt, counts.add_invalid, advance=advance, hashed=hashed, keyed=keyed):
        counts.total += len(part)
        counts.valid += len(part)
        yield part


@dataclass
class Block:
    """Valid rows of a block, as columns (``text`` for corpus; ``system`` / ``instruction`` / ``input`` / ``output``
    for alpaca, ``system`` null where the row has none) and what the check counts of them."""
    fmt: str
    locs: list[str] | None  # (built only when asked: see loc())
    name: str
    lines: Any  # numpy int64: each valid row's line number
    cols: dict[str, Any]  # pyarrow arrays, of every row Arrow read (the valid ones at ``pos``)
    nchars: Any  # numpy int64, of each valid row
    keys: Any  # pyarrow binary array, of every row Arrow read: each row's row_key, padded() (None: not made)
    pos: Any = None  # numpy int64: where the valid rows are in ``cols`` / ``keys`` (None: every row is valid)
    key_hashes: Any = None  # (hash_words of every key, made once: see hashes)

    def __len__(self) -> int:
        return len(self.lines)

    def hashes(self) -> Any:
        """:func:`hash_words` of the keys of the valid rows, as :func:`key_hashes` gives for rows read one by one
        (all the keys are hashed, then the valid rows' taken: cheaper than copying them out of the block)."""
        if self.key_hashes is None:  # (made from the keys' bytes: see _columns)
            offs = _np_offsets(self.keys)
            if (offs & (KEY_WORD - 1)).any():
                raise AssertionError("a key of a part of a word")  # (see _columns: each is padded)
            self.key_hashes = hash_words(self.keys.buffers()[2] or b"", offs // KEY_WORD)
        return self.key_hashes if self.pos is None else self.key_hashes[self.pos]

    def digest_into(self, h: Any) -> None:
        """Feed ``h`` (a hashlib object) the keys of the valid rows (each :func:`padded`), then their line numbers
        (int64): what :func:`engine.data.loader.keys_digest` feeds it for rows read one by one."""
        import numpy as np

        offs = _np_offsets(self.keys)
        data = memoryview(self.keys.buffers()[2])
        if self.pos is None:
            h.update(data[offs[0]:offs[-1]])
        else:  # (runs of consecutive valid rows: their keys lie end to end)
            pos = self.pos
            cut = np.flatnonzero(np.diff(pos) != 1) + 1
            for a, b in zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [len(pos)]]).tolist()):
                h.update(data[offs[pos[a]]:offs[pos[b - 1] + 1]])
        h.update(np.ascontiguousarray(self.lines, dtype=np.int64).tobytes())

    def loc(self, i: int) -> str:
        return f"{self.name}:{int(self.lines[i])}"

    def row(self, i: int) -> dict:
        """The canonical row of valid row ``i``, as the normaliser builds it."""
        return self.rows([i])[0]

    def rows(self, idx: Any) -> list[dict]:
        """The canonical rows of valid rows ``idx``, their texts decoded from the columns' bytes (an Arrow scalar's
        ``as_py`` a text costs several times more)."""
        import numpy as np

        at = np.asarray(idx, dtype=np.int64)
        at = at if self.pos is None else self.pos[at]
        if self.fmt == "corpus":
            return [{"text": t} for t in _texts(self.cols["text"], at)]
        out = []
        for s, i, u, a in zip(_texts(self.cols["system"], at), _texts(self.cols["instruction"], at),
                              _texts(self.cols["input"], at), _texts(self.cols["output"], at)):
            msgs = [] if s is None else [{"role": "system", "content": s}]
            msgs.append({"role": "user", "content": "\n".join(t for t in (i, u) if t)})
            msgs.append({"role": "assistant", "content": a})
            out.append({"messages": msgs})
        return out


def _blocks(path, block_bytes: int) -> Iterator[bytes]:
    """Blocks of whole lines (see :func:`_read_blocks`)."""
    for block, _ in _read_blocks(path, block_bytes):
        yield block


def _read_blocks(path, block_bytes: int) -> Iterator[tuple[bytes, int]]:
    """``(block, bytes of the file read for it)``: blocks of whole lines, of a plain file each read once
    (``os.pread`` up to the last line end, found in the block's last 64 KiB: no copy of a block cut at a line end),
    of a gzip file decompressed as they are read."""
    import os

    with userfiles.open_binary(path, str(path), data_error, decompress=False) as fh:
        if userfiles.is_gzip(fh):
            yield from _gzip_blocks(fh, str(path), block_bytes)
            return
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        pos = bom = 3 if os.pread(fd, 3, 0) == b"\xef\xbb\xbf" else 0
        want = block_bytes
        while pos < size:
            end = min(pos + want, size)
            block = None
            if end < size:
                tail = min(1 << 16, end - pos)
                k = os.pread(fd, tail, end - tail).rfind(b"\n")
                if k < 0:  # (no line end in the window: the whole block, then)
                    block = os.pread(fd, end - pos, pos)
                    k = block.rfind(b"\n")
                    if k < 0:  # a line longer than a block: a longer block (up to the longest a line may be)
                        if want >= MAX_LINE_BYTES:
                            raise _LineTooLong()
                        want = min(want * 2, MAX_LINE_BYTES)
                        continue
                    block = block[:k + 1]
                else:
                    end = end - tail + k + 1
            if block is None:
                block = os.pread(fd, end - pos, pos)
            yield block, len(block) + bom
            pos += len(block)
            bom = 0
            want = block_bytes


def _gzip_blocks(fh: Any, name: str, block_bytes: int) -> Iterator[tuple[bytes, int]]:
    """:func:`_read_blocks` of a gzip file (several members read one after the other), the progress by the
    compressed bytes read; a damaged stream ends in the row reader's error (see :func:`_stream_blocks`)."""
    import gzip

    gz = gzip.GzipFile(fileobj=fh, mode="rb")
    yield from _stream_blocks(gz.read1, fh.tell, block_bytes, userfiles.GZIP_ERRORS,
                              lambda e: data_error(name, f"not a valid gzip file ({e})"))


class _LineTooLong(Exception):
    """A line longer than :data:`engine.data.sources.MAX_LINE_BYTES` (scan_file says which)."""


class _Damaged(Exception):
    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _zip_blocks(src: ZipSource, block_bytes: int) -> Iterator[tuple[bytes, int]]:
    """:func:`_read_blocks` of a zip archive's data member, decompressed as it is read, the progress by its
    decompressed bytes. A damaged member: the blocks before the damage, then the whole lines after them that the row
    reader's line by line reading still gets (it decompresses less ahead), then the row reader's error."""
    def failure(e: BaseException) -> Exception:
        return data_error(src.display, f"{ZIP_UNREADABLE} ({e})")

    try:
        fh = src.zf.open(src.member)
    except ZIP_ERRORS as e:
        raise failure(e) from None
    done, given = [0], 0

    def read1(n: int) -> bytes:
        chunk = fh.read1(n)
        done[0] += len(chunk)
        return chunk

    try:
        with fh:
            for block, n in _stream_blocks(read1, lambda: done[0], block_bytes, ZIP_ERRORS, _Damaged):
                given += n
                yield block, n
    except _Damaged as d:
        tail, at = [], 0
        try:
            with src.zf.open(src.member) as again:
                for line in again:
                    at += len(line)
                    if at > given:
                        tail.append(line)
        except ZIP_ERRORS:
            pass
        if tail and tail[-1].endswith(b"\n"):
            yield b"".join(tail), 0
        raise failure(d.error) from None


def _stream_blocks(read1: Callable[[int], bytes], position: Callable[[], int], block_bytes: int, errors: tuple,
                   failure: Callable[[BaseException], Exception]) -> Iterator[tuple[bytes, int]]:
    """``(block, position() advanced for it)`` of a decompressed stream: ``block_bytes`` of it at a time, cut at the
    last line end (the rest begins the next block). A damaged stream (one of ``errors``) gives every whole line
    before the damage, as the row reader reads them, then ends in ``failure(error)``, the row reader's error."""
    rest, said, first, want = b"", 0, True, max(block_bytes, 3)
    while True:
        parts, have, eof, failed = ([rest] if rest else []), len(rest), False, None
        try:  # (read1: one read of the file at a time, so a damaged stream fails after all it could give)
            while have < want:
                chunk = read1(want - have)
                if not chunk:
                    eof = True
                    break
                parts.append(chunk)
                have += len(chunk)
        except errors as e:
            failed = e
        data = b"".join(parts)
        if first:  # (a UTF-8 BOM before the first line: as the row reader, not part of it)
            data, first = data.removeprefix(b"\xef\xbb\xbf"), False
        if eof or failed is not None:
            if failed is not None:  # (a line the damage cut short is not read)
                data = data[:data.rfind(b"\n") + 1]
            if data:
                yield data, position() - said
            if failed is not None:
                raise failure(failed) from None
            return
        k = data.rfind(b"\n")
        if k < 0:  # (a line longer than a block: a longer block, up to the longest a line may be)
            if len(data) > MAX_LINE_BYTES:
                raise _LineTooLong()
            rest, want = data, min(2 * max(want, len(data)), MAX_LINE_BYTES + 1)
            continue
        if want > block_bytes and data.find(b"\n") >= MAX_LINE_BYTES:  # (a longer block's first line: too long)
            raise _LineTooLong()
        rest, want = data[k + 1:], block_bytes
        read, said = position() - said, position()  # (the bytes read for it: progress by the file)
        yield (data[:k + 1] if rest else data), read


def source_blocks(src: FileSource | ZipSource, block_bytes: int) -> Iterator[tuple[bytes, int]]:
    """:func:`_read_blocks` of a file :func:`fast_files` gives (a plain or gzip file, a zip archive's member)."""
    if isinstance(src, ZipSource):
        return _zip_blocks(src, block_bytes)
    return _read_blocks(src.path, block_bytes)


def source_bytes(src: FileSource | ZipSource) -> int:
    """What :func:`source_blocks` of ``src`` counts to in all (a file's size; a zip member's, decompressed)."""
    if isinstance(src, ZipSource):
        return src.zf.getinfo(src.member).file_size
    return src.path.stat().st_size


def _ahead(items: Iterator[Any], fn: Callable[[Any], Any], workers: int = 2) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in order, ``fn`` of the next items running in ``workers`` threads while the caller works
    on this one: Arrow parses and checks the columns of blocks N+1… (its kernels release the GIL) while block N's
    keys are hashed.  At most ``workers + 1`` blocks in memory at a time."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="finetui-parse") as ex:
        pending: deque = deque()
        source, failed = iter(items), None
        while True:
            try:
                item = next(source)
            except StopIteration:
                break
            except Exception as e:  # (the reading failed: what was read before it is still handed on, then this)
                failed = e
                break
            pending.append((item, ex.submit(fn, item)))
            if len(pending) > workers:
                it, fut = pending.popleft()
                yield it, fut.result()
        while pending:
            it, fut = pending.popleft()
            yield it, fut.result()
        if failed is not None:
            raise failed


#: a line whose first character (after white space) does not open an object
_NOT_OBJECT = re.compile(rb"(?:\A|\n)[ \t\r\f\v]*[^{ \t\r\n\f\v]")


def _objects_only(block: bytes, starts: Any) -> bool:
    """Whether every line of ``block`` (its lines starting at ``starts``: see :func:`_line_starts`) that is not blank
    starts an object: Arrow's JSON reader is given only such blocks. pyarrow 25 crashes the process (a segfault)
    on a line holding a bare ``null`` (found by the fuzz tests); other non-objects it refuses. A block with any such
    line is read one by one."""
    import numpy as np

    a = np.frombuffer(block, dtype=np.uint8)
    if a[:1].tolist() in ([0x7B], []) and np.all(a[starts] == 0x7B):  # (every line starts with "{": the usual case)
        return True
    return _NOT_OBJECT.search(block) is None


def _line_count(block: bytes, ends: Any) -> int:
    """The lines of ``block``, its line ends at ``ends`` (see :func:`_line_ends`)."""
    return len(ends) + (0 if block.endswith(b"\n") else 1)


#: marks of a row key (see :func:`row_key`): bytes no UTF-8 text holds (UTF-8 never uses F5–FF)
KEY_SCALAR, KEY_LIST, KEY_LIST_END = b"\xf9", b"\xfb", b"\xfa"
KEY_ITEM, KEY_MESSAGE, KEY_TEXT_END = b"\xfc", b"\xfd", b"\xff"
#: what ends every key of a block (see _columns), one or more of it: a key is padded with it to a whole number of
#: 8-byte words (see :func:`padded`), so that the keys' bytes hash as words (see :func:`hash_words`)
KEY_END = b"\xfe"
#: the bytes of a key's word
KEY_WORD = 8


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def row_key(row: dict) -> bytes:
    """A canonical row as bytes, different for different rows (its hash finds duplicates; the first pass's digest
    is made of them): names and texts as UTF-8, framed by marks no UTF-8 holds (``KEY_…``), each text followed by
    ``FF`` — a scalar ``name F9 FF text FF``; a list ``name FB``, then what each item is (``FD role`` for a message,
    ``FC`` for another item), ``FF``, each item's text (a message's content) followed by ``FF``, then ``FA``.
    :func:`_columns` builds the same bytes on columns, each key one binary join of its marks and texts (the texts
    are not copied into another type, no length is written)."""
    out = []
    for k in sorted(row):
        v = row[k]
        out.append(_utf8(k))
        if isinstance(v, list):
            out.append(KEY_LIST)
            texts = []
            for m in v:
                if isinstance(m, dict):
                    c = m["content"]
                    out += [KEY_MESSAGE, _utf8(str(m["role"]))]
                    texts.append(_utf8(c if isinstance(c, str) else repr(c)))
                else:
                    out.append(KEY_ITEM)
                    texts.append(_utf8(str(m)))
            out += [KEY_TEXT_END, *(t + KEY_TEXT_END for t in texts), KEY_LIST_END]
        else:
            out += [KEY_SCALAR, KEY_TEXT_END, _utf8(v if isinstance(v, str) else repr(v)), KEY_TEXT_END]
    return b"".join(out)


def padded(key: bytes) -> bytes:
    """``key`` (a :func:`row_key`) followed by :data:`KEY_END` 1 to 8 times, to a whole number of words: what
    :func:`_columns` builds for a row on columns (KEY_END is in no key, so the padding is never ambiguous)."""
    return key + KEY_END * (KEY_WORD - len(key) % KEY_WORD)


#: how many words of keys are hashed at once (a slice's passes stay in the cache)
_HASH_WORDS = 1 << 14
#: MurmurHash3's mixing constants, and the odd multiplier of a word's place in its key
_C1, _C2, _K = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x2545F4914F6CDD1D


def _fmix(x: Any) -> Any:
    """MurmurHash3's 64-bit finaliser, in place on a numpy uint64 array (a bijection: every bit of the result
    depends on every bit of the input)."""
    import numpy as np

    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(_C1)
        x ^= x >> np.uint64(33)
        x *= np.uint64(_C2)
        x ^= x >> np.uint64(33)
    return x


def hash_words(data: Any, starts: Any) -> Any:
    """64-bit hashes (numpy int64) of the keys in ``data`` (a buffer of whole words, see :func:`padded`), key ``i``
    being words ``starts[i]`` … ``starts[i + 1]`` (numpy int64, one more than the keys): each word, XOR its place
    in the key times an odd constant, mixed (:func:`_fmix`); the key's mixed words summed (prefix sums: a key
    hashes the same wherever it lies); the sum, XOR the key's length, mixed again.  A few numpy passes over the
    words, out of the GIL — about 4× cheaper than Python's ``hash`` of each key as bytes (each one a Python object)
    — for the same use: equal rows hash equal, different ones differ but with a chance of about 2^-64 (this is no
    defence against keys made to collide, and needs none: it only counts duplicates)."""
    import numpy as np

    u = np.uint64
    starts = np.asarray(starts, dtype=np.int64)
    n = len(starts) - 1
    out = np.zeros(max(n, 0), dtype=np.uint64)
    words = np.frombuffer(data, dtype=np.uint64, count=int(starts[-1])) if n > 0 and starts[-1] else None
    a = 0
    with np.errstate(over="ignore"):
        while a < n:
            lo = int(starts[a])
            b = min(n, max(a + 1, int(np.searchsorted(starts, lo + _HASH_WORDS, "right")) - 1))
            rel = starts[a:b + 1] - lo
            hi = lo + int(rel[-1])
            if hi > lo:
                x = np.arange(hi - lo, dtype=u)
                x -= np.repeat(rel[:-1], np.diff(rel)).view(u)  # (each word's place in its key)
                x *= u(_K)
                x ^= words[lo:hi]
                sums = np.zeros(hi - lo + 1, dtype=u)
                np.cumsum(_fmix(x), out=sums[1:])
                out[a:b] = sums[rel[1:]] - sums[rel[:-1]]
            a = b
        out ^= np.diff(starts).view(u)
    return _fmix(out).view(np.int64)


def key_hashes(keys: list[bytes]) -> Any:
    """:func:`hash_words` of keys of rows read one by one (each a :func:`row_key`): what the keys built on columns
    hash to."""
    import numpy as np

    data = [padded(k) for k in keys]
    starts = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=len(data)), out=starts[1:])
    return hash_words(b"".join(data), starts // KEY_WORD)


def _np_offsets(arr: Any) -> Any:
    """The offsets of an Arrow string (or binary) array's values, as numpy (len + 1 of them)."""
    import numpy as np
    import pyarrow as pa

    dtype = np.int64 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)


def _texts(col: Any, at: Any) -> list[str | None]:
    """Texts ``at`` of an Arrow string array (None where null), decoded from its buffers."""
    import numpy as np

    offs = _np_offsets(col)
    buf = col.buffers()[2]
    data = memoryview(buf) if buf is not None else memoryview(b"")
    valid = _np_bits(col, 0) if col.null_count else None
    return [None if valid is not None and not valid[i] else str(data[offs[i]:offs[i + 1]], "utf-8")
            for i in at.tolist()]


def _printable_ends(col: Any) -> tuple[Any, Any]:
    """For an Arrow string array, numpy bools: which texts start or end with a printable ASCII character (! to ~:
    letters, digits, punctuation, symbols — surely not blank, for Python's ``strip`` and for
    :data:`_SURELY_NOT_BLANK` alike), and which others are not empty (in doubt); a null is neither."""
    import numpy as np

    offs = _np_offsets(col)
    n = len(col)
    sure = np.zeros(n, dtype=bool)
    doubt = offs[1:] > offs[:-1]
    if col.null_count:
        doubt &= _np_bits(col, 0)
    at = np.flatnonzero(doubt)
    if len(at):
        data = np.frombuffer(col.buffers()[2], dtype=np.uint8)
        first, last = data[offs[at]], data[offs[at + 1] - 1]
        hit = ((first - np.uint8(0x21)) < np.uint8(0x5E)) | ((last - np.uint8(0x21)) < np.uint8(0x5E))
        sure[at[hit]] = True
        doubt[at[hit]] = False
    return sure, doubt


def _arrow_bools(values: Any) -> Any:
    """A numpy bool array as an Arrow boolean array without nulls, from its bits (see :func:`_lit`)."""
    import numpy as np
    import pyarrow as pa

    bits = np.packbits(values, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def _arrow_ints(values: Any) -> Any:
    """A numpy integer array as an Arrow int64 array, from its buffer (see :func:`_lit`)."""
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _np_bits(arr: Any, buffer: int) -> Any:
    """Buffer ``buffer`` of an Arrow array, a bitmap (0: the validity; 1: a boolean array's values), as numpy bool."""
    import numpy as np

    bits = np.frombuffer(arr.buffers()[buffer], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little", count=arr.offset + len(arr))[arr.offset:].astype(bool)


def _np_bool(arr: Any) -> Any:
    """A boolean Arrow array without nulls as a numpy bool array (Arrow's ``to_numpy`` imports pandas: ~0.25 s)."""
    return _np_bits(arr, 1)


def _np_int(arr: Any) -> Any:
    """An integer Arrow array without nulls as numpy int64."""
    import numpy as np

    dtype = np.dtype(f"int{arr.type.bit_width}")
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset:arr.offset + len(arr)].astype(np.int64)


_LITERALS: dict[Any, Any] = {}


def _lit(value: Any) -> Any:
    """An Arrow scalar of a string (or None: a null string), made by Arrow's JSON parser: any conversion of a
    Python value to Arrow (``pa.scalar``, a Python argument to a compute function) imports pandas (~0.25 s: pyarrow
    looks for pandas objects), which the check never needs."""
    if value not in _LITERALS:
        import json

        import pyarrow as pa
        import pyarrow.json as pj

        opts = pj.ParseOptions(explicit_schema=pa.schema([("v", pa.string())]))
        _LITERALS[value] = pj.read_json(io.BytesIO(json.dumps({"v": value}).encode()), parse_options=opts).column(0)[0]
    return _LITERALS[value]


def _blit(value: bytes) -> Any:
    """An Arrow binary scalar of ``value``, made from its buffers (see :func:`_lit`)."""
    if value not in _LITERALS:
        import numpy as np
        import pyarrow as pa

        offsets = pa.py_buffer(np.array([0, len(value)], dtype=np.int32).tobytes())
        _LITERALS[value] = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(value)])[0]
    return _LITERALS[value]


def _padding(key_bytes: Any, tail: bytes = b"") -> Any:
    """An Arrow binary array of the last part of keys of ``key_bytes`` bytes (numpy) before it: ``tail``, then
    :data:`KEY_END` 1 to 8 times, to a whole number of words (see :func:`padded`) — built from its buffers (one part
    of the keys' join fewer)."""
    import numpy as np
    import pyarrow as pa

    size = len(tail) + KEY_WORD - (np.asarray(key_bytes, dtype=np.int64) + len(tail)) % KEY_WORD
    offsets = np.zeros(len(size) + 1, dtype=np.int32)
    np.cumsum(size, out=offsets[1:])
    data = np.full(int(offsets[-1]), KEY_END[0], dtype=np.uint8)
    for i, b in enumerate(tail):
        data[offsets[:-1] + i] = b
    return pa.Array.from_buffers(pa.binary(), len(size), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _row_lines(block: bytes, n_lines: int, n_rows: int, start: int):
    """Line number of each row Arrow read from ``block`` (Arrow skips blank lines); None if they cannot be
    matched one to one."""
    import numpy as np

    if n_rows == n_lines:
        return np.arange(start, start + n_rows, dtype=np.int64)
    nonblank = [i for i, ln in enumerate(block.split(b"\n")[:n_lines]) if ln.strip()]
    if len(nonblank) != n_rows:
        return None
    return np.asarray(nonblank, dtype=np.int64) + start


def _schema(fmt: str):
    import pyarrow as pa

    return pa.schema([(k, pa.string()) for k in _STRING_KEYS[fmt]])


def scan_file(src: FileSource | ZipSource, fmt: str, on_invalid: Callable[[str, RowError], None],
              block_bytes: int | None = None, advance: Callable[[int], None] | None = None,
              hashed: bool = False, keyed: bool = True) -> Iterator[Block | list[tuple[str, dict]]]:
    """The valid rows of one JSON-lines file: a :class:`Block` of columns, or a list of ``(location, row)``
    for rows read one by one; ``on_invalid(location, error)`` for each invalid row, in file order within a
    block. ``hashed``: each block's :meth:`Block.hashes` made in the parsing thread; ``keyed`` false: no row keys
    (nor hashes) made — the rows are only counted."""
    import pyarrow as pa
    import pyarrow.json as pj

    from engine.data.formats import normalizer

    norm = normalizer(fmt)
    opts = pj.ParseOptions(explicit_schema=_schema(fmt), unexpected_field_behavior="ignore")
    name = src.display

    def one_by_one(block: bytes, start: int, n_lines: int, only: Optional[set[int]] = None,
                   ends: Any = None) -> list[tuple[str, dict]]:
        out = []
        if only is None:
            lines = block.split(b"\n")[:n_lines]
            numbered = ((start + i, ln) for i, ln in enumerate(lines))
        else:  # (a block Arrow read: its lines end with \n, at ``ends``; only the lines asked for are cut out)
            def line_at(k: int) -> bytes:
                a = int(ends[k - 1]) + 1 if k else 0
                return block[a:int(ends[k]) if k < len(ends) else len(block)]

            numbered = ((i, line_at(i - start)) for i in sorted(only))
        for loc, obj in jsonl_records(numbered, name):
            try:
                if isinstance(obj, RowError):
                    raise obj
                out.append((loc, norm(obj, None)))
            except RowError as e:
                on_invalid(loc, e)
        return out

    def parse(block: bytes, starts: Any) -> Any:
        """The block's table, or None when Arrow cannot read it (it then goes one by one)."""
        if not _objects_only(block, starts):
            return None
        try:
            if not block.isascii():  # (Arrow does not check UTF-8 inside strings: a bad line goes one by one)
                try:
                    block.decode("utf-8")
                except UnicodeDecodeError:
                    raise pa.ArrowInvalid("not UTF-8") from None
            # (one thread per block: the blocks are parsed in parallel by _ahead's threads; Arrow's own threads
            # within a block cost 8 % more CPU for the same time)
            try:
                return pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(use_threads=False),
                                    parse_options=opts)
            except pa.ArrowInvalid as e:
                if "straddl" not in str(e):  # (a row longer than Arrow's block: once more, as one block)
                    raise
                return pj.read_json(io.BytesIO(block), parse_options=opts,
                                    read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None

    def columns(block: bytes) -> Any:
        """(in a worker thread) ``(lines, line ends, result)``: the result the block parsed and checked on columns,
        ``(block, doubtful lines)`` with line numbers from 0 (the main thread, which counts the lines of the blocks
        before, adds its first line's), or None when it goes one by one."""
        ends = _line_ends(block)  # (also where the lines Arrow cannot pass are cut out, out of the main thread)
        starts = _line_starts(block, ends)
        n_lines = _line_count(block, ends)
        table = parse(block, starts)
        lines = _row_lines(block, n_lines, table.num_rows, 0) if table is not None else None
        if table is None or lines is None:
            return n_lines, ends, None
        blk, doubtful = _columns(table, fmt, lines, name, *_texts_seen(block, starts), hashed=hashed, keyed=keyed)
        if hashed and keyed:
            blk.hashes()
        return n_lines, ends, (blk, doubtful)

    line = 1
    try:
        for (block, read), (n_lines, ends, done) in _ahead(source_blocks(src, block_bytes or BLOCK_BYTES),
                                                          lambda item: columns(item[0])):
            start = line
            line += n_lines
            if done is None:
                rows = one_by_one(block, start, n_lines)
                if rows:
                    yield rows
            else:
                blk, doubtful = done
                blk.lines += start  # (numbered in the file: see columns)
                doubtful = doubtful + start
                if len(doubtful):
                    # the rows the columns cannot pass: the normaliser says why (or takes them after all), in order
                    rows = one_by_one(block, start, n_lines, {int(x) for x in doubtful}, ends)
                    if rows:
                        yield rows
                if blk is not None and len(blk):
                    yield blk
            if advance is not None:  # (once the block's rows are counted: see counted)
                advance(read)
    except _LineTooLong:  # (the first line after the blocks handed on, as the row reader numbers it)
        raise line_too_long(name, line) from None


def _line_ends(block: bytes) -> Any:
    """Where each line of ``block`` ends (its \\n), as numpy."""
    import numpy as np

    lib = _fast()
    if lib is not None:
        cap = len(block) // 32 + 64
        out = np.empty(cap, dtype=np.int64)
        k = lib.fs_line_ends(block, len(block), out.ctypes.data, cap)
        if k > cap:  # (lines shorter than 32 bytes on average)
            out = np.empty(k, dtype=np.int64)
            lib.fs_line_ends(block, len(block), out.ctypes.data, k)
        return out[:k]
    return np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)


#: the version of engine/data/_fastscan.c this code calls (its fs_version)
_FAST_VERSION = 1
_FAST: list = []  # [the C library, or None], found once


def _fast() -> Any:
    """The C twin of the byte scans and row hashes (``engine/data/_fastscan.c``, built by ``pip install`` where a
    C compiler is; loaded with ctypes, which releases the GIL for each call), or None: not built, built from another
    version of the source, or turned off (``FINETUI_FASTSCAN=0``) — then numpy does the same."""
    if not _FAST:
        lib = None
        if os.environ.get("FINETUI_FASTSCAN", "1") != "0":
            try:
                import ctypes
                import importlib.util

                spec = importlib.util.find_spec("engine.data._fastscan")
                if spec is not None and spec.origin and not spec.origin.endswith(".py"):
                    lib = ctypes.CDLL(spec.origin)
                    lib.fs_version.restype = ctypes.c_int32
                    if lib.fs_version() != _FAST_VERSION:
                        raise OSError("another version")
                    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
                    lib.fs_line_ends.restype, lib.fs_line_ends.argtypes = i64, [ctypes.c_char_p, i64, ptr, i64]
                    lib.fs_texts_seen.restype, lib.fs_texts_seen.argtypes = i32, [ctypes.c_char_p, i64]
                    lib.fs_hash_parts.restype = i32
                    lib.fs_hash_parts.argtypes = [i64, i32, ptr, ptr, ptr, ptr, ptr, ptr]
            except (OSError, AttributeError, ImportError, ValueError):  # (another machine's build, a stale one)
                lib = None
        _FAST.append(lib)
    return _FAST[0]


def _hash_parts(parts: list, n: int) -> Any:
    """:func:`hash_words` of the :func:`padded` keys of ``n`` rows, each key its ``parts`` one after the other
    (Arrow binary scalars and arrays, as :func:`_columns` joins them), by the C library without making the keys;
    None without it."""
    lib = _fast()
    if lib is None:
        return None
    import ctypes

    import numpy as np
    import pyarrow as pa

    k = len(parts)
    data, offs, valid = (ctypes.c_void_p * k)(), (ctypes.c_void_p * k)(), (ctypes.c_void_p * k)()
    voff, clen = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    keep = []  # (the buffers the pointers point into, alive through the call)
    for j, part in enumerate(parts):
        if isinstance(part, pa.Scalar):
            b = part.as_buffer()
            keep.append(b)
            data[j], clen[j] = (b.address if b.size else None), b.size
            continue
        if not (pa.types.is_binary(part.type) or pa.types.is_string(part.type)) or len(part) != n:
            return None
        bits, offsets, values = part.buffers()
        keep.append(part)
        offs[j] = offsets.address + 4 * part.offset
        data[j] = values.address if values is not None and values.size else None
        valid[j] = bits.address if bits is not None and part.null_count else None
        voff[j] = part.offset
    out = np.empty(n, dtype=np.int64)
    if lib.fs_hash_parts(n, k, data, offs, valid, voff.ctypes.data, clen.ctypes.data, out.ctypes.data) != 0:
        raise MemoryError("the data check's row hashes")
    return out


def _line_starts(block: bytes, ends: Any) -> Any:
    """Where each line of ``block`` but the first starts (after a line end of :func:`_line_ends` that is not the
    block's last byte)."""
    return ends[ends + 1 < len(block)] + 1


def _texts_seen(block: bytes, starts: Any) -> tuple[bool, bool]:
    """What the bytes of ``block`` (its lines starting at ``starts``, the first's aside) tell of its texts, by
    vectorized scans several times cheaper than Arrow's kernels on the columns: whether a text may hold ``{{``
    (false when the bytes hold neither ``{{`` nor a ``\\u007b`` escape: JSON writes ``{`` no other way, and two
    braces cannot meet in JSON's own syntax), and whether every text is surely ASCII (ASCII bytes and no ``\\u``
    escape)."""
    import numpy as np

    lib = _fast()
    if lib is not None:
        seen = lib.fs_texts_seen(block, len(block))
        return bool(seen & 1), bool(seen & 2)
    a = np.frombuffer(block, dtype=np.uint8)
    braces = False
    is_brace = a == 0x7B  # "{"
    openers = int(np.count_nonzero(is_brace[starts])) + int(is_brace[:1].any())  # (lines that start with one)
    if np.count_nonzero(is_brace) > openers:  # (not only those opening the objects: a pair "{{" would be two more)
        at = np.flatnonzero(is_brace[:-1])
        braces = bool(np.any(a[at + 1] == 0x7B))
    is_escape = a[:-1] == 0x5C  # "\\"
    if not np.any(is_escape):
        return braces, block.isascii()
    at = np.flatnonzero(is_escape)
    u = a[at + 1] == 0x75  # "\\u"
    if not braces:
        at = at[u & (at + 5 < len(a))]
        braces = bool(np.any((a[at + 2] == 0x30) & (a[at + 3] == 0x30) & (a[at + 4] == 0x37)
                             & ((a[at + 5] | 0x20) == 0x62)))  # "u007b", either case
    return braces, not u.any() and block.isascii()


def _columns(table, fmt: str, lines, name: str, maybe_braces: bool = True, ascii_texts: bool = False,
             hashed: bool = False, keyed: bool = True):
    """The block of rows that pass on columns, and the line numbers of the others (``maybe_braces`` false: no text
    holds ``{{``; ``ascii_texts``: every text is ASCII; see :func:`_texts_seen`; ``hashed``: the block's
    :meth:`Block.hashes` are made, its keys only if the C library is not there to hash them unmade; ``keyed``
    false: neither)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    memo: dict[int, Any] = {}
    ascii_: dict[int, bool] = {}  # (by id: every column asked about stays referenced until the block is built)
    lens: dict[int, Any] = {}

    def is_ascii(col) -> bool:
        if ascii_texts:
            return True
        if id(col) not in ascii_:
            ascii_[id(col)] = pc.all(pc.string_is_ascii(col)).as_py() is not False  # (nulls skipped)
        return ascii_[id(col)]

    def chars(col):  # each text's length in characters (null → null): an ASCII column's are its byte lengths
        if id(col) not in lens:
            lens[id(col)] = pc.binary_length(col) if ascii_texts or ascii_.get(id(col)) else pc.utf8_length(col)
        return lens[id(col)]

    def surely(col):  # certainly not blank (null → false); ASCII text: exactly Python's `s.strip() != ""`
        if id(col) not in memo:
            # a text that starts or ends with a printable ASCII character surely is not blank (two bytes looked
            # at, no copy); the others — blank, white space around, another script — by a kernel, on them alone
            sure, doubt = _printable_ends(col)
            if doubt.any():
                at = np.flatnonzero(doubt)
                sub = pc.take(col, _arrow_ints(at))
                if is_ascii(col):
                    v = pc.cast(pc.binary_length(pc.ascii_trim(sub, _PY_ASCII_SPACE)), pa.bool_())  # (length > 0)
                else:
                    v = pc.match_substring_regex(sub, _SURELY_NOT_BLANK)
                sure[at] = _np_bool(v)  # (none is null: the nulls are not in doubt)
            memo[id(col)] = _arrow_bools(sure)
        return memo[id(col)]

    # (no Python value goes to Arrow here — literals are Arrow scalars, see _lit; to numpy through the buffers)
    def empty(col):  # null or ""
        v = pc.invert(pc.cast(pc.binary_length(col), pa.bool_()))
        return pc.or_kleene(v, pc.is_null(v))

    def braces(col):
        v = pc.match_substring(col, "{{")
        return pc.and_kleene(v, pc.is_valid(v))

    def length(col):
        n = chars(col)
        return n if n.null_count == 0 else pc.coalesce(n, pc.cast(_lit("0"), n.type))

    def binary(col):  # (the same buffers)
        return pc.cast(col, pa.binary())

    def nbytes(x):  # each text's bytes, as numpy (a scalar: its bytes; a null: any number — its key is null)
        if isinstance(x, pa.Scalar):
            return len(x.as_buffer())
        return _np_int(pc.binary_length(x))

    if fmt == "corpus":
        text = table.column("text").combine_chunks()
        ok = surely(text)
        cols = {"text": text}
        nchars = length(text)
        texts = [text]
        parts = [_blit(b"text" + KEY_SCALAR + KEY_TEXT_END), binary(text), _blit(KEY_TEXT_END)]
    else:
        c = {k: table.column(k).combine_chunks() for k in _STRING_KEYS[fmt]}
        ins, inp, out, sys_ = c["instruction"], c["input"], c["output"], c["system"]
        # each text is surely not blank, or empty / absent; anything else (white space only…) goes one by one
        clear = [pc.or_(surely(x), empty(x)) for x in (inp, sys_)]
        ok = pc.and_(pc.and_(pc.is_valid(ins), pc.or_(surely(ins), empty(ins))), pc.and_(clear[0], clear[1]))
        ok = pc.and_(ok, pc.and_(surely(out), pc.or_(surely(ins), surely(inp))))
        ok = pc.and_(ok, pc.is_null(c["history"]))
        # the user's text is the instruction, "\n", the input — or the one of them given: it is never built as a
        # column (a join of two string columns cost 0.19 s per 1M rows; rows() joins the few it makes), only inside
        # the key, as one binary join of no separator: instruction, "\n" where both are given, input (absent: "")
        both = pc.and_(surely(ins), surely(inp))
        nl = pc.if_else(both, _blit(b"\n"), _blit(b""))
        system = sys_ if sys_.null_count == len(sys_) else pc.if_else(surely(sys_), sys_, _lit(None))
        if is_ascii(sys_):
            ascii_[id(system)] = True
        cols = {"system": system, "instruction": ins, "input": inp, "output": out}
        nchars = pc.add(pc.add(length(ins), length(inp)), pc.add(pc.cast(both, pa.int32()), length(out)))
        # row_key of {"messages": [system?, user, assistant]}: its head, then each text followed by FF
        roles = KEY_MESSAGE + b"user" + KEY_MESSAGE + b"assistant"
        head = _blit(b"messages" + KEY_LIST + roles + KEY_TEXT_END)
        if system.null_count != len(system):
            nchars = pc.add(nchars, length(system))
            head = pc.if_else(pc.is_valid(system), pc.binary_join_element_wise(
                _blit(b"messages" + KEY_LIST + KEY_MESSAGE + b"system" + roles + KEY_TEXT_END), binary(system),
                _blit(KEY_TEXT_END), _blit(b"")), head)
        texts = [ins, inp, out, sys_]
        parts = [head, binary(ins), nl, pc.coalesce(binary(inp), _blit(b"")), _blit(KEY_TEXT_END), binary(out),
                 _blit(KEY_TEXT_END + KEY_LIST_END)]
    # each row's key: its parts one after the other, padded (a row that failed may have a null key, of no bytes: it
    # is never hashed nor digested) — hashed by the C library without being made, when the block is only hashed
    key_hashes = _hash_parts(parts, len(table)) if hashed and keyed else None
    keys = None
    if key_hashes is None and keyed:  # (one binary join, the last part — a mark — and the padding one array)
        key_bytes = sum(nbytes(x) for x in parts[:-1])
        keys = pc.binary_join_element_wise(*parts[:-1], _padding(key_bytes, parts[-1].as_py()), _blit(b""))
    # a placeholder `{{…}}` in any text (a blank or doubtful one has failed already; a pair cannot span two texts:
    # marks or "\n" lie between) — Arrow kernels, out of the GIL, run only where the block's bytes may hold a pair
    # (see _texts_seen)
    if maybe_braces:
        for x in texts:
            ok = pc.and_(ok, pc.invert(braces(x)))
    okn = _np_bool(ok if ok.null_count == 0 else pc.and_kleene(ok, pc.is_valid(ok)))
    bad = lines[~okn]
    nchars = _np_int(nchars)  # (no null: length() counts a missing text as 0)
    if okn.all():
        return Block(fmt, None, name, lines, cols, nchars, keys, key_hashes=key_hashes), bad
    return Block(fmt, None, name, lines[okn], cols, nchars[okn], keys, np.flatnonzero(okn), key_hashes), bad

"""Where rows come from: .json (array or JSON lines), .jsonl, .zip, a folder, a sample, or S3.

Data files may be gzip-compressed (``train.jsonl.gz``, or any name holding gzip); they are read as
bytes through :mod:`engine.userfiles` (FIFOs and devices refused before they are read, text that
is not UTF-8 named with its line, nesting and integers that make the parser fail made invalid rows).

A :class:`Source` streams ``(location, object)`` pairs — location is ``file:line`` — and looks
images up relative to the data file (inside the archive for a zip).  A record that is not
valid JSON comes as a :class:`RowError` in place of the object, so one bad line is one
invalid row, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Optional

from engine import userfiles
from engine.data.errors import DataError, RowError
from engine.datapaths import data_paths, split_format
from engine import samples
from engine.samples import SAMPLES_PREFIX
from engine.safeio import escape_reason, inside

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson")


def data_error(where: str, reason: str) -> DataError:
    return DataError(f"{where}: {reason}")


def data_suffix(name: str) -> str:
    """The suffix that tells how a data file is read, ``.gz`` looked through: ``a.jsonl.gz`` → ``.jsonl``."""
    name = name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return posixpath.splitext(name)[1]


def is_data_name(name: str) -> bool:
    return data_suffix(name) in DATA_SUFFIXES
_SKIP_NAMES = {"dataset_info.json"}


def cache_dir() -> Path:
    return Path(os.environ.get("FINETUI_CACHE_DIR") or Path.home() / ".cache" / "finetui")


def resolve_sample(path: str) -> Path:
    """``finetui:samples/<file>`` → the shipped file in engine/assets/samples/ (a DataError if none)."""
    try:
        return samples.resolve_sample(path)
    except FileNotFoundError as e:
        raise DataError(str(e).splitlines()[0]) from None


#: Above this size a .json array is not parsed just to count its rows.
_JSON_COUNT_LIMIT = 256 * 1024 * 1024


def local_data_files(path: str) -> list[Path] | None:
    """The .jsonl / .json files of a local data path (a sample name, a file or a folder, or several of them
    separated by commas); None if any is not local."""
    parts = [split_format(p)[0] for p in data_paths(path)]
    if len(parts) > 1:
        found = [local_data_files(p) for p in parts]
        return None if any(f is None for f in found) else [f for fs in found for f in fs]  # type: ignore[union-attr]
    path = parts[0] if parts else ""
    if not path or str(path).startswith("s3://"):
        return None
    if str(path).startswith(SAMPLES_PREFIX):
        try:
            p = resolve_sample(path)
        except DataError:
            return None
    else:
        p = Path(path).expanduser()
    try:
        if p.is_dir():
            return sorted(q for q in p.iterdir() if is_data_name(q.name) and q.name not in _SKIP_NAMES)
        return [p] if p.is_file() else None
    except (OSError, ValueError):  # a path too long for the file system, a NUL in it: no local file
        return None


_COUNTED: dict[tuple[Any, ...], int | None] = {}


def count_examples(path: str) -> int | None:
    """Rows in a local data file, cheaply (JSONL: non-empty lines; JSON: array length); None if unknown.

    Remembered per file size and modification time: the launch step asks again on every edit."""
    files = local_data_files(path)
    if files is None:
        return None
    try:
        key = tuple((str(f), st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),))
    except OSError:
        return None
    if key not in _COUNTED:
        _COUNTED[key] = _count(files)
    return _COUNTED[key]


def _count(files: list[Path]) -> int | None:
    n = 0
    try:
        for f in files:
            suf = data_suffix(f.name)
            if suf in (".jsonl", ".ndjson"):
                with userfiles.open_binary(f, error=data_error) as fh:
                    n += sum(1 for _, line in _lines(fh, str(f)) if line.strip())  # (a line too long: unknown)
            elif suf == ".json":
                if f.stat().st_size > _JSON_COUNT_LIMIT:
                    return None
                text = userfiles.read_text(f, error=data_error)
                with userfiles.parsing(str(f), data_error):
                    data = json.loads(text)
                if not isinstance(data, list):
                    return None
                n += len(data)
            else:
                return None
    except (DataError, OSError, ValueError, *userfiles.GZIP_ERRORS):  # unreadable: the count is unknown
        return None
    return n


def _row_json(s: str | bytes) -> Any:
    """One row's JSON, or a RowError saying why not (bad JSON, nested too deeply, an integer too long)."""
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        return RowError("", f"not valid JSON ({e.msg}, column {e.colno})")
    except (RecursionError, ValueError) as e:
        why = userfiles.parse_reason(e)
        if why is None:
            raise
        return RowError("", f"not usable JSON: {why}")


#: how much of a JSON array's text its reader goes past before it forgets it (what it holds: the row being read
#: and about this much)
_ARRAY_CHUNK = 1 << 20


def _json_array_records(chunks: Iterable[str], name: str) -> Iterator[tuple[str, Any]]:
    """Stream the elements of a JSON array with the line each starts on, its text read a chunk at a time: the text
    held is the row being read and a chunk or two (a row cut by a chunk is decoded again with more text)."""
    dec = json.JSONDecoder()
    more = iter(chunks)
    buf, eof, col0 = "", False, 0  # (col0: characters of buf's first line that came before it, for error columns)

    def fill() -> bool:  # the next chunk onto buf; False at the end of the text
        nonlocal buf, eof
        if not eof:
            chunk = next(more, None)
            if chunk is not None:
                buf += chunk
                return True
            eof = True
        return False

    def grow(i: int) -> bool:  # at least double what buf holds from i (a row read again costs its length once)
        before = len(buf)
        while len(buf) < before + max(before - i, 1) and fill():
            pass
        return len(buf) > before

    def forget(i: int) -> int:  # drop the text before i (its line ends are counted): the new i
        nonlocal buf, col0
        if i < _ARRAY_CHUNK:
            return i
        k = buf.rfind("\n", 0, i)
        col0 = i - k - 1 if k >= 0 else col0 + i
        buf = buf[i:]
        return 0

    def skip_ws(j: int) -> int:
        while True:
            n = len(buf)
            while j < n and buf[j] in " \t\r\n":
                j += 1
            if j < n or not fill():
                return j

    i = skip_ws(0)
    if i < len(buf) and buf[i] == "\ufeff":
        i = skip_ws(i + 1)
    line = 1 + buf.count("\n", 0, i)
    if i >= len(buf) or buf[i] != "[":
        raise DataError(f"{name}:{line}: expected a JSON array of rows (or one JSON object per line)")
    pos = i + 1
    i = skip_ws(pos)
    line += buf.count("\n", pos, i)
    if i < len(buf) and buf[i] == "]":
        return
    while True:
        i = forget(i)
        while True:
            try:
                with userfiles.parsing(f"{name}:{line}", data_error):
                    obj, end = dec.raw_decode(buf, i)
                if end < len(buf) or not grow(i):  # (a row ending where the text read ends may go on: a number)
                    break
            except json.JSONDecodeError as e:
                # the text read may end inside the row: read more, decode it again
                if (e.pos >= len(buf) - 8 or e.msg.startswith("Unterminated string")) and grow(i):
                    continue
                k = buf.rfind("\n", 0, e.pos)
                col = e.pos - k if k >= 0 else col0 + e.pos + 1
                ln = line + buf.count("\n", i, e.pos)
                raise DataError(f"{name}:{ln}: not valid JSON ({e.msg}, column {col})")
        yield f"{name}:{line}", obj
        j = skip_ws(end)
        if j >= len(buf):
            raise DataError(f"{name}:{line + buf.count(chr(10), i, j)}: the JSON array is not closed (missing `]`)")
        if buf[j] == "]":
            return
        if buf[j] != ",":
            ln = line + buf.count("\n", i, j)
            raise DataError(f"{name}:{ln}: not valid JSON (expected `,` or `]` after a row)")
        k = skip_ws(j + 1)
        line += buf.count("\n", i, k)
        i = k


#: the longest line a JSON-lines file may have: a longer one is not a row but the file on one line (line ends of
#: another system — lone CR —, or not JSON lines at all), and is not read into memory whole
MAX_LINE_BYTES = 256 << 20


def line_too_long(name: str, ln: int) -> DataError:
    return data_error(f"{name}:{ln}", f"a line longer than {MAX_LINE_BYTES >> 20} MiB: not JSON lines (one object "
                                      "per line, each line ending with \\n; lone CR line ends make one line of a file)")


def _lines(fh: IO[bytes], name: str) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of a binary file, refusing a line longer than :data:`MAX_LINE_BYTES`."""
    ln = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        ln += 1
        if len(raw) > MAX_LINE_BYTES:
            raise line_too_long(name, ln)
        yield ln, raw


def _jsonl_records(open_bin: Callable[[], IO[bytes]], name: str) -> Iterator[tuple[str, Any]]:
    with open_bin() as fh:
        yield from jsonl_records(_lines(fh, name), name)


def jsonl_records(numbered: Iterable[tuple[int, bytes]], name: str) -> Iterator[tuple[str, Any]]:
    """``(line number, bytes)`` lines of JSON lines → ``(file:line, object)``, a :class:`RowError` for a line that
    is not JSON or not UTF-8; blank lines skipped; line 1 may start with a UTF-8 BOM (another BOM is refused)."""
    for ln, raw in numbered:
        if ln == 1:
            why = userfiles.bom_problem(raw[:4096])
            if why:
                raise DataError(f"{name}: {why}")
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        raw = raw.rstrip(b"\r\n")  # (a JSON error's column is on this line, however it was cut out of the file)
        if not raw.strip():
            continue
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield f"{name}:{ln}", RowError("", userfiles.not_utf8(raw, e.start))
            continue
        yield f"{name}:{ln}", _row_json(s)


def json_lines_head(head: bytes) -> bool:
    """Whether a ``.json`` file whose first bytes are ``head`` holds JSON lines (its first value an object), not an
    array."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").startswith(b"{")


def _text_records(open_bin: Callable[[], IO[bytes]], name: str, suffix: str,
                  damaged: str = "not a valid gzip file") -> Iterator[tuple[str, Any]]:
    """The records of one data file; ``open_bin()`` opens it afresh as bytes (decompressed); ``damaged``: what a
    stream that cannot be decompressed is said to be."""
    try:
        if suffix in (".jsonl", ".ndjson"):
            yield from _jsonl_records(open_bin, name)
            return
        # .json: an array, or (commonly) JSON lines in a .json file
        with open_bin() as fh:
            head = fh.read(4096)
        why = userfiles.bom_problem(head)
        if why:
            raise DataError(f"{name}: {why}")
        if json_lines_head(head):
            yield from _jsonl_records(open_bin, name)
            return
        with open_bin() as fh:  # (a chunk at a time: what is held is the row being read, not the file)
            yield from _json_array_records(userfiles.utf8_chunks(fh, name, data_error), name)
    except userfiles.GZIP_ERRORS as e:
        raise DataError(f"{name}: {damaged} ({e})") from None
    except OSError as e:
        raise DataError(f"{name}: {userfiles.os_reason(e)}") from None


class Source:
    """A data file (or an archive member) with its image lookup."""

    def __init__(self, display: str):
        self.display = display

    def records(self) -> Iterator[tuple[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    #: how a missing image is described ("image `x` <missing_image>")
    missing_image = "not found"

    def image(self, ref: str, materialize: bool = True) -> Optional[str]:
        return None


class FileSource(Source):
    def __init__(self, path: Path, display: str | None = None):
        super().__init__(display or str(path))
        self.path = path
        self.missing_image = f"not found in {path.parent}"

    def records(self) -> Iterator[tuple[str, Any]]:
        p = self.path
        yield from _text_records(lambda: userfiles.open_binary(p, self.display, data_error),
                                 self.display, data_suffix(p.name))

    def image(self, ref: str, materialize: bool = True) -> Optional[str]:
        if os.path.isabs(ref):
            return ref if os.path.isfile(ref) else None
        cand = (self.path.parent / ref)
        if cand.is_file():
            return str(cand.resolve())
        return None


class MultiSource(Source):
    """Several data files — a folder's, in name order, or the comma-separated sources of a data path, in
    the order written — read one after the other."""

    def __init__(self, parts: list[Source], display: str):
        super().__init__(display)
        self.parts = parts

    def records(self) -> Iterator[tuple[str, Any]]:
        for p in self.parts:
            yield from p.records()

    def image(self, ref: str, materialize: bool = True) -> Optional[str]:
        for p in self.parts:
            r = p.image(ref, materialize)
            if r:
                return r
        return None


def plain_files(src: Source) -> list[FileSource] | None:
    """The plain local files a source reads (itself, or a folder's / a data path's parts), or None when any part is
    something else (an archive, an S3 object)."""
    parts = src.parts if isinstance(src, MultiSource) else [src]
    return list(parts) if all(type(p) is FileSource for p in parts) else None


#: what reading a zip archive's member may raise: damaged (its deflate stream too), an unknown method, encrypted
ZIP_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error)
#: what a member ZIP_ERRORS stop is said to be
ZIP_UNREADABLE = "cannot read it from the archive"


class ZipSource(Source):
    def __init__(self, path: Path, display: str | None = None):
        self.path = path
        self.zip_display = display or str(path)
        try:
            self.zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise DataError(f"{self.zip_display}: not a valid zip archive")
        except OSError as e:
            raise DataError(f"{self.zip_display}: {userfiles.os_reason(e)}") from None
        for info in self.zf.infolist():
            why = _unsafe_member(info)
            if why:
                raise DataError(f"{self.zip_display}: member `{info.filename}` {why}; the archive is refused")
        names = [n for n in self.zf.namelist() if not n.startswith("__MACOSX/") and not n.endswith("/")]
        self.names = set(names)
        self.member = _pick_data_member(names, self.zip_display)
        super().__init__(f"{self.zip_display}/{self.member}")
        self.missing_image = "not in archive"
        self.base = posixpath.dirname(self.member)
        self._extract_dir: Path | None = None

    def records(self) -> Iterator[tuple[str, Any]]:
        zf, m = self.zf, self.member
        try:  # (a member whose deflate stream is damaged: the archive's fault, not a gzip file's)
            yield from _text_records(lambda: userfiles.maybe_gunzip(zf.open(m)), self.display, data_suffix(m),
                                     damaged=ZIP_UNREADABLE)
        except ZIP_ERRORS as e:
            raise DataError(f"{self.display}: {ZIP_UNREADABLE} ({e})") from None

    def _member_for(self, ref: str) -> Optional[str]:
        ref = ref.replace("\\", "/")
        while ref.startswith("./"):
            ref = ref[2:]
        for cand in (posixpath.normpath(posixpath.join(self.base, ref)) if self.base else None,
                     posixpath.normpath(ref)):
            if cand and cand in self.names:
                return cand
        return None

    def image(self, ref: str, materialize: bool = True) -> Optional[str]:
        m = self._member_for(ref)
        if m is None:
            return None
        if not materialize:
            return m
        if self._extract_dir is None:
            st = self.path.stat()
            h = hashlib.sha256(f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
            self._extract_dir = cache_dir() / "zips" / h
        dest, why = inside(self._extract_dir, m)
        if dest is None:  # (every member was checked when the archive was opened: a link already in the cache)
            raise DataError(f"{self.zip_display}: member `{m}` {why}; the archive is refused")
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}.part{os.getpid()}")
            with self.zf.open(m) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dest)
        return str(dest)


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why an archive member may not be extracted under a folder: absolute, ``..``, or a symbolic link."""
    why = escape_reason(info.filename)
    if why:
        return why
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def _pick_data_member(names: list[str], display: str) -> str:
    data = [n for n in names if is_data_name(n) and posixpath.basename(n) not in _SKIP_NAMES]
    for want in ("train.json", "train.jsonl"):
        hits = sorted((n for n in data if posixpath.basename(n).lower().removesuffix(".gz") == want),
                      key=lambda n: n.count("/"))
        if hits:
            return hits[0]
    if len(data) == 1:
        return data[0]
    if not data:
        raise DataError(f"{display}: no train.json or .json/.jsonl file inside the archive")
    raise DataError(f"{display}: several data files inside ({', '.join(sorted(data)[:5])}); "
                    "name the training one train.json")


def open_local(path: Path, display: str | None = None) -> Source:
    disp = display or str(path)
    st = userfiles.stat_user_path(path, disp, data_error)  # (before any open: nothing here may block)
    if stat.S_ISDIR(st.st_mode):
        try:
            files = sorted(p for p in path.iterdir() if p.is_file() and is_data_name(p.name)
                           and p.name not in _SKIP_NAMES)
        except OSError as e:
            raise DataError(f"{disp}: {userfiles.os_reason(e)}") from None
        train = [p for p in files if p.name.lower().removesuffix(".gz").rsplit(".", 1)[0] == "train"]
        if train:
            files = train[:1]
        if not files:
            raise DataError(f"{disp}: no .json or .jsonl file in the folder")
        parts = [FileSource(p, f"{disp.rstrip('/')}/{p.name}") for p in files]
        return parts[0] if len(parts) == 1 else MultiSource(parts, disp)
    kind = userfiles.special_kind(st.st_mode)
    if kind:
        raise DataError(f"{disp}: is {kind}, not a data file")
    suf = path.suffix.lower()
    if suf == ".zip":
        return ZipSource(path, disp)
    if is_data_name(path.name):
        return FileSource(path, disp)
    if zipfile.is_zipfile(path):
        return ZipSource(path, disp)
    raise DataError(f"{disp}: unsupported file type `{suf or path.name}` (use .json, .jsonl, their .gz, .zip "
                    "or a folder)")


def open_source(path: str, res: dict | None = None, secrets: dict | None = None) -> Source:
    """A training/validation path (local, ``finetui:samples/…`` or ``s3://…``, or several separated by
    commas) → a Source."""
    parts = data_paths(path)
    if len(parts) > 1:
        return MultiSource([open_source(p, res, secrets) for p in parts], ", ".join(parts))
    path = split_format(parts[0])[0] if parts else str(path)  # (a source's own format is its reader's business)
    if path.startswith(SAMPLES_PREFIX):
        return open_local(resolve_sample(path), path)
    if path.startswith("s3://"):
        from engine.data import s3

        local = s3.fetch(path, res or {}, secrets)
        return open_local(local, path)
    return open_local(Path(os.path.expanduser(path)), path)

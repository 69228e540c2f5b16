"""Reading files a user names (data, presets, imported configs) without hanging, crashing or guessing.

Every such file goes through here, so each way a file can be wrong is handled once:

* what is not a regular file (a FIFO, a device, a socket) is refused before it is opened for
  reading (a FIFO would block, ``/dev/zero`` never ends); a path that cannot be looked up
  (too long, not a folder, permission) is said in words;
* gzip-compressed files (``.gz``, or the gzip magic bytes) are read transparently;
* text must be UTF-8 (a UTF-8 byte-order mark is fine): UTF-16/32 and other encodings are named
  with the line of the first bad byte;
* parsing that recurses without end (thousands of nesting levels) or meets an integer with
  thousands of digits (Python's int-string limit) is one line, not a traceback.

Each function takes ``error(where, reason) -> Exception`` so each caller raises its own kind of
:class:`engine.errors.FinetuiError` (``where`` is ``path`` or ``path:line``).
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import zlib
from contextlib import contextmanager
from typing import IO, Callable, Iterator

from engine.datapaths import path_problem
from engine.errors import FinetuiError

ErrorFactory = Callable[[str, str], Exception]

GZIP_MAGIC = b"\x1f\x8b"
NL = b"\n"
#: the errors a truncated or damaged gzip stream raises while it is read
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def user_error(where: str, reason: str) -> FinetuiError:
    return FinetuiError(reason, path=where)


def os_reason(e: OSError) -> str:
    """An OSError about a user's path, in words (no errno numbers, no repeated path)."""
    if e.errno == errno.ENAMETOOLONG:
        return path_problem(str(e.filename or "")) or "a part of the path is longer than the file system allows"
    return {errno.ENOENT: "no such file or folder", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is not a folder",
            errno.ELOOP: "too many levels of symbolic links", errno.EISDIR: "is a folder, not a file",
            errno.EIO: "input/output error reading it"}.get(e.errno or 0, (e.strerror or str(e)).lower())


def special_kind(mode: int) -> str | None:
    """What a non-regular file is (``a named pipe (FIFO)``…); None for a regular file."""
    for test, what in _KINDS:
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def stat_user_path(path: str | os.PathLike[str], display: str | None = None,
                   error: ErrorFactory = user_error) -> os.stat_result:
    """``os.stat`` of a path a user gave, or ``error`` in words (too long, missing, permission)."""
    disp = display or str(path)
    why = path_problem(os.fspath(path)) if isinstance(os.fspath(path), str) else None
    if why:
        raise error(disp, why)
    try:
        return os.stat(path)
    except OSError as e:
        raise error(disp, os_reason(e)) from None


def open_binary(path: str | os.PathLike[str], display: str | None = None, error: ErrorFactory = user_error,
                *, decompress: bool = True) -> IO[bytes]:
    """A regular file opened for reading bytes (gzip decompressed when it is gzip), never blocking:
    FIFOs, devices, sockets and folders are refused before they are read."""
    disp = display or str(path)
    kind = special_kind(stat_user_path(path, disp, error).st_mode)
    if kind:
        raise error(disp, f"is {kind}, not a regular file" if kind != "a folder" else "is a folder, not a file")
    try:  # O_NONBLOCK: a file swapped for a FIFO since the stat cannot make open() wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(disp, os_reason(e)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(disp, f"is {special_kind(st.st_mode)}, not a regular file")
    os.set_blocking(fd, True)
    fh: IO[bytes] = os.fdopen(fd, "rb")
    if decompress and is_gzip(fh):
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    return fh


def is_gzip(fh: IO[bytes]) -> bool:
    """Whether a file opened for reading bytes (at its start, which it is left at) holds gzip."""
    head = fh.read(2)
    fh.seek(0)
    return head == GZIP_MAGIC


def maybe_gunzip(fh: IO[bytes]) -> IO[bytes]:
    """``fh`` decompressed when it holds gzip (a stream that can seek: a file or a zip member)."""
    if fh.seekable() and is_gzip(fh):
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    return fh


def bom_problem(head: bytes) -> str | None:
    """Why text starting with ``head`` is not UTF-8 (a UTF-16/32 byte-order mark, NUL bytes); None if fine."""
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                      (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if head.startswith(bom):
            return (f"the file is {name} text (it starts with a {name} byte-order mark); save it as UTF-8 "
                    f"(e.g. `iconv -f {name} -t UTF-8`)")
    if b"\0" in head:
        return "the file holds NUL bytes: UTF-16 text without a byte-order mark, or not a text file; save it as UTF-8"
    return None


def decode_utf8(data: bytes, display: str, error: ErrorFactory = user_error, first_line: int = 1) -> str:
    """``data`` as text (a UTF-8 byte-order mark dropped), or ``error`` naming the line of the first bad byte."""
    if first_line == 1:
        why = bom_problem(data[:4096])
        if why:
            raise error(display, why)
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(NL, 0, e.start)
        raise error(f"{display}:{line}", not_utf8(data, e.start)) from None


def not_utf8(data: bytes, pos: int, col_before: int = 0) -> str:
    """Why ``data`` is not UTF-8, its byte ``pos`` being the first bad one (``col_before``: bytes of its line that
    came before ``data``, when it is a part of a file)."""
    k = data.rfind(NL, 0, pos)
    col = pos - k if k >= 0 else col_before + pos + 1
    return (f"not UTF-8 text (byte 0x{data[pos]:02x} at column {col}: Latin-1 or another encoding?); "
            "save the file as UTF-8")


def utf8_chunks(fh: IO[bytes], display: str, error: ErrorFactory = user_error,
                size: int = 1 << 20) -> Iterator[str]:
    """The text of a binary stream, ``size`` bytes of it decoded at a time (a character cut by a read: completed by
    the next), a UTF-8 byte-order mark dropped — what :func:`decode_utf8` gives whole; its error, naming the line
    and column of the first bad byte, when the text comes to it."""
    import codecs

    carry, first, lines, col = b"", True, 0, 0  # (col: bytes of the current line before ``piece``)
    while True:
        chunk = fh.read(max(size, 4096) if first else size)  # (the first: the whole head a byte-order mark is in)
        if first:
            why = bom_problem(chunk[:4096])
            if why:
                raise error(display, why)
            chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
        piece, final = carry + chunk, not chunk
        try:
            text, used = codecs.utf_8_decode(piece, "strict", final)
        except UnicodeDecodeError as e:
            line = 1 + lines + piece.count(NL, 0, e.start)
            raise error(f"{display}:{line}", not_utf8(piece, e.start, col)) from None
        k = piece.rfind(NL, 0, used)
        lines, col = lines + piece.count(NL, 0, used), (used - k - 1 if k >= 0 else col + used)
        carry = piece[used:]
        if text:
            yield text
        if final:
            return


def read_text(path: str | os.PathLike[str], display: str | None = None, error: ErrorFactory = user_error) -> str:
    """A user's text file, whole: regular, UTF-8 (gzip decompressed)."""
    disp = display or str(path)
    with open_binary(path, disp, error) as fh:
        try:
            data = fh.read()
        except GZIP_ERRORS as e:
            raise error(disp, f"not a valid gzip file ({e})") from None
        except OSError as e:
            raise error(disp, os_reason(e)) from None
    return decode_utf8(data, disp, error)


def parse_reason(e: BaseException) -> str | None:
    """The user's fault behind a parser's exception: nesting too deep, an integer too long; None otherwise."""
    if isinstance(e, RecursionError):
        return "nested too deeply (thousands of levels of lists or tables)"
    if isinstance(e, ValueError) and "integer string conversion" in str(e):
        return "holds an integer with thousands of digits"
    return None


@contextmanager
def parsing(where: str, error: ErrorFactory = user_error) -> Iterator[None]:
    """Turn what a parser raises on hostile input (deep nesting, huge integers) into ``error(where, …)``."""
    try:
        yield
    except (RecursionError, ValueError) as e:
        why = parse_reason(e)
        if why is None:
            raise
        raise error(where, why) from None


def text_depth(text: str, limit: int) -> int:
    """How deeply ``[`` / ``{`` nest in JSON or YAML text (outside quoted strings and comments), counted up to
    ``limit + 1``, and how far a line is indented (in steps of two columns): a cheap look before a parser
    that takes minutes on thousands of levels (PyYAML's time grows with the cube of the depth).  A quote opens
    a string only where a token starts (``it's`` is no string) and no string spans lines here, so text cannot
    hide brackets from this count."""
    depth = best = 0
    quote = ""
    prev = "\n"  # the last character outside strings that is not a space
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\n":
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
                prev = c
        elif c in "\"'" and prev in "\n[{,:-?":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n"):
            j = text.find("\n", i)
            i, prev = (n, "\n") if j < 0 else (j, prev)
            continue
        elif c in "[{":
            depth += 1
            if depth > best:
                best = depth
                if best > limit:
                    return best
        elif c in "]}":
            depth = max(0, depth - 1)
        if not quote and c not in " \t":
            prev = c
        i += 1
    indent = max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0)
    return max(best, indent // 2)


def max_depth(obj: object, limit: int) -> int:
    """How deeply lists / dicts nest in ``obj``, counted up to ``limit + 1`` (no recursion)."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (list, tuple, dict)):
            depth = max(depth, d)
            if depth > limit:
                return depth
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return depth


def exists(path: str | os.PathLike[str]) -> bool:
    """``Path.exists`` for a path a user typed: False (not an exception) for a path too long or with a NUL."""
    try:
        return os.path.exists(os.path.expanduser(os.fspath(path)))
    except (OSError, ValueError):
        return False

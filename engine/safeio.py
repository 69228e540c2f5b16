"""Files from outside stay in their folder; files finetui writes are replaced whole or not at all.

``inside(dest, name)`` resolves a path an archive, a bucket or an upload names against its
destination and says why it may not be written there (absolute, ``..``, through a link);
``atomic_write(path, data)`` writes a unique temporary file beside ``path``, flushes and
fsyncs it, then renames it over ``path`` — a crash or a full disk leaves the old file as it
was.  Standard library only (the remote agent uses it).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tempfile
from pathlib import Path


def escape_reason(name: str) -> str | None:
    """Why a relative path from outside (``a/b.png``; ``\\`` counts as a separator) may not be joined to a
    destination folder, or None when it may: absolute, or climbing out with ``..``."""
    n = name.replace("\\", "/")
    if not n or n.startswith("/") or (n[0].isalpha() and n[1:2] == ":" and n[2:3] in ("", "/")):  # (or C:/)
        return "is an absolute path"
    if "\0" in n:
        return "contains a NUL character"
    norm = posixpath.normpath(n)
    if norm == ".." or norm.startswith("../"):
        return "climbs out of its folder (`..`)"
    return None


def inside(dest: Path, name: str) -> tuple[Path | None, str | None]:
    """``dest/name`` resolved — (path, None) when it stays inside ``dest`` (links already there followed),
    else (None, why)."""
    why = escape_reason(name)
    if why:
        return None, why
    root = Path(dest).resolve()
    target = (root / name.replace("\\", "/")).resolve()
    if target != root and root not in target.parents:
        return None, f"resolves outside {root}"
    return target, None


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` atomically: a unique temporary file in the same folder, flushed and
    fsynced, then renamed over it.  The old file (if any) keeps its permissions; nothing is left behind on
    failure."""
    path = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else data
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a folder, a device, a FIFO: never renamed over
            raise FileExistsError(errno.EEXIST, "exists and is not a regular file; it is not replaced", str(path))
        mode = st.st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass

"""A deterministic, streaming tar writer.

Only what a model image needs: directories and regular files. Every header is normalised
(mtime fixed, uid/gid 0, no user or group names, mode 0644/0755, no xattrs); long or non-ASCII
names use PAX records. The same entries in the same order always give the same bytes.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable

BLOCK = 512
FILE_MODE = 0o644
DIR_MODE = 0o755

Sink = Callable[[bytes | memoryview], None]


def _header(name: str, size: int, is_dir: bool, mtime: int) -> bytes:
    info = tarfile.TarInfo(name + "/" if is_dir and not name.endswith("/") else name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = DIR_MODE if is_dir else FILE_MODE
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class TarWriter:
    """Writes tar entries to `sink`; the caller streams each file's content after its header."""

    def __init__(self, sink: Sink, mtime: int = 0) -> None:
        self._sink = sink
        self._mtime = mtime
        self._open: int | None = None  # bytes still owed for the current file
        self._written = 0

    def add_dir(self, name: str) -> None:
        self._check_closed_entry()
        self._sink(_header(name, 0, True, self._mtime))

    def begin_file(self, name: str, size: int) -> None:
        self._check_closed_entry()
        self._sink(_header(name, size, False, self._mtime))
        self._open, self._written = size, 0

    def write(self, data: bytes | memoryview) -> None:
        if self._open is None:
            raise RuntimeError("write() outside of a file entry")
        self._written += len(data)
        if self._written > self._open:
            raise ValueError("file grew while it was being packed")
        self._sink(data)

    def end_file(self) -> None:
        if self._open is None:
            raise RuntimeError("end_file() without begin_file()")
        if self._written != self._open:
            raise ValueError(
                f"file changed while it was being packed: {self._written} of {self._open} bytes"
            )
        self._sink(padding(self._open))
        self._open = None

    def close(self) -> None:
        self._check_closed_entry()
        self._sink(b"\0" * (2 * BLOCK))

    def _check_closed_entry(self) -> None:
        if self._open is not None:
            raise RuntimeError("previous file entry not finished")


def parent_dirs(paths: list[str]) -> list[str]:
    """All ancestor directories of `paths` (relative, '/'-separated), each once, sorted."""
    dirs: set[str] = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)

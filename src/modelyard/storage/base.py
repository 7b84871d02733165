"""The storage-driver contract.

Paths are relative, `/`-separated keys such as `blobs/sha256/ab/abcd.../data`; a driver maps
them to its medium. Drivers store bytes and nothing else: they know nothing of digests,
manifests or repositories. Every driver must pass `tests/registry/test_storage.py`.

Missing paths: reads (`get`, `open`, `move` of a missing source) raise
`modelyard.errors.PathNotFound`; `stat` returns None; `list` of a missing directory returns
an empty list; `delete` of a missing path returns False. Other failures raise `StorageError`.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    is_dir: bool


class Hasher(Protocol):
    def update(self, data: memoryview, /) -> None: ...


class Appender(Protocol):
    """Appends to a file; `close()` makes what was written durable. Leaving its `with` block
    by an exception closes it without that guarantee (the caller truncates to what it knows
    is valid)."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Appender: ...

    def __exit__(self, *exc: object) -> None: ...


class FileWriter(Protocol):
    """A streaming writer whose content becomes visible only on `commit()`.

    Until then nothing is visible at the destination path; a writer that is never committed
    (the process dies, or `cancel()` is called) leaves no trace under that path.
    """

    path: str
    size: int

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self) -> None:
        """Flush to stable storage, then replace the destination atomically."""

    def cancel(self) -> None:
        """Drop what was written. Safe to call after `commit()` (then it does nothing)."""


@runtime_checkable
class StorageDriver(Protocol):
    def stat(self, path: str) -> FileInfo | None:
        """Size and mtime of a file or directory; None if the path does not exist."""

    def get(self, path: str) -> bytes:
        """The whole content of a small file. Raises PathNotFound."""

    def put(self, path: str, data: bytes) -> None:
        """Write a small file atomically (temp file, fsync, rename); parents are created."""

    def writer(self, path: str) -> FileWriter:
        """A streaming atomic writer for `path` (see `FileWriter`)."""

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        """An unbuffered binary reader positioned at `offset`. Raises PathNotFound."""

    def append(self, path: str, hasher: Hasher | None = None) -> Appender:
        """A writer appending to `path` (created if missing). Not atomic: the caller keeps
        its own record of how many bytes are valid (see `truncate`).

        With `hasher`, every byte written is also given to `hasher.update`, in order, by the
        time `close()` returns (the driver may hash on another thread meanwhile)."""

    def truncate(self, path: str, size: int) -> None:
        """Cut a file to `size` bytes. Raises PathNotFound."""

    def sync(self, path: str) -> None:
        """Flush a file's content to stable storage. Raises PathNotFound."""

    def list(self, path: str) -> list[str]:
        """Names of the direct children of a directory, sorted; [] if it does not exist."""

    def delete(self, path: str) -> bool:
        """Remove a file or a whole directory tree. False if it did not exist."""

    def move(self, src: str, dst: str) -> None:
        """Rename `src` to `dst` atomically, replacing `dst`. Raises PathNotFound for `src`."""

    def purge_temp(self, older_than: float) -> builtins.list[str]:
        """Delete temp files of writers that were never committed or cancelled (the process
        died) and last modified before the timestamp `older_than`; returns their paths."""

    def local_path(self, path: str) -> str | None:
        """An OS path for zero-copy serving (sendfile), or None if the driver has none."""

"""A file writer that bypasses the page cache (O_DIRECT) for multi-GB blobs.

On the machines we measured, buffered writes plus fsync ran at about 330 MB/s and cost more CPU
in the kernel than hashing the same bytes, while O_DIRECT writes of the same data ran at
1.7 GB/s. Data is staged in a page-aligned buffer and written in aligned blocks; the tail is
padded to the alignment and the file truncated to its true size. Where the file system refuses
O_DIRECT (tmpfs, some overlay setups) the writer falls back to ordinary buffered writes.
"""

from __future__ import annotations

import mmap
import os

ALIGN = 4096
STAGING = 8 << 20


class DirectWriter:
    """Write-only, append-only file; `close()` fsyncs. Not thread-safe."""

    def __init__(self, path: str | os.PathLike[str], staging: int = STAGING) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self.direct = hasattr(os, "O_DIRECT")
        try:
            self._fd = os.open(path, flags | (os.O_DIRECT if self.direct else 0), 0o644)
        except OSError:
            self.direct = False
            self._fd = os.open(path, flags, 0o644)
        self._buf = mmap.mmap(-1, staging)
        self._view = memoryview(self._buf)
        self._fill = 0
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        pos = 0
        while pos < n:
            take = min(len(self._view) - self._fill, n - pos)
            self._view[self._fill : self._fill + take] = data[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == len(self._view):
                self._write_all(self._view)
                self._fill = 0
        self.size += n
        return n

    def _write_all(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])

    def close(self) -> None:
        """Write what is staged, fsync and close."""
        if self._fd < 0:
            return
        try:
            if self._fill:
                if self.direct:
                    padded = -(-self._fill // ALIGN) * ALIGN
                    self._view[self._fill : padded] = bytes(padded - self._fill)
                    self._write_all(self._view[:padded])
                    os.ftruncate(self._fd, self.size)
                else:
                    self._write_all(self._view[: self._fill])
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
            self._view.release()
            self._buf.close()

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()

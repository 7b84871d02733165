"""A file writer that bypasses the page cache (O_DIRECT) for multi-GB blobs.

On the machines we measured, buffered writes plus fsync ran at about 330 MB/s and cost more CPU
in the kernel than hashing the same bytes, while O_DIRECT writes of the same data ran at
1.7 GB/s. Data is staged in page-aligned buffers and written in aligned blocks by a background
thread while the caller fills the other buffer (hashing and disk writes overlap); the tail is
padded to the alignment and the file truncated to its true size. Where the file system refuses
O_DIRECT (tmpfs, some overlay setups) the writer falls back to ordinary writes.

Given a hasher, the writer also hashes what it writes, each full buffer on a worker thread
while the caller fills the other one: the caller's thread then only copies (a registry
receiving a blob hashed and copied on its event loop thread; this took the hash off it).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

ALIGN = 4096
STAGING = 8 << 20

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


class Hasher(Protocol):
    def update(self, data: memoryview, /) -> None: ...


def _writer_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="directio")
        return _pool


class DirectWriter:
    """Write-only, sequential file writer; `close()` writes the rest and fsyncs; leaving a
    `with` block by an exception closes without writing what is staged. Not thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        staging: int = STAGING,
        append: bool = False,
        hasher: Hasher | None = None,
    ) -> None:
        """Open `path` for writing: truncated, or with `append`, after its current content.

        `hasher.update` is called with every byte given to `write`, in order, by `close()` at
        the latest (not after `abort()`: then its state is undefined).
        """
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        if not append:
            flags |= os.O_TRUNC
        self.direct = hasattr(os, "O_DIRECT")
        try:
            self._fd = os.open(path, flags | (os.O_DIRECT if self.direct else 0), 0o644)
        except OSError:
            self.direct = False
            self._fd = os.open(path, flags, 0o644)
        self._bufs = [mmap.mmap(-1, staging), mmap.mmap(-1, staging)]
        self._view = memoryview(self._bufs[0])
        self._spare = memoryview(self._bufs[1])
        self._pending: list[Future[None]] = []
        self._hasher = hasher
        #: Bytes at the start of the current buffer that were read back, not written to us.
        self._unhashed = 0
        self._fill = 0
        #: Bytes given to `write`.
        self.size = 0
        start = os.fstat(self._fd).st_size if append else 0
        # Writes go to aligned file offsets: an unaligned end of the existing content is read
        # back into the staging buffer and written again (same bytes) with what follows.
        self._pos = start - start % ALIGN if self.direct else start
        self._end = start
        if self._pos < start:
            with open(path, "rb") as f:
                f.seek(self._pos)
                head = f.read(start - self._pos)
            self._view[: len(head)] = head
            self._fill = self._unhashed = len(head)

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        pos = 0
        while pos < n:
            take = min(len(self._view) - self._fill, n - pos)
            self._view[self._fill : self._fill + take] = data[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == len(self._view):
                self._submit(self._view)
                self._fill = 0
        self.size += n
        self._end += n
        return n

    def _submit(self, view: memoryview) -> None:
        """Hand a full buffer to the writer thread and continue in the other one."""
        self._wait()
        pool = _writer_pool()
        self._pending = [pool.submit(self._write_at, view, self._pos)]
        if self._hasher is not None:
            self._pending.append(pool.submit(_hash, self._hasher, view[self._unhashed :]))
            self._unhashed = 0
        self._pos += len(view)
        self._view, self._spare = self._spare, self._view

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = [exc for future in pending if (exc := future.exception()) is not None]
        if errors:
            raise errors[0]

    def _write_at(self, view: memoryview, pos: int) -> None:
        done = 0
        while done < len(view):
            try:
                done += os.pwrite(self._fd, view[done:], pos + done)
            except OSError as exc:
                # Some file systems accept O_DIRECT at open and refuse the write (EINVAL):
                # carry on with ordinary writes (the aligned layout stays valid).
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                fcntl.fcntl(
                    self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT
                )
                self.direct = False

    def close(self) -> None:
        """Write what is staged, fsync and close."""
        if self._fd < 0:
            return
        try:
            self._wait()
            if self._hasher is not None and self._fill > self._unhashed:
                _hash(self._hasher, self._view[self._unhashed : self._fill])
            if self._fill:
                if self.direct:
                    padded = -(-self._fill // ALIGN) * ALIGN
                    self._view[self._fill : padded] = bytes(padded - self._fill)
                    self._write_at(self._view[:padded], self._pos)
                    os.ftruncate(self._fd, self._end)
                else:
                    self._write_at(self._view[: self._fill], self._pos)
            os.fsync(self._fd)
        finally:
            self._release()

    def abort(self) -> None:
        """Close without writing what is staged (a write in flight is waited for)."""
        if self._fd >= 0:
            try:
                for future in self._pending:
                    future.exception()
                self._pending = []
            finally:
                self._release()

    def _release(self) -> None:
        os.close(self._fd)
        self._fd = -1
        self._view.release()
        self._spare.release()
        for buf in self._bufs:
            buf.close()

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()


def _hash(hasher: Hasher, view: memoryview) -> None:
    try:
        hasher.update(view)
    finally:
        view.release()  # the staging buffer can be closed only once no view of it is left

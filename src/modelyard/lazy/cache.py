"""A content-addressed local cache, shared by every model, revision and process.

Entries are files named by the sha256 of their content (`blobs/sha256/<hex>`): whole model
files, eStargz chunks and TOCs alike, so the same bytes are stored once whichever image or
layer they came from. Rules that make sharing safe:

- An entry appears only by `rename` of a complete, verified temp file: readers never see a
  partial entry, and two processes writing the same entry both write the same bytes.
- Eviction holds an exclusive `flock` on `lock`; materialising a file (hard link, reflink or
  copy) holds it shared, so an entry is never removed between lookup and link.
- Least recently used entries are evicted first when the total passes `max_size`; use sets
  the access time explicitly, so the order does not depend on the file system's atime mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from modelyard.directio import DirectWriter
from modelyard.errors import DigestMismatch
from modelyard.oci.digest import Digest

#: Default size bound: 20 GiB, or $MODELYARD_CACHE_SIZE (bytes, or with a K/M/G suffix).
DEFAULT_MAX_SIZE = 20 << 30
_FICLONE = 0x40049409


def _parse_size(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = value.strip().upper().removesuffix("B").removesuffix("I")
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


def default_root() -> Path:
    from modelyard.paths import cache_dir

    return cache_dir() / "content"


def _reflink(src: Path, dst: Path) -> bool:
    try:
        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        return True
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()
        return False


class ContentCache:
    """Files stored by sha256 digest under `root`, bounded to `max_size` bytes.

    Args:
        root: the cache directory (default: `modelyard.paths.cache_dir() / "content"`).
        max_size: evict least recently used entries past this many bytes
            (default: $MODELYARD_CACHE_SIZE, else 20 GiB).
    """

    def __init__(self, root: str | Path | None = None, max_size: int | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        if max_size is None:
            env = os.environ.get("MODELYARD_CACHE_SIZE")
            max_size = _parse_size(env) if env else DEFAULT_MAX_SIZE
        self.max_size = max_size
        self._blobs = self.root / "blobs" / "sha256"
        self._tmp = self.root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._lock_path.touch(exist_ok=True)
        self._known_total: int | None = None
        self._since_count = 0

    def path(self, digest: str) -> Path:
        d = Digest.parse(digest)
        if d.algorithm != "sha256":
            raise ValueError(f"the cache stores sha256 content only, not {digest}")
        return self._blobs / d.hex

    @contextlib.contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        with open(self._lock_path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _touch(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            st = path.stat()
            os.utime(path, (time.time(), st.st_mtime))

    def has(self, digest: str) -> bool:
        path = self.path(digest)
        if path.exists():
            self._touch(path)
            return True
        return False

    def get(self, digest: str) -> bytes | None:
        """The content of a small entry (a chunk, a TOC), verified, or None.

        An entry that does not match its digest (say, torn by a crash: small entries are
        written without fsync) is removed and reported missing.
        """
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        self._touch(path)
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Store a small entry under `digest` after checking it (no fsync: `get` verifies).

        Raises: DigestMismatch.
        """
        staged = self.stage(digest, durable=False)
        try:
            staged.write(data)
            staged.commit()
        finally:
            staged.discard()

    def stage(self, digest: str | None = None, durable: bool = True) -> Staged:
        """A temp file to stream an entry into; `commit()` verifies it and renames it into
        place (under `digest`, or under the digest of what was written when None).
        `durable` entries are fsynced before the rename: they are linked out unverified."""
        if digest is not None:
            self.path(digest)  # validate early
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="stage.")
        out: _Sink
        if durable:
            # Durable entries are whole files (GBs): O_DIRECT, fsynced on close.
            os.close(fd)
            out = DirectWriter(name)
        else:
            out = os.fdopen(fd, "wb")
        return Staged(self, digest, Path(name), out)

    @contextlib.contextmanager
    def writer(self, digest: str | None = None) -> Iterator[Staged]:
        """`stage()` as a context: committed on success, removed on any error."""
        staged = self.stage(digest)
        try:
            yield staged
            staged.commit()
        finally:
            staged.discard()

    def materialize(self, digest: str, dest: Path) -> str | None:
        """Make `dest` a file with the entry's content: reflink, hard link, else copy.

        Returns how ("reflink", "hardlink", "copy"), or None if the cache lacks the entry.
        `dest` appears atomically (temp name, then rename).
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with self._lock(exclusive=False):
            src = self.path(digest)
            if not src.exists():
                return None
            self._touch(src)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            how = "reflink"
            if not _reflink(src, tmp):
                try:
                    os.link(src, tmp)
                    how = "hardlink"
                except OSError:
                    shutil.copyfile(src, tmp)
                    how = "copy"
            os.rename(tmp, dest)
        return how

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, size on disk, path) of every entry."""
        out = []
        for p in self._blobs.iterdir():
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                out.append((st.st_atime, st.st_blocks * 512, p))
        return out

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def added(self, size: int, keep: str | None = None) -> None:
        """Account for a new entry; evict when the cache may have grown past its bound.

        The total is counted on disk at most every `max_size / 8` bytes added by this process
        (other processes' entries are seen at the next count), not on every commit.
        """
        self._since_count += size
        if (
            self._since_count >= max(1, self.max_size // 8)
            or self._known_total is None
            or (self._known_total + self._since_count > self.max_size)
        ):
            self.evict(keep=keep)

    def evict(self, max_size: int | None = None, keep: str | None = None) -> int:
        """Remove least recently used entries until the cache holds at most `max_size` bytes
        (the entry `keep`, just written, stays).

        Returns the number of bytes freed.
        """
        kept = self.path(keep) if keep else None
        limit = self.max_size if max_size is None else max_size
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        self._known_total, self._since_count = total, 0
        if total <= limit:
            return 0
        freed = 0
        with self._lock(exclusive=True):
            for _, size, path in sorted(entries):
                if total - freed <= limit:
                    break
                if path == kept:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    freed += size
        self._known_total = total - freed
        return freed


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...

    def close(self) -> None: ...


class Staged:
    """An entry being written: hashed as it is written, invisible until `commit()`."""

    def __init__(self, cache: ContentCache, digest: str | None, tmp: Path, f: _Sink) -> None:
        self._cache = cache
        self.expected = digest
        self.tmp = tmp
        self._f = f
        self._h = hashlib.sha256()
        self._closed = False
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes | memoryview) -> int:
        self._h.update(data)
        self.size += len(data)
        return self._f.write(data)

    def commit(self) -> str:
        """Verify and publish the entry; returns its digest.

        Raises: DigestMismatch (the temp file is removed).
        """
        try:
            self._closed = True
            self._f.close()  # a DirectWriter fsyncs here; small entries are verified on read
            actual = "sha256:" + self._h.hexdigest()
            if self.expected is not None and actual != self.expected:
                raise DigestMismatch(self.expected, actual, "content")
            os.chmod(self.tmp, 0o444)  # hard links share the inode: keep it from being edited
            os.rename(self.tmp, self._cache.path(actual))
        except BaseException:
            self.discard()
            raise
        self.digest = actual
        self._cache.added(self.size, keep=actual)
        return actual

    def discard(self) -> None:
        if not self._closed:
            self._closed = True
            if isinstance(self._f, DirectWriter):
                self._f.abort()
            else:
                self._f.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

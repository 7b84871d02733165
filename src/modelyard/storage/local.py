"""The local-disk driver: one directory tree, atomic writes by temp file + fsync + rename."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import stat as stat_mode
import uuid
from pathlib import Path
from typing import BinaryIO

from modelyard.directio import DirectWriter
from modelyard.errors import PathNotFound, StorageError
from modelyard.oci.layout import fsync_dir
from modelyard.storage.base import Appender, FileInfo, Hasher

_TMP_PREFIX = ".tmp-"


class _LocalWriter:
    def __init__(self, driver: LocalDriver, path: str) -> None:
        self.path = path
        self.size = 0
        self._final = driver._abs(path)
        os.makedirs(os.path.dirname(self._final), exist_ok=True)
        self._tmp = os.path.join(os.path.dirname(self._final), f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        self._f: BinaryIO | None = open(self._tmp, "xb", buffering=0)  # noqa: SIM115
        self._done = False

    def write(self, data: bytes | memoryview) -> None:
        assert self._f is not None, "writer already closed"
        view = memoryview(data)
        while view:
            n = self._f.write(view)
            view = view[n:]
            self.size += n

    def commit(self) -> None:
        assert self._f is not None, "writer already closed"
        try:
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None
            os.replace(self._tmp, self._final)
            fsync_dir(Path(self._final).parent)  # makes the rename durable
        except OSError as exc:
            self.cancel()
            raise StorageError(f"cannot write {self.path}: {exc}") from exc
        self._done = True

    def cancel(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if not self._done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._done = True

    def __enter__(self) -> _LocalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class LocalDriver:
    """Stores keys as files under `root`. Temp files start with `.tmp-` and sit beside their
    destination, so a rename never crosses file systems."""

    def __init__(self, root: str | Path) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _abs(self, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise StorageError(f"invalid storage path {path!r}")
        return os.path.join(self.root, *parts)

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = os.stat(self._abs(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileInfo(path, st.st_size, st.st_mtime, stat_mode.S_ISDIR(st.st_mode))

    def get(self, path: str) -> bytes:
        try:
            with open(self._abs(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise PathNotFound(path) from exc

    def put(self, path: str, data: bytes) -> None:
        w = self.writer(path)
        try:
            w.write(data)
            w.commit()
        finally:
            w.cancel()

    def writer(self, path: str) -> _LocalWriter:
        try:
            return _LocalWriter(self, path)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc

    def open(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self._abs(path), "rb", buffering=0)  # noqa: SIM115
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise PathNotFound(path) from exc
        if offset:
            f.seek(offset)
        return f

    def append(self, path: str, hasher: Hasher | None = None) -> Appender:
        full = self._abs(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        # Uploads are GBs: bypass the page cache (see modelyard.directio).
        return DirectWriter(full, append=True, hasher=hasher)

    def truncate(self, path: str, size: int) -> None:
        try:
            os.truncate(self._abs(path), size)
        except FileNotFoundError as exc:
            raise PathNotFound(path) from exc

    def sync(self, path: str) -> None:
        try:
            fd = os.open(self._abs(path), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise PathNotFound(path) from exc
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self._abs(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if not n.startswith(_TMP_PREFIX))

    def delete(self, path: str) -> bool:
        full = self._abs(path)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            return False
        return True

    def move(self, src: str, dst: str) -> None:
        s, d = self._abs(src), self._abs(dst)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        try:
            os.replace(s, d)
        except FileNotFoundError as exc:
            raise PathNotFound(src) from exc
        fsync_dir(Path(d).parent)

    def purge_temp(self, older_than: float) -> builtins.list[str]:
        removed = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(_TMP_PREFIX):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    if os.stat(full).st_mtime < older_than:
                        os.unlink(full)
                        removed.append(os.path.relpath(full, self.root).replace(os.sep, "/"))
                except FileNotFoundError:
                    continue  # its writer just committed or cancelled it
        return removed

    def local_path(self, path: str) -> str | None:
        return self._abs(path)

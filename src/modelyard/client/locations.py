"""Which repositories of which registry are known to hold a blob, for cross-repository mounts.

A push records every blob it uploaded or found; a later push of the same blob to another
repository of the same registry asks for a mount instead of sending the bytes again. The
record is a small JSON file in the user's cache dir, bounded in size; losing it only costs
an upload. Concurrent writers: last one wins (it is a cache).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

from modelyard.paths import cache_dir

#: Entries kept per file; the oldest are dropped first.
MAX_BLOBS = 20000
_REPOS_PER_BLOB = 4


class BlobLocations:
    """`(registry, digest) -> [repositories]`, persisted in `path` (None: memory only)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, list[str]] = {}
        self._dirty = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                raw = json.loads(path.read_bytes())
                self._data = {k: [str(r) for r in v] for k, v in raw.items() if isinstance(v, list)}

    @classmethod
    def default(cls) -> BlobLocations:
        return cls(cache_dir() / "blob-locations.json")

    @staticmethod
    def _key(registry: str, digest: str) -> str:
        return f"{registry}|{digest}"

    def repositories(self, registry: str, digest: str) -> list[str]:
        with self._lock:
            return list(self._data.get(self._key(registry, digest), ()))

    def add(self, registry: str, digest: str, repository: str) -> None:
        key = self._key(registry, digest)
        with self._lock:
            repos = [r for r in self._data.pop(key, []) if r != repository]
            # Most recent first; re-inserting the key keeps dict order = recency.
            self._data[key] = [repository, *repos][:_REPOS_PER_BLOB]
            self._dirty = True

    def forget(self, registry: str, digest: str, repository: str) -> None:
        key = self._key(registry, digest)
        with self._lock:
            repos = [r for r in self._data.get(key, []) if r != repository]
            if repos:
                self._data[key] = repos
            else:
                self._data.pop(key, None)
            self._dirty = True

    def save(self) -> None:
        """Write the record atomically; failures are ignored (it is only a cache)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            items = list(self._data.items())[-MAX_BLOBS:]
            data = json.dumps(dict(items), separators=(",", ":")).encode()
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._dirty = False

"""Reading a model source: a plain directory or a Hugging Face cache snapshot.

A snapshot (`.../models--org--name/snapshots/<rev>/`) holds symlinks into `../../blobs/`; they
are followed, and the model root becomes the `models--org--name` directory so that those links
stay inside it. Any symlink that resolves outside the model root is refused.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import SourceError, SourceNotFound, SymlinkEscape, UnsupportedFileType

#: Directories that are never part of a model.
EXCLUDED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
_SNAPSHOT_RE = re.compile(r"^models--[^/]+$")


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative, '/'-separated, as it lands in the image
    real: Path  # the file to read (symlinks resolved)
    size: int


@dataclass(frozen=True)
class Source:
    root: Path
    files: tuple[SourceFile, ...]
    #: For a Hugging Face cache snapshot: (repo id, commit hash).
    hf_repo: str | None = None
    hf_revision: str | None = None

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def _hf_snapshot(path: Path) -> tuple[Path, str, str] | None:
    """(repo cache dir, repo id, revision) if `path` is `models--org--name/snapshots/<rev>`."""
    if path.parent.name == "snapshots" and _SNAPSHOT_RE.match(path.parent.parent.name):
        repo_dir = path.parent.parent
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        return repo_dir, repo_id, path.name
    return None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def scan(source: str | Path) -> Source:
    """List the files of a model source, validated and sorted.

    Raises:
        SourceNotFound: the source does not exist, is not a directory, or holds no files.
        SymlinkEscape: a symlink resolves outside the model root.
        UnsupportedFileType: a fifo, socket or device file is present.
        SourceError: a file cannot be read.
    """
    top = Path(source)
    if not top.exists():
        raise SourceNotFound(f"model source {source} does not exist")
    if not top.is_dir():
        raise SourceNotFound(f"model source {source} is not a directory")
    top = top.absolute()
    snapshot = _hf_snapshot(top)
    boundary = (snapshot[0] if snapshot else top).resolve()

    files: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        here = Path(dirpath)
        # Symlinked directories are not walked by os.walk: treat them as entries to check.
        for name in [*filenames, *[d for d in dirnames if (here / d).is_symlink()]]:
            entry = here / name
            rel = entry.relative_to(top).as_posix()
            real = entry.resolve() if entry.is_symlink() else entry
            if entry.is_symlink():
                if not real.is_relative_to(boundary):
                    raise SymlinkEscape(
                        f"{rel} is a symlink to {real}, outside the model root {boundary}"
                    )
                if real.is_dir():
                    raise UnsupportedFileType(f"{rel} is a symlink to a directory; not supported")
            try:
                st = real.stat()
            except FileNotFoundError as exc:
                raise SourceError(f"{rel} is a dangling symlink") from exc
            except OSError as exc:
                raise SourceError(f"cannot stat {rel}: {exc.strerror}") from exc
            if not stat.S_ISREG(st.st_mode):
                raise UnsupportedFileType(f"{rel} is a {_kind(st.st_mode)}; only regular files")
            if not os.access(real, os.R_OK):
                raise SourceError(f"{rel} is not readable")
            files.append(SourceFile(rel, real, st.st_size))
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    if not files:
        raise SourceNotFound(f"model source {source} holds no files")
    files.sort(key=lambda f: f.path.split("/"))
    return Source(
        root=top,
        files=tuple(files),
        hf_repo=snapshot[1] if snapshot else None,
        hf_revision=snapshot[2] if snapshot else None,
    )

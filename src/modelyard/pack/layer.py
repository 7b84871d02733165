"""Writing one layer: a deterministic tar of some model files, compressed and hashed in a
single streaming pass, together with each file's own sha256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from modelyard.errors import SourceError
from modelyard.oci.compress import LayerDigests, LayerStream
from modelyard.oci.digest import iter_chunks
from modelyard.oci.estargz import EStargzWriter
from modelyard.oci.tar import TarWriter, parent_dirs
from modelyard.pack.layering import LayerPlan


@dataclass(frozen=True)
class FileDigest:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LayerResult:
    plan: LayerPlan
    digests: LayerDigests
    files: tuple[FileDigest, ...]


Progress = Callable[[int], None]


def write_layer(
    plan: LayerPlan,
    out: BinaryIO,
    compression: str = "auto",
    level: int = 6,
    mtime: int = 0,
    progress: Progress | None = None,
    layer_format: str = "tar",
) -> LayerResult:
    """Write `plan`'s files as one layer to `out` and return its digests.

    Raises:
        SourceError: a file changed size or could not be read while packing.
    """
    stream: LayerStream | None = None
    tar: TarWriter | EStargzWriter
    if layer_format == "estargz":
        # The eStargz writer compresses and hashes itself, per file and per chunk.
        tar = EStargzWriter(out.write, mtime, level, compression)
    else:
        stream = LayerStream(out.write, compression, level)
        tar = TarWriter(stream.write, mtime)
    paths = [f.path for f in plan.files]
    entries: list[tuple[list[str], str | None]] = [(d.split("/"), None) for d in parent_dirs(paths)]
    by_path = {f.path: f for f in plan.files}
    entries.extend((p.split("/"), p) for p in paths)
    entries.sort(key=lambda e: e[0])
    digests: list[FileDigest] = []
    for parts, file_path in entries:
        if file_path is None:
            tar.add_dir("/".join(parts))
            continue
        f = by_path[file_path]
        h = None if isinstance(tar, EStargzWriter) else hashlib.sha256()
        try:
            with open(f.real, "rb", buffering=0) as src:
                os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                tar.begin_file(f.path, f.size)
                for chunk in iter_chunks(src):
                    if h is not None:
                        h.update(chunk)
                    tar.write(chunk)
                    if progress:
                        progress(len(chunk))
                file_digest = tar.end_file() or "sha256:" + h.hexdigest()  # type: ignore[union-attr]
        except OSError as exc:
            raise SourceError(f"cannot read {f.path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise SourceError(f"{f.path}: {exc}") from exc
        digests.append(FileDigest(f.path, f.size, file_digest))
    if isinstance(tar, EStargzWriter):
        return LayerResult(plan, tar.close(), tuple(digests))
    tar.close()
    assert stream is not None
    return LayerResult(plan, stream.close(), tuple(digests))

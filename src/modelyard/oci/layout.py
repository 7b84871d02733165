"""OCI image layout on disk (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).

Writes are atomic: a blob is written to a temp file in the layout, fsynced and renamed into
place; `index.json` is replaced the same way. A reader never sees a partial blob.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from modelyard.errors import BlobUnknown, DigestMismatch, LayoutError
from modelyard.oci import mediatypes as mt
from modelyard.oci.canonical import dumps
from modelyard.oci.descriptor import Descriptor
from modelyard.oci.digest import Digest, digest_bytes, digest_file, sha256_bytes
from modelyard.oci.manifest import ImageIndex, ImageManifest, Manifest, parse_manifest

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT_FILE = "oci-layout"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same dir, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def is_layout(path: Path) -> bool:
    return (path / _LAYOUT_FILE).is_file() and (path / "index.json").is_file()


class Layout:
    """An OCI image layout directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, root: str | Path) -> Layout:
        layout = cls(root)
        layout.root.mkdir(parents=True, exist_ok=True)
        (layout.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        atomic_write(
            layout.root / _LAYOUT_FILE, dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})
        )
        atomic_write(layout.root / "index.json", ImageIndex(()).to_bytes())
        return layout

    @classmethod
    def open(cls, root: str | Path) -> Layout:
        """Raises: LayoutError if `root` is not an OCI image layout."""
        layout = cls(root)
        if not is_layout(layout.root):
            raise LayoutError(f"{root} is not an OCI image layout (no oci-layout and index.json)")
        return layout

    # blobs

    def blob_path(self, digest: str) -> Path:
        d = Digest.parse(digest)
        return self.root / "blobs" / d.algorithm / d.hex

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        """Read a small blob (a manifest or config) and verify it.

        Raises: BlobUnknown, DigestMismatch.
        """
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise BlobUnknown(digest) from exc
        actual = digest_bytes(data, Digest.parse(digest).algorithm)
        if actual != digest:
            raise DigestMismatch(digest, actual, "blob")
        return data

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError as exc:
            raise BlobUnknown(digest) from exc

    def write_blob(self, data: bytes) -> Descriptor:
        digest = sha256_bytes(data)
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return Descriptor("application/octet-stream", digest, len(data))

    def temp_blob(self) -> Path:
        """A new empty temp file inside the layout, to stream a blob into before
        `commit_blob` (the caller opens it, e.g. with `modelyard.directio.DirectWriter`)."""
        d = self.root / "blobs" / "sha256"
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        os.close(fd)
        return Path(tmp)

    def commit_blob(self, tmp: Path, digest: str) -> None:
        """Move a fully written, fsynced temp file into place under its digest."""
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)

    def verify_blob(self, digest: str) -> int:
        """Hash a blob in a streaming pass. Raises: BlobUnknown, DigestMismatch."""
        path = self.blob_path(digest)
        if not path.is_file():
            raise BlobUnknown(digest)
        actual, size = digest_file(path, Digest.parse(digest).algorithm)
        if actual != digest:
            raise DigestMismatch(digest, actual, "blob")
        return size

    def blobs(self) -> Iterator[str]:
        base = self.root / "blobs"
        for alg_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for p in sorted(alg_dir.iterdir()):
                if not p.name.startswith("."):
                    yield f"{alg_dir.name}:{p.name}"

    # index

    def index(self) -> ImageIndex:
        try:
            obj: Any = json.loads((self.root / "index.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise LayoutError(f"cannot read {self.root / 'index.json'}: {exc}") from exc
        return ImageIndex.from_json(obj)

    def tags(self) -> list[str]:
        entries = self.index().manifests
        return [d.annotations[REF_NAME] for d in entries if REF_NAME in d.annotations]

    def resolve(self, tag: str | None = None) -> Descriptor:
        """The descriptor tagged `tag` (or the only one, if `tag` is None).

        Raises: LayoutError if the tag is absent or ambiguous.
        """
        entries = self.index().manifests
        if tag is None:
            if len(entries) != 1:
                raise LayoutError(f"{self.root} holds {len(entries)} images; name a tag")
            return entries[0]
        for d in entries:
            if d.annotations.get(REF_NAME) == tag:
                return d
        known = ", ".join(self.tags()) or "none"
        raise LayoutError(f"tag {tag!r} not found in {self.root} (tags: {known})")

    def read_manifest(self, desc: Descriptor) -> Manifest:
        return parse_manifest(self.read_blob(desc.digest), desc.media_type)

    def set_tag(self, tag: str, desc: Descriptor) -> None:
        """Point `tag` at `desc` in index.json (replacing an earlier entry), atomically."""
        entries = [d for d in self.index().manifests if d.annotations.get(REF_NAME) != tag]
        tagged = Descriptor(
            desc.media_type,
            desc.digest,
            desc.size,
            {**desc.annotations, REF_NAME: tag},
            desc.platform,
            desc.artifact_type,
        )
        entries.append(tagged)
        entries.sort(key=lambda d: d.annotations.get(REF_NAME, ""))
        atomic_write(self.root / "index.json", ImageIndex(tuple(entries)).to_bytes())

    def image_manifests(self, desc: Descriptor) -> list[tuple[Descriptor, ImageManifest]]:
        """All image manifests reachable from `desc` (itself, or an index's children)."""
        doc = self.read_manifest(desc)
        if isinstance(doc, ImageManifest):
            return [(desc, doc)]
        out: list[tuple[Descriptor, ImageManifest]] = []
        for child in doc.manifests:
            if child.media_type in mt.MANIFESTS:
                out.extend(self.image_manifests(child))
        return out

"""Pull an image from a registry into an OCI image layout.

Two steps any other reader (the lazy file access) can reuse on their own:
`resolve_image` fetches and verifies the manifests, `fetch_blob` streams one blob into a
layout, verifying it on the way, and commits it atomically: a failure leaves no file.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelyard.client.progress import ByteProgress, Progress
from modelyard.client.registry import RegistryClient
from modelyard.directio import DirectWriter
from modelyard.errors import InvalidManifest, LayoutError, RemoteNotFound
from modelyard.oci import mediatypes as mt
from modelyard.oci.descriptor import Descriptor, Platform
from modelyard.oci.digest import Digest
from modelyard.oci.layout import Layout, atomic_write, is_layout
from modelyard.oci.manifest import ImageManifest, parse_manifest
from modelyard.oci.reference import DEFAULT_TAG, Reference


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as the registry returned it: exact bytes, verified digest, parsed form."""

    descriptor: Descriptor
    data: bytes
    manifest: ImageManifest


@dataclass(frozen=True)
class ResolvedImage:
    """The root document (an index or a manifest) and every image manifest to pull."""

    root: Descriptor
    root_data: bytes
    images: tuple[FetchedManifest, ...]

    @property
    def blobs(self) -> list[Descriptor]:
        """Configs and layers of every image, each once, in manifest order."""
        seen: dict[str, Descriptor] = {}
        for image in self.images:
            for desc in image.manifest.references():
                seen.setdefault(desc.digest, desc)
        return list(seen.values())


@dataclass(frozen=True)
class PullResult:
    reference: str
    digest: str
    media_type: str
    layout: str
    tag: str
    bytes_downloaded: int
    blobs_downloaded: int
    blobs_present: int
    manifests: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _matches(desc: Descriptor, platform: Platform) -> bool:
    p = desc.platform
    if p is None:
        return False
    if (p.os, p.architecture) != (platform.os, platform.architecture):
        return False
    return platform.variant is None or p.variant == platform.variant


def resolve_image(
    client: RegistryClient, ref: Reference, platform: Platform | None = None
) -> ResolvedImage:
    """Fetch the manifest `ref` names and, for an index, its image manifests.

    With `platform`, an index resolves to the one matching image (which becomes the root).

    Raises:
        RemoteNotFound: no such tag or digest, or no image for `platform`.
        InvalidManifest, DigestMismatch, AuthenticationError, RegistryError,
        RegistryUnreachable.
    """
    data, media_type, digest = client.get_manifest(ref.name, ref.reference)
    doc = parse_manifest(data, media_type or None)
    root = Descriptor(doc.media_type, digest, len(data))
    if isinstance(doc, ImageManifest):
        return ResolvedImage(root, data, (FetchedManifest(root, data, doc),))
    children = [d for d in doc.manifests if d.media_type in mt.IMAGE_MANIFESTS]
    if platform is not None:
        children = [d for d in children if _matches(d, platform)]
        if not children:
            offered = ", ".join(str(d.platform) for d in doc.manifests if d.platform) or "none"
            raise RemoteNotFound(str(ref), f"no image for platform {platform} (has: {offered})")
        child = children[0]
        child_data, child_type, _ = client.get_manifest(ref.name, child.digest)
        manifest = _image(child_data, child.media_type or child_type)
        return ResolvedImage(child, child_data, (FetchedManifest(child, child_data, manifest),))
    images = []
    for child in children:
        child_data, child_type, _ = client.get_manifest(ref.name, child.digest)
        if len(child_data) != child.size:
            raise InvalidManifest(
                f"manifest {child.digest} has {len(child_data)} bytes, the index says {child.size}"
            )
        images.append(FetchedManifest(child, child_data, _image(child_data, child.media_type)))
    return ResolvedImage(root, data, tuple(images))


def _image(data: bytes, media_type: str | None) -> ImageManifest:
    doc = parse_manifest(data, media_type)
    if not isinstance(doc, ImageManifest):
        raise InvalidManifest("an index lists another index as an image manifest")
    return doc


def fetch_blob(
    client: RegistryClient,
    layout: Layout,
    name: str,
    desc: Descriptor,
    progress: Progress | None = None,
) -> int:
    """Stream one blob into `layout`, verified, fsynced and renamed into place.

    Returns the number of bytes written. On any failure the temp file is removed.

    Raises: DigestMismatch (nothing is kept), RemoteNotFound, RegistryUnreachable, ...
    """
    tmp = layout.temp_blob()
    written = 0
    try:
        # Blobs are GBs: bypass the page cache (see modelyard.directio).
        with DirectWriter(tmp) as out:
            for chunk in client.get_blob_stream(name, desc.digest):
                out.write(chunk)
                written += len(chunk)
                if progress:
                    progress(len(chunk))
            if written != desc.size:
                raise InvalidManifest(
                    f"blob {desc.digest} has {written} bytes, its descriptor says {desc.size}"
                )
        layout.commit_blob(tmp, desc.digest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if progress and written:
            progress(-written)
        raise
    return written


def _open_layout(output: Path) -> Layout:
    if is_layout(output):
        return Layout.open(output)
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise LayoutError(f"{output} exists and is not an OCI image layout; choose another -o")
    return Layout.create(output)


def pull(
    ref: str | Reference,
    output: str | Path,
    *,
    tag: str | None = None,
    platform: Platform | str | None = None,
    quiet: bool = True,
    progress: Progress | None = None,
    client: RegistryClient | None = None,
    plain_http: bool | None = None,
    insecure: bool = False,
    jobs: int = 2,
) -> PullResult:
    """Pull `ref` into the OCI layout `output` (created if absent) and tag it there.

    Blobs the layout already holds are not downloaded again. Every blob is verified while
    it streams; the tag is written last, so an interrupted pull never tags a partial image.

    Args:
        ref: `host[:port]/name[:tag][@digest]`.
        output: the layout directory.
        tag: the tag to give it in the layout; default: `ref`'s tag, else `latest`.
        platform: `os/arch[/variant]`: pull only that image of an index.

    Raises:
        LayoutError, RemoteNotFound, DigestMismatch, AuthenticationError, RegistryError,
        RegistryUnreachable.

    Example:
        >>> pull("localhost:5000/org/bert:v1", "./bert.oci").digest
        'sha256:...'
    """
    started = time.monotonic()
    reference = Reference.remote(ref)  # `ubuntu` is docker.io/library/ubuntu, as for docker
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    layout_tag = tag or reference.tag or DEFAULT_TAG
    own_client = client is None
    if client is None:
        client = RegistryClient(reference.registry, plain_http=plain_http, insecure=insecure)
    out = Path(output)
    created = not is_layout(out)
    try:
        resolved = resolve_image(client, reference, wanted)
        layout = _open_layout(out)
        blobs = resolved.blobs
        missing = [b for b in blobs if not layout.has_blob(b.digest)]
        total = sum(b.size for b in missing)
        missing.sort(key=lambda b: -b.size)
        with (
            ByteProgress(total, f"pull {reference.name}", quiet=quiet, callback=progress) as bar,
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool,
        ):
            futures = [
                pool.submit(fetch_blob, client, layout, reference.name, b, bar.update)
                for b in missing
            ]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        for image in resolved.images:
            _write_document(layout, image.descriptor.digest, image.data)
        _write_document(layout, resolved.root.digest, resolved.root_data)
        layout.set_tag(layout_tag, resolved.root)
    except BaseException:
        if created and is_layout(out):
            # A layout this pull created holds nothing worth keeping after a failure.
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if own_client:
            client.close()
    return PullResult(
        reference=str(reference),
        digest=resolved.root.digest,
        media_type=resolved.root.media_type,
        layout=str(output),
        tag=layout_tag,
        bytes_downloaded=total,
        blobs_downloaded=len(missing),
        blobs_present=len(blobs) - len(missing),
        manifests=len({m.descriptor.digest for m in resolved.images} | {resolved.root.digest}),
        seconds=round(time.monotonic() - started, 3),
    )


def _write_document(layout: Layout, digest: str, data: bytes) -> None:
    """Store a manifest's exact bytes under its (already verified) digest."""
    Digest.parse(digest)
    path = layout.blob_path(digest)
    if not path.is_file():
        atomic_write(path, data)


__all__ = [
    "FetchedManifest",
    "PullResult",
    "ResolvedImage",
    "fetch_blob",
    "pull",
    "resolve_image",
]

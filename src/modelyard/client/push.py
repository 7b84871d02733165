"""Push an OCI image layout, or a model directory packed on the fly, to a registry.

Order matters for registries that check references: blobs first, then the image manifests,
then the index under the tag. Each blob is HEADed before anything is sent, so a new revision
of a model uploads only the layers that changed; a blob this machine pushed before to another
repository of the same registry is mounted instead of uploaded.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelyard.client.locations import BlobLocations
from modelyard.client.progress import ByteProgress, Progress
from modelyard.client.registry import RegistryClient
from modelyard.errors import LayoutError
from modelyard.oci import mediatypes as mt
from modelyard.oci.descriptor import Descriptor
from modelyard.oci.layout import Layout, is_layout
from modelyard.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from modelyard.oci.reference import DEFAULT_TAG, Reference


@dataclass(frozen=True)
class PushResult:
    """What a push did. `bytes_uploaded` counts blob bytes sent (manifests apart)."""

    reference: str
    digest: str
    media_type: str
    size: int
    bytes_uploaded: int
    blobs_uploaded: int
    blobs_skipped: int
    blobs_mounted: int
    manifests: int
    manifest_bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Plan:
    root: Descriptor
    root_bytes: bytes
    #: Child manifests of an index, in the order they must be pushed (before the index).
    children: tuple[tuple[Descriptor, bytes], ...]
    blobs: tuple[Descriptor, ...]


def _plan(layout: Layout, root: Descriptor) -> _Plan:
    """Every document and blob reachable from `root`, each blob once."""
    children: list[tuple[Descriptor, bytes]] = []
    blobs: dict[str, Descriptor] = {}

    def visit(desc: Descriptor) -> bytes:
        data = layout.read_blob(desc.digest)
        doc = parse_manifest(data, desc.media_type)
        if isinstance(doc, ImageIndex):
            for child in doc.manifests:
                if child.media_type not in mt.MANIFESTS:
                    raise LayoutError(
                        f"index {desc.digest} lists {child.media_type!r}, not a manifest"
                    )
                child_data = visit(child)
                children.append((child, child_data))
        else:
            assert isinstance(doc, ImageManifest)
            for blob in doc.references():
                if blob.urls and not layout.has_blob(blob.digest):
                    continue  # a foreign layer: the registry fetches it from its URLs
                blobs.setdefault(blob.digest, blob)
        return data

    root_bytes = visit(root)
    seen: set[str] = set()
    unique_children = []
    for desc, data in children:
        if desc.digest not in seen:
            seen.add(desc.digest)
            unique_children.append((desc, data))
    return _Plan(root, root_bytes, tuple(unique_children), tuple(blobs.values()))


def _select(layout: Layout, tag: str | None, ref: Reference) -> Descriptor:
    if tag is not None:
        return layout.resolve(tag)
    tags = layout.tags()
    if ref.tag and ref.tag in tags:
        return layout.resolve(ref.tag)
    if len(layout.index().manifests) == 1:
        return layout.resolve(None)
    raise LayoutError(
        f"{layout.root} holds several images ({', '.join(tags) or 'untagged'}); "
        "choose one with --tag"
    )


def push_layout(
    layout_dir: str | Path,
    tag: str | None,
    ref: str | Reference,
    *,
    quiet: bool = True,
    progress: Progress | None = None,
    client: RegistryClient | None = None,
    plain_http: bool | None = None,
    insecure: bool = False,
    jobs: int = 2,
    locations: BlobLocations | None = None,
) -> PushResult:
    """Push the image tagged `tag` in an OCI layout to `ref`.

    Args:
        layout_dir: an OCI image layout directory.
        tag: the image's tag in the layout; None picks `ref`'s tag if the layout has it,
            else the layout's only image.
        ref: where to push, `host[:port]/name[:tag][@digest]`; without a tag the layout tag
            (or `latest`) is used; with a digest the image must have that digest.
        quiet: no progress bar.
        progress: called with uploaded byte counts (also when quiet).
        client: a client to reuse (its registry must be `ref`'s); default: a new one.
        plain_http, insecure: transport choices for a new client (see `RegistryClient`).
        jobs: blobs uploaded at the same time.
        locations: where this machine has seen blobs, for cross-repository mounts; default:
            the record in the user cache dir.

    Returns:
        A `PushResult` with the pushed digest and what was uploaded, skipped or mounted.

    Raises:
        LayoutError, InvalidReference, AuthenticationError, RegistryError,
        RegistryUnreachable, DigestMismatch.

    Example:
        >>> push_layout("./bert.oci", "v1", "localhost:5000/org/bert:v1").digest
        'sha256:...'
    """
    started = time.monotonic()
    reference = Reference.remote(ref)  # `ubuntu` is docker.io/library/ubuntu, as for docker
    layout = Layout.open(layout_dir)
    root = _select(layout, tag, reference)
    if reference.digest and reference.digest != root.digest:
        raise LayoutError(f"the image has digest {root.digest}, not {reference.digest}")
    target = reference.tag or reference.digest or tag or _layout_tag(root) or DEFAULT_TAG
    plan = _plan(layout, root)

    own_client = client is None
    if client is None:
        client = RegistryClient(reference.registry, plain_http=plain_http, insecure=insecure)
    if locations is None:
        locations = BlobLocations.default()
    try:
        counts = _push_blobs(client, reference, layout, plan, locations, quiet, progress, jobs)
        manifest_bytes = 0
        for desc, data in plan.children:
            client.put_manifest(reference.name, desc.digest, data, desc.media_type)
            manifest_bytes += len(data)
        digest = client.put_manifest(reference.name, target, plan.root_bytes, root.media_type)
        manifest_bytes += len(plan.root_bytes)
    finally:
        locations.save()
        if own_client:
            client.close()
    uploaded, skipped, mounted, nbytes = counts
    shown = f"{reference.registry}/{reference.name}"
    shown += f"@{digest}" if target == reference.digest else f":{target}"
    return PushResult(
        reference=shown,
        digest=digest,
        media_type=root.media_type,
        size=len(plan.root_bytes),
        bytes_uploaded=nbytes,
        blobs_uploaded=uploaded,
        blobs_skipped=skipped,
        blobs_mounted=mounted,
        manifests=len(plan.children) + 1,
        manifest_bytes=manifest_bytes,
        seconds=round(time.monotonic() - started, 3),
    )


def _layout_tag(desc: Descriptor) -> str | None:
    from modelyard.oci.layout import REF_NAME

    value = desc.annotations.get(REF_NAME)
    # A layout ref name may be a full reference; only a plain tag can be reused as one.
    return value if value and "/" not in value and ":" not in value else None


def _push_blobs(
    client: RegistryClient,
    ref: Reference,
    layout: Layout,
    plan: _Plan,
    locations: BlobLocations,
    quiet: bool,
    progress: Progress | None,
    jobs: int,
) -> tuple[int, int, int, int]:
    """HEAD every blob, then mount or upload the missing ones. Returns the counts."""
    registry, name = client.registry, ref.name
    for blob in plan.blobs:
        path = layout.blob_path(blob.digest)
        try:
            actual = path.stat().st_size
        except FileNotFoundError as exc:
            raise LayoutError(f"{layout.root} lacks blob {blob.digest}") from exc
        if actual != blob.size:
            raise LayoutError(
                f"blob {blob.digest} in {layout.root} has {actual} bytes, descriptor says "
                f"{blob.size}"
            )

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        present = list(pool.map(lambda b: client.head_blob(name, b.digest), plan.blobs))
    missing = [b for b, size in zip(plan.blobs, present, strict=True) if size is None]
    skipped = len(plan.blobs) - len(missing)
    for b, size in zip(plan.blobs, present, strict=True):
        if size is not None:
            locations.add(registry, b.digest, name)

    mounted = 0
    to_upload: list[Descriptor] = []
    for b in missing:
        for repo in locations.repositories(registry, b.digest):
            if repo != name and client.mount_blob(name, b.digest, repo):
                mounted += 1
                locations.add(registry, b.digest, name)
                break
            if repo != name:
                locations.forget(registry, b.digest, repo)
        else:
            to_upload.append(b)

    total = sum(b.size for b in to_upload)
    # Largest first keeps both workers busy until the end.
    to_upload.sort(key=lambda b: -b.size)
    with ByteProgress(total, f"push {name}", quiet=quiet, callback=progress) as bar:

        def upload(b: Descriptor) -> None:
            client.upload_blob(
                name, layout.blob_path(b.digest), b.digest, b.size, progress=bar.update
            )
            locations.add(registry, b.digest, name)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(upload, b) for b in to_upload]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                # Do not start the blobs still queued after a failure or Ctrl-C.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return len(to_upload), skipped, mounted, total


def push(
    path: str | Path,
    ref: str | Reference,
    *,
    tag: str | None = None,
    pack_options: Any = None,
    **kwargs: Any,
) -> PushResult:
    """Push `path`: an OCI layout as it is, or a model directory packed first into a temp layout.

    Keyword arguments are those of `push_layout`.

    Raises: as `push_layout`, plus SourceError when packing a model directory fails.
    """
    source = Path(path)
    if is_layout(source):
        return push_layout(source, tag, ref, **kwargs)
    from modelyard.pack import pack

    reference = Reference.remote(ref)
    image_tag = tag or reference.tag or DEFAULT_TAG
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-push-"))
    try:
        result = pack(source, image_tag, tmp / "layout", pack_options)
        return push_layout(result.layout, image_tag, reference, **kwargs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

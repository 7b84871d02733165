"""`pack`: a model directory becomes a reproducible, per-file-layered, multi-platform OCI image.

The result is an OCI image layout holding an image index with one manifest per platform; all
manifests share the same layers (a model has no CPU architecture, but BuildKit on an arm64
builder needs an arm64 entry to match).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.directio import DirectWriter
from modelyard.errors import LayoutError
from modelyard.oci import mediatypes as mt
from modelyard.oci.compress import MODES, media_type
from modelyard.oci.descriptor import Descriptor, Platform
from modelyard.oci.estargz import EStargzDigests
from modelyard.oci.layout import Layout, fsync_dir, is_layout
from modelyard.oci.manifest import ImageConfig, ImageIndex, ImageManifest
from modelyard.oci.reference import validate_tag
from modelyard.pack.layer import FileDigest, LayerResult, write_layer
from modelyard.pack.layering import DEFAULT_THRESHOLD, MAX_LAYERS, LayerPlan, plan_layers
from modelyard.pack.source import Source, scan

TITLE = "org.opencontainers.image.title"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
CREATED = "org.opencontainers.image.created"
FILES = "dev.modelyard.model.files"
DEFAULT_PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64"))
FORMATS = ("tar", "estargz")


def _default_mtime() -> int:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return int(epoch) if epoch and epoch.isdigit() else 0


@dataclass(frozen=True)
class PackOptions:
    """How to pack. Every field changes the bytes of the image; nothing else does."""

    threshold: int = DEFAULT_THRESHOLD
    compression: str = "auto"
    level: int = 6
    max_layers: int = MAX_LAYERS
    #: tar mtime; SOURCE_DATE_EPOCH when set, else 0.
    mtime: int = field(default_factory=_default_mtime)
    #: Write `created` (from `mtime`) into configs and annotations.
    created: bool = False
    platforms: tuple[Platform, ...] = DEFAULT_PLATFORMS
    annotations: dict[str, str] = field(default_factory=dict)
    #: Layer format: "tar", or "estargz" once available.
    format: str = "tar"
    #: Layers written in parallel: hashing and O_DIRECT writes release the GIL, and twice the
    #: core count keeps the cores busy while some writers wait on the disk (measured best).
    jobs: int = field(default_factory=lambda: min(8, 2 * (os.cpu_count() or 1)))

    def __post_init__(self) -> None:
        if self.compression not in MODES:
            raise ValueError(f"unknown compression {self.compression!r}: one of {MODES}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown layer format {self.format!r}: one of {FORMATS}")
        if self.format == "estargz" and self.compression not in ("auto", "gzip"):
            raise ValueError("estargz layers are gzip: use compression auto or gzip")
        if self.threshold < 1:
            raise ValueError("threshold must be positive")
        if not self.platforms:
            raise ValueError("at least one platform is needed")


@dataclass(frozen=True)
class PackResult:
    layout: Path
    tag: str
    index: Descriptor
    manifests: tuple[Descriptor, ...]
    layers: tuple[LayerResult, ...]
    source: Source

    @property
    def files(self) -> list[FileDigest]:
        return sorted((f for layer in self.layers for f in layer.files), key=lambda f: f.path)

    def to_json(self) -> dict[str, object]:
        return {
            "layout": str(self.layout),
            "tag": self.tag,
            "digest": self.index.digest,
            "manifests": [
                {"digest": m.digest, "platform": str(m.platform)} for m in self.manifests
            ],
            "layers": [
                {
                    "digest": layer.digests.digest,
                    "size": layer.digests.size,
                    "diff_id": layer.digests.diff_id,
                    "files": [f.path for f in layer.files],
                }
                for layer in self.layers
            ],
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


Progress = Callable[[int], None]


def _layer_descriptor(result: LayerResult, options: PackOptions) -> Descriptor:
    annotations = {}
    if result.plan.title:
        annotations[TITLE] = result.plan.title
    if isinstance(result.digests, EStargzDigests):
        annotations.update(result.digests.annotations)
    return Descriptor(
        media_type(options.compression), result.digests.digest, result.digests.size, annotations
    )


def _write_layers(
    layout: Layout, plans: list[LayerPlan], options: PackOptions, progress: Progress | None
) -> list[LayerResult]:
    lock = threading.Lock()

    def safe_progress(n: int) -> None:
        if progress:
            with lock:
                progress(n)

    def one(plan: LayerPlan) -> LayerResult:
        tmp = layout.temp_blob()
        try:
            # Multi-GB layers bypass the page cache: see modelyard.directio.
            with DirectWriter(tmp) as out:
                result = write_layer(
                    plan,
                    out,
                    options.compression,
                    options.level,
                    options.mtime,
                    safe_progress,
                    options.format,
                )
            layout.commit_blob(tmp, result.digests.digest)
            return result
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    # Largest first keeps both workers busy until the end.
    order = sorted(range(len(plans)), key=lambda i: -plans[i].size)
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {i: pool.submit(one, plans[i]) for i in order}
        return [futures[i].result() for i in range(len(plans))]


def _build_image(
    layout: Layout, source: Source, results: list[LayerResult], options: PackOptions
) -> tuple[Descriptor, list[Descriptor]]:
    created = None
    if options.created:
        created = dt.datetime.fromtimestamp(options.mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = sorted((f for r in results for f in r.files), key=lambda f: f.path)
    annotations = dict(options.annotations)
    if source.hf_repo:
        annotations.setdefault(SOURCE, f"https://huggingface.co/{source.hf_repo}")
        annotations.setdefault(REVISION, source.hf_revision or "")
    if created:
        annotations[CREATED] = created
    manifest_annotations = {
        **annotations,
        FILES: json.dumps(
            [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
            separators=(",", ":"),
        ),
    }
    layers = tuple(_layer_descriptor(r, options) for r in results)
    diff_ids = tuple(r.digests.diff_id for r in results)
    manifests: list[Descriptor] = []
    for platform in options.platforms:
        config = ImageConfig(diff_ids, platform, created=created).to_bytes()
        config_desc = layout.write_blob(config)
        manifest = ImageManifest(
            Descriptor(mt.OCI_CONFIG, config_desc.digest, config_desc.size),
            layers,
            manifest_annotations,
        ).to_bytes()
        m = layout.write_blob(manifest)
        manifests.append(Descriptor(mt.OCI_MANIFEST, m.digest, m.size, platform=platform))
    index = layout.write_blob(ImageIndex(tuple(manifests), annotations).to_bytes())
    return Descriptor(mt.OCI_INDEX, index.digest, index.size), manifests


def platform_tag(tag: str, platform: Platform) -> str:
    """The layout tag of one platform's manifest, e.g. `v1-linux-arm64`."""
    return "-".join(p for p in (tag, platform.os, platform.architecture, platform.variant) if p)


def _tag(layout: Layout, tag: str, index: Descriptor, manifests: list[Descriptor]) -> None:
    layout.set_tag(tag, index)
    # Tools that cannot pick a platform out of an index (umoci 0.4 says "tag is ambiguous")
    # get one tag per platform manifest as well.
    if len(manifests) > 1:
        for m in manifests:
            assert m.platform is not None
            layout.set_tag(platform_tag(tag, m.platform), m)


def pack(
    source: str | Path | Source,
    tag: str,
    output: str | Path,
    options: PackOptions | None = None,
    progress: Progress | None = None,
) -> PackResult:
    """Pack a model directory into an OCI image layout.

    Args:
        source: a model directory or a Hugging Face cache snapshot directory, or the
            `Source` that `modelyard.pack.source.scan` made of one (not scanned again).
        tag: the tag to give the image in the layout (`org.opencontainers.image.ref.name`).
        output: the layout directory. Created if absent (built in a temp dir and renamed at
            the end, so a failure leaves nothing); if it is a layout already, the image is
            added to it and `tag` is moved.
        options: packing options.
        progress: called with the number of source bytes read, as they are read.

    Raises:
        SourceError (and subclasses): the source cannot be packed.
        LayoutError: `output` exists and is neither an empty directory nor an OCI layout.
        InvalidReference: `tag` is not a valid tag.

    Example:
        >>> result = pack("./bert", "v1", "./bert.oci")
        >>> result.index.digest
        'sha256:...'
    """
    options = options or PackOptions()
    validate_tag(tag)
    src = source if isinstance(source, Source) else scan(source)
    out = Path(output)
    plans = plan_layers(src.files, options.threshold, options.max_layers)

    if out.exists() and not (out.is_dir() and (is_layout(out) or not any(out.iterdir()))):
        raise LayoutError(f"{out} exists and is not an OCI image layout; choose another -o")
    if is_layout(out):
        layout = Layout.open(out)
        results = _write_layers(layout, plans, options, progress)
        index, manifests = _build_image(layout, src, results, options)
        _tag(layout, tag, index, manifests)
        return PackResult(out, tag, index, tuple(manifests), tuple(results), src)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        layout = Layout.create(tmp)
        results = _write_layers(layout, plans, options, progress)
        index, manifests = _build_image(layout, src, results, options)
        _tag(layout, tag, index, manifests)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out)  # replaces an empty directory, fails on a non-empty one
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackResult(out, tag, index, tuple(manifests), tuple(results), src)

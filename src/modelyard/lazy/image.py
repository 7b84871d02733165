"""A model image in a registry, seen file by file.

`RemoteImage` resolves a reference to one image manifest and finds which layer holds a file:
in an eStargz layer its TOC (read with two Range requests at most, then cached by its digest)
gives the file's chunks; a single-file layer (`org.opencontainers.image.title`) is fetched
whole; any other layer is streamed and the file picked out of its tar. Every byte delivered is
verified: chunk digests and the file digest for eStargz, the layer digest for whole layers, and
the file digest the manifest announces (`dev.modelyard.model.files`) in every case.
"""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import IO, Any

from modelyard.client.pull import resolve_image
from modelyard.client.registry import RegistryClient
from modelyard.errors import (
    DigestMismatch,
    FileNotInImage,
    InvalidEStargz,
    InvalidLayer,
    ModelyardError,
    RemoteNotFound,
)
from modelyard.lazy.cache import ContentCache, Staged
from modelyard.oci import estargz
from modelyard.oci.descriptor import Descriptor, Platform
from modelyard.oci.manifest import ImageManifest
from modelyard.oci.reference import Reference

TITLE = "org.opencontainers.image.title"
FILES = "dev.modelyard.model.files"
_GZIP_LAYERS = ("tar+gzip", "tar.gzip")


@dataclass(frozen=True)
class Located:
    """Where a file of the image lives."""

    path: str
    size: int | None
    #: The file's sha256 as the manifest or the TOC announce it (None if neither does).
    digest: str | None
    layer: Descriptor
    #: The file's chunks when the layer is eStargz; None when the whole layer must be read.
    toc_file: estargz.TocFile | None
    #: Other layers that may hold the file, if it is not in `layer` (plain multi-file layers).
    fallbacks: tuple[Descriptor, ...] = ()


def clean_path(path: str) -> str:
    """`path` relative to the image root; refuses `..` so a file cannot land outside `-o`."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"invalid file path {path!r}")
    return "/".join(parts)


class _StreamFile:
    """A read-only file over an iterator of byte chunks (for `tarfile`'s stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def drain(self) -> None:
        for _ in self._chunks:
            pass


class RemoteImage:
    """One image of a registry reference, with file-level access.

    Args:
        ref: `host[:port]/name[:tag][@digest]`.
        client: a `RegistryClient` for the reference's registry (default: a new one).
        cache: the content cache (default: the user's).
        platform: which image of an index (default: linux/amd64 if present, else the first).

    Raises:
        InvalidReference, RemoteNotFound, AuthenticationError, RegistryUnreachable, ...
    """

    def __init__(
        self,
        ref: str | Reference,
        *,
        client: RegistryClient | None = None,
        cache: ContentCache | None = None,
        platform: Platform | str | None = None,
        plain_http: bool | None = None,
        insecure: bool = False,
    ) -> None:
        self.ref = Reference.remote(ref)  # `ubuntu` is docker.io/library/ubuntu, as for docker
        self._own_client = client is None
        self.client = client or RegistryClient(
            self.ref.registry, plain_http=plain_http, insecure=insecure
        )
        self.cache = cache or ContentCache()
        #: Blob bytes received from the registry by this object.
        self.bytes_fetched = 0
        self._lock = threading.Lock()
        self._tocs: dict[str, estargz.Toc] = {}
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        try:
            image = resolve_image(self.client, self.ref, wanted or Platform("linux", "amd64"))
        except RemoteNotFound:
            if wanted is not None:
                raise
            image = resolve_image(self.client, self.ref)
        self.manifest: ImageManifest = image.images[0].manifest
        self.digest = image.root.digest
        self.files: dict[str, tuple[int, str]] = {}
        raw = self.manifest.annotations.get(FILES)
        if raw:
            try:
                for f in json.loads(raw):
                    self.files[clean_path(f["path"])] = (int(f["size"]), str(f["sha256"]))
            except (ValueError, KeyError, TypeError):
                self.files = {}  # an unreadable hint: fall back to layer contents

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> RemoteImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- bytes from the registry --------------------------------------------------------------

    def read_range(self, layer: Descriptor, start: int, end: int) -> bytes:
        data = self.client.get_blob_range(self.ref.name, layer.digest, start, end)
        with self._lock:
            self.bytes_fetched += len(data)
        return data

    def stream_layer(self, layer: Descriptor) -> Iterator[bytes]:
        """The layer's bytes; DigestMismatch after the last chunk if they are not the layer."""
        for chunk in self.client.get_blob_stream(self.ref.name, layer.digest):
            with self._lock:
                self.bytes_fetched += len(chunk)
            yield chunk

    # -- finding files -------------------------------------------------------------------------

    def toc(self, layer: Descriptor) -> estargz.Toc | None:
        """The verified TOC of an eStargz layer (None for other layers)."""
        toc_digest = layer.annotations.get(estargz.TOC_DIGEST_ANNOTATION)
        if not toc_digest or not any(k in layer.media_type for k in _GZIP_LAYERS):
            return None
        if toc_digest in self._tocs:
            return self._tocs[toc_digest]
        # The TOC JSON is cached by its digest; its offset by the layer digest (metadata).
        meta = self.cache.root / "toc-offsets" / layer.digest.replace(":", "-")
        cached = self.cache.get(toc_digest)
        toc = None
        if cached is not None and meta.exists():
            try:
                toc = estargz.parse_toc(cached, int(meta.read_text()), toc_digest)
            except (ValueError, InvalidEStargz, DigestMismatch):
                toc = None
        if toc is None:
            toc = estargz.read_toc(
                lambda s, e: self.read_range(layer, s, e), layer.size, toc_digest
            )
            self.cache.put(toc_digest, toc.raw)
            meta.parent.mkdir(parents=True, exist_ok=True)
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(str(toc.offset))
            tmp.replace(meta)
        self._tocs[toc_digest] = toc
        return toc

    def locate(self, path: str) -> Located:
        """Which layer holds `path`, and how to read it.

        Raises:
            FileNotFoundError (RemoteNotFound): no layer of the image holds `path`.
        """
        path = clean_path(path)
        size, digest = self.files.get(path, (None, None))
        layers = list(self.manifest.layers)
        titled = [d for d in layers if d.annotations.get(TITLE) == path]
        # A layer titled with the file first; then shared eStargz layers; then the rest.
        order = titled + sorted(
            (d for d in layers if d not in titled), key=lambda d: TITLE in d.annotations
        )
        for layer in order:
            toc = self.toc(layer)
            if toc is not None:
                f = toc.file(path)
                if f is None:
                    continue
                if digest is not None and f.digest is not None and f.digest != digest:
                    raise DigestMismatch(digest, f.digest, f"{path} (TOC vs manifest)")
                return Located(path, f.size, f.digest or digest, layer, f)
            if layer in titled:
                return Located(path, size, digest, layer, None)
        if self.files and path not in self.files:
            raise FileNotInImage(str(self.ref), path)
        # Plain layers without a title: the file may be in any of them; the top one wins.
        plain = [d for d in reversed(layers) if TITLE not in d.annotations and self.toc(d) is None]
        if plain:
            return Located(path, size, digest, plain[0], None, tuple(plain[1:]))
        raise FileNotInImage(str(self.ref), path)

    # -- fetching ------------------------------------------------------------------------------

    def fetch_to_cache(self, located: list[Located]) -> dict[str, str]:
        """Put the files in the cache (if absent); return path -> content digest.

        Raises: DigestMismatch (nothing of that file is kept), RemoteNotFound, ...
        """
        out: dict[str, str] = {}
        by_layer: dict[str, list[Located]] = {}
        for loc in located:
            if loc.digest is not None and self.cache.has(loc.digest):
                out[loc.path] = loc.digest
            elif loc.toc_file is not None:
                out[loc.path] = self._fetch_chunks(loc)
            else:
                by_layer.setdefault(loc.layer.digest, []).append(loc)
        while by_layer:
            _, group = by_layer.popitem()
            found = self._fetch_from_layer(group)
            out.update(found)
            for loc in group:
                if loc.path in found:
                    continue
                if not loc.fallbacks:
                    raise FileNotInImage(str(self.ref), loc.path)
                nxt = replace(loc, layer=loc.fallbacks[0], fallbacks=loc.fallbacks[1:])
                by_layer.setdefault(nxt.layer.digest, []).append(nxt)
        return out

    def _fetch_chunks(self, loc: Located) -> str:
        assert loc.toc_file is not None
        with self.cache.writer(loc.digest) as staged:
            # The staged entry checks the file digest; iter_file checks every chunk.
            for data in estargz.iter_file(
                lambda s, e: self.read_range(loc.layer, s, e),
                loc.toc_file,
                verify_file=loc.digest is None,
            ):
                staged.write(data)
        assert staged.digest is not None
        return staged.digest

    def _fetch_from_layer(self, group: list[Located]) -> dict[str, str]:
        """Stream one whole layer, keep the wanted files it holds (path -> digest); commit them
        only once the layer digest has been verified at the end of the stream."""
        layer = group[0].layer
        wanted = {loc.path: loc for loc in group}
        staged: dict[str, Staged] = {}
        stream = _StreamFile(self.stream_layer(layer))
        try:
            source: Any = stream
            mode = "r|gz" if any(k in layer.media_type for k in _GZIP_LAYERS) else "r|*"
            if layer.media_type.endswith("+zstd"):
                import zstandard  # tarfile has no zstd before Python 3.14

                reader = zstandard.ZstdDecompressor().stream_reader(stream)  # type: ignore[arg-type]
                source, mode = reader, "r|"
            try:
                with tarfile.open(fileobj=source, mode=mode) as tar:  # type: ignore[call-overload]
                    for info in tar:
                        name = clean_path(info.name) if info.name.strip("/.") else ""
                        if name not in wanted or not info.isfile():
                            continue
                        src: IO[bytes] | None = tar.extractfile(info)
                        assert src is not None
                        s = staged[name] = self.cache.stage(wanted[name].digest)
                        while block := src.read(1 << 20):
                            s.write(block)
            except ModelyardError:
                raise  # a digest mismatch, the registry gone: already ours
            except Exception as exc:  # tarfile, gzip, zstandard: all mean "not that tar"
                stream.drain()  # a corrupt blob should say so by its digest first
                raise InvalidLayer(f"layer {layer.digest} is not a readable tar: {exc}") from exc
            stream.drain()  # the layer digest is checked when the last byte has arrived
            return {name: s.commit() for name, s in staged.items()}
        finally:
            for s in staged.values():
                s.discard()


def describe(loc: Located) -> dict[str, Any]:
    return {
        "path": loc.path,
        "size": loc.size,
        "digest": loc.digest,
        "layer": loc.layer.digest,
        "estargz": loc.toc_file is not None,
    }

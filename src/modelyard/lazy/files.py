"""`modelyard pull REF PATH... -o DIR`: fetch only some files of an image.

Files go through the content cache: a file already there (from any image, any revision) costs
no blob bytes; a new one is fetched, verified, committed to the cache and then materialised in
`DIR` by reflink, hard link or copy. A file that fails verification is never written.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelyard.client.registry import RegistryClient
from modelyard.lazy.cache import ContentCache
from modelyard.lazy.image import RemoteImage, clean_path
from modelyard.oci.reference import Reference


@dataclass(frozen=True)
class PulledFile:
    path: str
    digest: str
    size: int
    #: How the file was written: "reflink", "hardlink" or "copy".
    how: str


@dataclass(frozen=True)
class FilesResult:
    reference: str
    digest: str
    output: str
    files: tuple[PulledFile, ...]
    #: Blob bytes received from the registry (0 when everything came from the cache).
    bytes_fetched: int
    seconds: float
    cached: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pull_files(
    ref: str | Reference,
    paths: list[str],
    output: str | Path,
    *,
    client: RegistryClient | None = None,
    cache: ContentCache | None = None,
    platform: str | None = None,
    plain_http: bool | None = None,
    insecure: bool = False,
) -> FilesResult:
    """Fetch the files `paths` of image `ref` into the directory `output`.

    Args:
        ref: `host[:port]/name[:tag][@digest]`.
        paths: file paths inside the image (`config.json`, `onnx/model.onnx`).
        output: directory to write them to, at their path inside the image (created if absent).

    Raises:
        FileNotInImage: a path is not in the image (nothing is written).
        DigestMismatch: the registry served bytes that do not verify (that file is not written).
        RemoteNotFound, AuthenticationError, RegistryUnreachable, InvalidReference.

    Example:
        >>> pull_files("localhost:5000/org/bert:v1", ["config.json"], "./bert").files[0].path
        'config.json'
    """
    started = time.monotonic()
    wanted = list(dict.fromkeys(clean_path(p) for p in paths))
    out = Path(output)
    cache = cache or ContentCache()
    with RemoteImage(
        ref,
        client=client,
        cache=cache,
        platform=platform,
        plain_http=plain_http,
        insecure=insecure,
    ) as image:
        located = [image.locate(p) for p in wanted]  # every path checked before any write
        cached = [loc.path for loc in located if loc.digest and cache.has(loc.digest)]
        digests = image.fetch_to_cache(located)
        files = []
        for loc in located:
            digest = digests[loc.path]
            dest = out / loc.path
            how = cache.materialize(digest, dest)
            if how is None:  # evicted by another process in between: fetch it again
                digest = image.fetch_to_cache([loc])[loc.path]
                how = cache.materialize(digest, dest) or "copy"
            files.append(PulledFile(loc.path, digest, dest.stat().st_size, how))
        return FilesResult(
            str(image.ref),
            image.digest,
            str(out),
            tuple(files),
            image.bytes_fetched,
            round(time.monotonic() - started, 3),
            cached,
        )

"""The registry's domain service: blobs, uploads, manifests, tags and referrers over a driver.

Storage layout (keys of the storage driver):

    blobs/<alg>/<hex[:2]>/<hex>/data                 content, stored once for the registry
    repositories/<name>/_layers/<alg>/<hex>/link     blob linked into a repository
    repositories/<name>/_manifests/revisions/<alg>/<hex>/link   manifest in a repository
                                                      (its media type, as JSON)
    repositories/<name>/_manifests/tags/<tag>        digest the tag points at
    repositories/<name>/_uploads/<uuid>/{data,state} resumable upload session
    repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   descriptor of a referrer

A repository reads only the blobs linked into it, so knowing a digest is not enough to read
another repository's content. Name components cannot start with `_`, so the `_layers`...
directories never collide with nested repository names.

Crash safety: content is written under a temp name, synced and renamed; a blob is moved
into place before it is linked, a manifest before its revision link, the revision link before
the tag. A process killed at any point leaves either the old state or the new one visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidDigest, InvalidManifest, InvalidReference, PathNotFound
from modelyard.oci import mediatypes as mt
from modelyard.oci.digest import Digest
from modelyard.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from modelyard.oci.reference import validate_name, validate_tag
from modelyard.registry.errcodes import RegistryError
from modelyard.storage.base import StorageDriver

#: Manifests larger than this are refused (the spec suggests at least 4 MiB be accepted).
MAX_MANIFEST_SIZE = 4 << 20
_UUID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    path: str  # storage key of the content


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    data: bytes


@dataclass
class _Hashing:
    """The running sha256 of an upload's bytes, kept in memory between chunks so that each
    byte is hashed once, while it is received."""

    hasher: hashlib._Hash
    offset: int


def check_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidReference as exc:
        raise RegistryError("NAME_INVALID", str(exc), detail={"name": name}) from exc


def parse_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise RegistryError("DIGEST_INVALID", str(exc), detail={"digest": value}) from exc


def blob_key(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.hex[:2]}/{d.hex}/data"


def _repo(name: str) -> str:
    return f"repositories/{name}"


class Registry:
    """Everything the HTTP handlers need, in OCI terms, raising `RegistryError`."""

    def __init__(self, driver: StorageDriver, manifest_cache: int = 1024) -> None:
        self.driver = driver
        self._hashing: dict[str, _Hashing] = {}
        self._locks: dict[str, list[Any]] = {}  # upload id -> [lock, users]
        # Manifests are immutable per digest: caching their bytes is always correct.
        self._manifests: OrderedDict[str, ManifestInfo] = OrderedDict()
        self._cache_size = manifest_cache
        # hub pull-through (modelyard.hub.proxy): awaited with (name, reference) before a
        # manifest lookup, so it can import the image first. None: no pull-through.
        self.pull_through: Callable[[str, str], Awaitable[None]] | None = None

    # ---- blobs -------------------------------------------------------------------------

    def _layer_link(self, name: str, d: Digest) -> str:
        return f"{_repo(name)}/_layers/{d.algorithm}/{d.hex}/link"

    def stat_blob(self, name: str, digest: str) -> BlobInfo:
        """Raises: RegistryError BLOB_UNKNOWN unless the blob is linked into `name`."""
        d = parse_digest(digest)
        info = None
        if self.driver.stat(self._layer_link(name, d)) is not None:
            info = self.driver.stat(blob_key(d))
        if info is None:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
        return BlobInfo(str(d), info.size, blob_key(d))

    def has_global_blob(self, d: Digest) -> bool:
        return self.driver.stat(blob_key(d)) is not None

    def link_blob(self, name: str, d: Digest) -> None:
        self.driver.put(self._layer_link(name, d), str(d).encode())

    def delete_blob(self, name: str, digest: str) -> None:
        d = parse_digest(digest)
        if not self.driver.delete(f"{_repo(name)}/_layers/{d.algorithm}/{d.hex}"):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})

    def mount_blob(self, name: str, source: str, digest: str) -> BlobInfo | None:
        """Link a blob readable in `source` into `name`; None if `source` cannot read it."""
        try:
            check_name(source)
            info = self.stat_blob(source, digest)
        except RegistryError:
            return None
        self.link_blob(name, Digest.parse(info.digest))
        return info

    # ---- uploads -----------------------------------------------------------------------

    def _upload_dir(self, name: str, upload_id: str) -> str:
        if not _UUID_RE.match(upload_id):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        return f"{_repo(name)}/_uploads/{upload_id}"

    def start_upload(self, name: str) -> str:
        upload_id = uuidlib.uuid4().hex
        base = self._upload_dir(name, upload_id)
        self.driver.put(f"{base}/data", b"")
        self._save_state(base, 0)
        self._hashing[upload_id] = _Hashing(hashlib.sha256(), 0)
        return upload_id

    def _save_state(self, base: str, offset: int) -> None:
        self.driver.put(f"{base}/state", json.dumps({"offset": offset}).encode())

    def upload_offset(self, name: str, upload_id: str) -> int:
        """Bytes received and acknowledged so far.

        After a crash the data file may hold bytes past the last acknowledged chunk (a chunk
        cut in the middle); they are dropped here so the client resumes from a clean point.

        Raises: RegistryError BLOB_UPLOAD_UNKNOWN.
        """
        base = self._upload_dir(name, upload_id)
        try:
            state = json.loads(self.driver.get(f"{base}/state"))
        except (PathNotFound, ValueError) as exc:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from exc
        offset = int(state["offset"])
        info = self.driver.stat(f"{base}/data")
        if info is None:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        if info.size > offset:
            self.driver.truncate(f"{base}/data", offset)
        elif info.size < offset:  # lost on power failure: believe the disk
            offset = info.size
        return offset

    def _hasher_at(self, base: str, upload_id: str, offset: int) -> hashlib._Hash:
        state = self._hashing.get(upload_id)
        if state is not None and state.offset == offset:
            return state.hasher
        # After a restart (or an out-of-band change) rebuild the hash from the bytes on disk.
        h = hashlib.sha256()
        with self.driver.open(f"{base}/data") as f:
            remaining = offset
            while remaining:
                chunk = f.read(min(remaining, 4 << 20))
                if not chunk:
                    break
                h.update(chunk)
                remaining -= len(chunk)
        self._hashing[upload_id] = _Hashing(h, offset)
        return h

    @contextlib.asynccontextmanager
    async def _session(self, upload_id: str) -> AsyncIterator[None]:
        """Serializes requests on one upload: a second PATCH waits, then finds the offset
        moved and gets 416, instead of interleaving bytes."""
        entry = self._locks.setdefault(upload_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[upload_id]

    async def append_upload(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Append a chunk to an upload; returns the new offset.

        Args:
            start: the chunk's first byte from `Content-Range`; it must equal the current
                offset (chunks arrive in order).
            length: the chunk's announced length, checked against what arrived.

        Raises:
            RegistryError: BLOB_UPLOAD_UNKNOWN, RANGE_INVALID (416, with a `Range` header of
                what the registry has), SIZE_INVALID.
        """
        async with self._session(upload_id):
            return await self._append(name, upload_id, body, start, length)

    async def _append(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        start: int | None,
        length: int | None,
    ) -> int:
        base = self._upload_dir(name, upload_id)
        offset = self.upload_offset(name, upload_id)
        if start is not None and start != offset:
            raise RegistryError(
                "RANGE_INVALID",
                f"chunk starts at {start} but the upload has {offset} bytes",
                headers={"Range": range_header(offset)},
            )
        hasher = self._hasher_at(base, upload_id, offset)
        received = 0
        try:
            # One pass: the driver hashes what it writes, on its own threads, so this event
            # loop thread only receives and copies (hashing here put 0.7-0.9 s per GiB on the
            # loop's critical path).
            with self.driver.append(f"{base}/data", hasher) as f:
                async for chunk in body:
                    if chunk:
                        f.write(chunk)
                        received += len(chunk)
        except BaseException:
            # The connection died mid-chunk: forget the partial bytes (and the hash state).
            self._hashing.pop(upload_id, None)
            self.driver.truncate(f"{base}/data", offset)
            raise
        if length is not None and received != length:
            self._hashing.pop(upload_id, None)
            self.driver.truncate(f"{base}/data", offset)
            raise RegistryError(
                "SIZE_INVALID", f"chunk announced {length} bytes but {received} arrived"
            )
        offset += received
        if received:  # the appender's close() made the bytes durable: now record them
            self._save_state(base, offset)
        self._hashing[upload_id] = _Hashing(hasher, offset)
        return offset

    async def finish_upload(
        self,
        name: str,
        upload_id: str,
        digest: str,
        body: AsyncIterator[bytes],
        start: int | None = None,
        length: int | None = None,
    ) -> BlobInfo:
        """Append the last chunk (maybe empty), check the digest and publish the blob.

        A digest mismatch stores nothing and ends the session.

        Raises: RegistryError DIGEST_INVALID, BLOB_UPLOAD_UNKNOWN, RANGE_INVALID, SIZE_INVALID.
        """
        d = parse_digest(digest)
        async with self._session(upload_id):
            return await self._finish(name, upload_id, d, body, start, length)

    async def _finish(
        self,
        name: str,
        upload_id: str,
        d: Digest,
        body: AsyncIterator[bytes],
        start: int | None,
        length: int | None,
    ) -> BlobInfo:
        base = self._upload_dir(name, upload_id)
        offset = await self._append(name, upload_id, body, start, length)
        if d.algorithm == "sha256":
            actual = "sha256:" + self._hasher_at(base, upload_id, offset).hexdigest()
        else:
            actual = self._digest_file(f"{base}/data", d.algorithm)
        if actual != str(d):
            self.cancel_upload(name, upload_id)
            raise RegistryError(
                "DIGEST_INVALID",
                f"upload hashes to {actual}, not {d}",
                detail={"expected": str(d), "actual": actual},
            )
        if self.has_global_blob(d):
            self.driver.delete(base)  # content already stored once: only link it
        else:
            self.driver.move(f"{base}/data", blob_key(d))
            self.driver.delete(base)
        self._hashing.pop(upload_id, None)
        self.link_blob(name, d)
        return BlobInfo(str(d), offset, blob_key(d))

    def _digest_file(self, key: str, algorithm: str) -> str:
        h = hashlib.new(algorithm)
        with self.driver.open(key) as f:
            while chunk := f.read(4 << 20):
                h.update(chunk)
        return f"{algorithm}:{h.hexdigest()}"

    def cancel_upload(self, name: str, upload_id: str) -> None:
        """Raises: RegistryError BLOB_UPLOAD_UNKNOWN."""
        base = self._upload_dir(name, upload_id)
        self._hashing.pop(upload_id, None)
        if not self.driver.delete(base):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})

    # ---- manifests ---------------------------------------------------------------------

    def _revision(self, name: str, d: Digest) -> str:
        return f"{_repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}/link"

    def _tag_key(self, name: str, tag: str) -> str:
        return f"{_repo(name)}/_manifests/tags/{tag}"

    def resolve(self, name: str, reference: str) -> Digest:
        """The digest a tag or digest reference names in `name`.

        Raises: RegistryError MANIFEST_UNKNOWN (or DIGEST_INVALID for a malformed digest).
        """
        if ":" in reference:
            return parse_digest(reference)
        try:
            validate_tag(reference)
            return Digest.parse(self.driver.get(self._tag_key(name, reference)).decode())
        except (InvalidReference, PathNotFound) as exc:
            # A string that cannot be a tag names no manifest: 404, as the spec's tests expect.
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference}) from exc

    def get_manifest(self, name: str, reference: str) -> ManifestInfo:
        """Raises: RegistryError MANIFEST_UNKNOWN."""
        d = self.resolve(name, reference)
        try:
            media_type = json.loads(self.driver.get(self._revision(name, d)))["mediaType"]
        except PathNotFound as exc:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(d)}) from exc
        key = str(d)
        cached = self._manifests.get(key)
        if cached is not None and cached.media_type == media_type:
            return cached
        try:
            data = self.driver.get(blob_key(d))
        except PathNotFound as exc:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": key}) from exc
        info = ManifestInfo(key, media_type, data)
        self._manifests[key] = info
        if len(self._manifests) > self._cache_size:
            self._manifests.popitem(last=False)
        return info

    def put_manifest(
        self, name: str, reference: str, data: bytes, content_type: str | None
    ) -> tuple[str, str | None]:
        """Validate and store a manifest; returns (digest, subject digest or None).

        The raw bytes are stored unchanged (their digest is the manifest's identity).

        Raises: RegistryError MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN, DIGEST_INVALID,
            TAG_INVALID, SIZE_INVALID.
        """
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryError("SIZE_INVALID", f"manifest larger than {MAX_MANIFEST_SIZE} bytes")
        ctype = (content_type or "").split(";")[0].strip() or None
        if ctype is not None and ctype not in mt.MANIFESTS:
            ctype = None  # e.g. application/json: judge by the document itself
        try:
            manifest = parse_manifest(data, ctype)
        except InvalidManifest as exc:
            raise RegistryError("MANIFEST_INVALID", str(exc)) from exc
        tag = None
        if ":" in reference:
            d = parse_digest(reference)
            actual = f"{d.algorithm}:{hashlib.new(d.algorithm, data).hexdigest()}"
            if actual != str(d):
                raise RegistryError(
                    "DIGEST_INVALID",
                    f"manifest hashes to {actual}, not {d}",
                    detail={"expected": str(d), "actual": actual},
                )
        else:
            try:
                tag = validate_tag(reference)
            except InvalidReference as exc:
                raise RegistryError("TAG_INVALID", str(exc)) from exc
            d = Digest("sha256", hashlib.sha256(data).hexdigest())
        self._check_references(name, manifest)
        if not self.has_global_blob(d):
            self.driver.put(blob_key(d), data)
        self.driver.put(
            self._revision(name, d), json.dumps({"mediaType": manifest.media_type}).encode()
        )
        subject = None
        if manifest.subject is not None:
            subject = manifest.subject.digest
            self._add_referrer(name, manifest, d, len(data))
        if tag is not None:
            self.driver.put(self._tag_key(name, tag), str(d).encode())
        return str(d), subject

    def _check_references(self, name: str, manifest: ImageManifest | ImageIndex) -> None:
        if isinstance(manifest, ImageManifest):
            for desc in manifest.references():
                if desc.urls:
                    continue  # non-distributable layers live elsewhere
                try:
                    self.stat_blob(name, desc.digest)
                except RegistryError as exc:
                    raise RegistryError(
                        "MANIFEST_BLOB_UNKNOWN", detail={"digest": desc.digest}
                    ) from exc
        else:
            for desc in manifest.manifests:
                d = parse_digest(desc.digest)
                if self.driver.stat(self._revision(name, d)) is None:
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": desc.digest})

    def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a tag, or a manifest by digest with the tags pointing at it.

        Raises: RegistryError MANIFEST_UNKNOWN.
        """
        if ":" not in reference:
            self.resolve(name, reference)
            self.driver.delete(self._tag_key(name, reference))
            return
        d = parse_digest(reference)
        info = self.get_manifest(name, str(d))
        for tag in self.tags(name, must_exist=False):
            try:
                if self.driver.get(self._tag_key(name, tag)).decode() == str(d):
                    self.driver.delete(self._tag_key(name, tag))
            except PathNotFound:
                continue
        try:
            manifest = parse_manifest(info.data, info.media_type)
        except InvalidManifest:
            manifest = None
        if manifest is not None and manifest.subject is not None:
            s = parse_digest(manifest.subject.digest)
            self.driver.delete(
                f"{_repo(name)}/_referrers/{s.algorithm}/{s.hex}/{d.algorithm}-{d.hex}"
            )
        self.driver.delete(f"{_repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}")

    # ---- tags, catalog, referrers ------------------------------------------------------

    def repository_exists(self, name: str) -> bool:
        return self.driver.stat(_repo(name)) is not None

    def tags(self, name: str, must_exist: bool = True) -> list[str]:
        """Sorted tags of `name`. Raises: RegistryError NAME_UNKNOWN if it does not exist."""
        if must_exist and not self.repository_exists(name):
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        return self.driver.list(f"{_repo(name)}/_manifests/tags")

    def catalog(self) -> list[str]:
        """Every repository name, sorted."""
        out: list[str] = []
        stack = [""]
        while stack:
            prefix = stack.pop()
            for child in self.driver.list(f"repositories/{prefix}".rstrip("/")):
                if child.startswith("_"):
                    continue
                full = f"{prefix}{child}"
                children = self.driver.list(f"repositories/{full}")
                if any(c in ("_manifests", "_layers") for c in children):
                    out.append(full)
                stack.append(full + "/")
        return sorted(out)

    def _add_referrer(
        self, name: str, manifest: ImageManifest | ImageIndex, d: Digest, size: int
    ) -> None:
        assert manifest.subject is not None
        s = parse_digest(manifest.subject.digest)
        artifact_type = manifest.artifact_type
        if not artifact_type and isinstance(manifest, ImageManifest):
            artifact_type = manifest.config.media_type
        desc: dict[str, object] = {
            "mediaType": manifest.media_type,
            "digest": str(d),
            "size": size,
        }
        if artifact_type:
            desc["artifactType"] = artifact_type
        if manifest.annotations:
            desc["annotations"] = manifest.annotations
        key = f"{_repo(name)}/_referrers/{s.algorithm}/{s.hex}/{d.algorithm}-{d.hex}"
        self.driver.put(key, json.dumps(desc).encode())

    def referrers(
        self, name: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, object]]:
        """Descriptors of the manifests whose `subject` is `digest`, optionally filtered."""
        s = parse_digest(digest)
        base = f"{_repo(name)}/_referrers/{s.algorithm}/{s.hex}"
        out = []
        for entry in self.driver.list(base):
            try:
                desc = json.loads(self.driver.get(f"{base}/{entry}"))
            except (PathNotFound, ValueError):
                continue
            if artifact_type is None or desc.get("artifactType") == artifact_type:
                out.append(desc)
        return out


def range_header(offset: int) -> str:
    """The `Range` value for an upload holding `offset` bytes (`0-0` when empty, as
    distribution does)."""
    return f"0-{max(offset - 1, 0)}"

"""Garbage collection: mark what tags reach, sweep the rest.

Marking starts at every tag of every repository and follows index children, config and
layer descriptors, and the referrers (signatures, SBOMs) of any reached manifest. Sweeping
removes, per repository, unreached manifest revisions and blob links, then the blobs no
repository reaches any more, and upload sessions left idle.

Safe while pushes run: anything modified less than `grace` seconds ago is kept, so a blob
uploaded for a manifest not yet pushed, a manifest pushed by digest before its tag, or an
open upload survive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from modelyard.errors import InvalidManifest, PathNotFound
from modelyard.oci.digest import Digest
from modelyard.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from modelyard.registry.errcodes import RegistryError
from modelyard.registry.service import Registry, blob_key
from modelyard.storage.base import StorageDriver


@dataclass
class GCReport:
    manifests: list[str] = field(default_factory=list)  # "repo@digest"
    links: list[str] = field(default_factory=list)  # "repo@digest" blob links
    blobs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)  # "repo/uuid"
    freed_bytes: int = 0
    temp_files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "manifests": self.manifests,
            "links": self.links,
            "blobs": self.blobs,
            "uploads": self.uploads,
            "freed_bytes": self.freed_bytes,
            "temp_files": self.temp_files,
        }


def _digests_under(driver: StorageDriver, base: str) -> list[Digest]:
    out = []
    for algorithm in driver.list(base):
        for hex_ in driver.list(f"{base}/{algorithm}"):
            try:
                out.append(Digest.parse(f"{algorithm}:{hex_}"))
            except ValueError:
                continue
    return out


def collect(driver: StorageDriver, grace: float = 3600.0, dry_run: bool = False) -> GCReport:
    """Run one mark-and-sweep pass over the registry in `driver`."""
    registry = Registry(driver)
    cutoff = time.time() - grace
    report = GCReport()

    def young(key: str) -> bool:
        info = driver.stat(key)
        return info is not None and info.mtime > cutoff

    reached_blobs: set[Digest] = set()
    for name in registry.catalog():
        repo = f"repositories/{name}"
        live_manifests: set[Digest] = set()
        live_blobs: set[Digest] = set()
        pending: list[Digest] = []
        for tag in registry.tags(name, must_exist=False):
            try:
                pending.append(Digest.parse(driver.get(f"{repo}/_manifests/tags/{tag}").decode()))
            except (PathNotFound, ValueError):
                continue
        revisions = _digests_under(driver, f"{repo}/_manifests/revisions")
        # Young revisions are roots too: their tag or parent index may be on its way.
        pending += [
            d for d in revisions if young(f"{repo}/_manifests/revisions/{d.algorithm}/{d.hex}/link")
        ]
        while pending:
            d = pending.pop()
            if d in live_manifests:
                continue
            live_manifests.add(d)
            live_blobs.add(d)
            try:
                info = registry.get_manifest(name, str(d))
                manifest = parse_manifest(info.data, info.media_type)
            except (RegistryError, InvalidManifest):  # unreadable: keep it, follow nothing
                continue
            if isinstance(manifest, ImageManifest):
                live_blobs.update(Digest.parse(x.digest) for x in manifest.references())
            elif isinstance(manifest, ImageIndex):
                pending += [Digest.parse(x.digest) for x in manifest.manifests]
            for ref in registry.referrers(name, str(d)):
                pending.append(Digest.parse(str(ref["digest"])))
        for d in revisions:
            if d not in live_manifests:
                report.manifests.append(f"{name}@{d}")
                if not dry_run:
                    registry.delete_manifest(name, str(d))
        for d in _digests_under(driver, f"{repo}/_layers"):
            link = f"{repo}/_layers/{d.algorithm}/{d.hex}"
            if d in live_blobs or young(f"{link}/link"):
                reached_blobs.add(d)
                continue
            report.links.append(f"{name}@{d}")
            if not dry_run:
                driver.delete(link)
        reached_blobs |= live_blobs
        for upload_id in driver.list(f"{repo}/_uploads"):
            key = f"{repo}/_uploads/{upload_id}"
            if young(f"{key}/state") or young(f"{key}/data"):
                continue
            report.uploads.append(f"{name}/{upload_id}")
            if not dry_run:
                driver.delete(key)
    for algorithm in driver.list("blobs"):
        for prefix in driver.list(f"blobs/{algorithm}"):
            for hex_ in driver.list(f"blobs/{algorithm}/{prefix}"):
                try:
                    d = Digest.parse(f"{algorithm}:{hex_}")
                except ValueError:
                    continue
                key = blob_key(d)
                if d in reached_blobs or young(key):
                    continue
                stat = driver.stat(key)
                report.blobs.append(str(d))
                report.freed_bytes += stat.size if stat else 0
                if not dry_run:
                    driver.delete(key.rsplit("/", 1)[0])
    if not dry_run:
        # Temp files of writes cut short by a crash: invisible, but they hold disk space.
        report.temp_files = driver.purge_temp(cutoff)
    return report

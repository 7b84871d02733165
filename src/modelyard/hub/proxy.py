"""Pull-through of Hugging Face Hub models in the registry (`registry serve --hf-proxy`).

A pull of `HOST/hf/ORG/NAME:TAG` asks the hub for revision TAG (`latest` means `main`; a
commit hash is allowed) of the model `oci_to_hf(ORG/NAME)`. The registry's manifest handler
awaits `HubProxy.ensure(name, reference)` before it looks the tag up; `ensure` makes the tag
present and current in storage, then the normal lookup serves it:

- a commit-hash tag already in storage is served as it is: a commit never changes;
- another tag (a branch or a hub tag, which can move) is served from storage for `ttl`
  seconds after it was last resolved; then the hub is asked again (one `model_info` call),
  and only a new commit is downloaded and packed. If the hub is unreachable at that point,
  the stored image is served for another TTL (stale beats down);
- everything else imports: resolve, download into the HF cache, pack into a temp layout,
  store the blobs and manifests through the registry's domain service, tag the image with
  the requested tag, the revision and the commit hash.

Simultaneous requests for the same model and revision share one flight: the first runs the
work in a thread, the others await its result (or its error). Hub errors become registry
errors: unknown model -> NAME_UNKNOWN, unknown revision -> MANIFEST_UNKNOWN, gated without
a token -> UNAUTHORIZED with a message saying so, hub down -> UNKNOWN (502).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import (
    HubEntryNotFound,
    HubError,
    HubGated,
    HubRepoNotFound,
    HubRevisionNotFound,
    InvalidReference,
)
from modelyard.hub.importer import HubSettings, HubSource, Resolved, import_resolved, resolve
from modelyard.hub.names import is_commit, oci_to_hf, revision_to_tag, tag_to_revision
from modelyard.oci.digest import Digest, iter_chunks
from modelyard.oci.layout import Layout
from modelyard.registry.errcodes import RegistryError

log = logging.getLogger("modelyard.hub.proxy")
PREFIX = "hf/"
DEFAULT_TTL = 300.0
#: Storage key under which imports are packed; not a repository (names cannot start with _).
WORK_PREFIX = "_hub-imports"


@dataclass
class ProxyStats:
    """What the proxy did, for logs and tests."""

    resolutions: int = 0
    imports: int = 0
    stale_served: int = 0


class HubProxy:
    """Makes `hf/...` tags present and current in a `modelyard.registry.service.Registry`."""

    def __init__(
        self,
        registry: Any,
        ttl: float = DEFAULT_TTL,
        settings: Callable[[], HubSettings] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.ttl = ttl
        self._settings = settings or (lambda: HubSettings.from_env(progress=False))
        # Leftovers of imports cut short by a crash: nothing references them.
        registry.driver.delete(WORK_PREFIX)
        self._clock = clock
        self._flights: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._resolved_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.stats = ProxyStats()

    async def ensure(self, name: str, reference: str) -> None:
        """Import or refresh `name:reference` if it is a hub name that needs it.

        Raises: RegistryError (see the module docstring).
        """
        if not name.startswith(PREFIX) or ":" in reference:
            return  # not a hub name, or a digest: storage answers
        if self._fresh(name, reference):
            return
        try:
            repo_id = oci_to_hf(name[len(PREFIX) :])
        except InvalidReference as exc:
            raise RegistryError("NAME_UNKNOWN", f"{name} names no hub model: {exc}") from exc
        revision = tag_to_revision(reference)
        key = (name, revision)
        flight = self._flights.get(key)
        if flight is None:
            # A task of its own, so that a client hanging up does not cancel the import the
            # other clients wait for.
            flight = asyncio.ensure_future(
                asyncio.to_thread(self._refresh, name, repo_id, revision, reference)
            )
            self._flights[key] = flight
            flight.add_done_callback(lambda f: self._landed(key, f))
        await asyncio.shield(flight)
        if not self._has_tag(name, reference):
            # Waited on a flight for the same revision under another tag (latest/main).
            await asyncio.to_thread(self._refresh, name, repo_id, revision, reference)

    def _landed(self, key: tuple[str, str], flight: asyncio.Future[None]) -> None:
        self._flights.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved, even if every waiter went away

    # decisions

    def _has_tag(self, name: str, tag: str) -> bool:
        try:
            self.registry.resolve(name, tag)
        except RegistryError:
            return False
        return True

    def _fresh(self, name: str, tag: str) -> bool:
        if not self._has_tag(name, tag):
            return False
        if is_commit(tag):
            return True
        with self._lock:
            at = self._resolved_at.get((name, tag))
        return at is not None and self._clock() - at < self.ttl

    def _mark(self, name: str, *tags: str) -> None:
        now = self._clock()
        with self._lock:
            for tag in tags:
                self._resolved_at[(name, tag)] = now

    # work (in a thread)

    def _refresh(self, name: str, repo_id: str, revision: str, tag: str) -> None:
        settings = self._settings()
        source = HubSource(repo_id, revision)
        try:
            with self._lock:
                self.stats.resolutions += 1
            resolved = resolve(source, settings)
        except HubError as exc:
            if self._has_tag(name, tag) and not isinstance(
                exc, HubRepoNotFound | HubGated | HubRevisionNotFound
            ):
                log.warning("serving stored %s:%s, the hub failed: %s", name, tag, exc)
                with self._lock:
                    self.stats.stale_served += 1
                self._mark(name, tag)  # ask the hub again after another TTL, not every pull
                return
            raise _registry_error(exc, name, settings) from exc
        tags = [tag, resolved.commit]
        if not is_commit(revision):
            with contextlib.suppress(InvalidReference):
                tags.append(revision_to_tag(revision))
        tags = list(dict.fromkeys(tags))
        if self._has_tag(name, resolved.commit):
            # Known commit: only (re)point the tags, nothing to download.
            info = self.registry.get_manifest(name, resolved.commit)
            for t in tags:
                self.registry.put_manifest(name, t, info.data, info.media_type)
        else:
            self._import(name, resolved, settings, tags)
        self._mark(name, *tags)
        log.info("%s:%s is %s@%s", name, tag, repo_id, resolved.commit)

    def _import(
        self, name: str, resolved: Resolved, settings: HubSettings, tags: list[str]
    ) -> None:
        with self._lock:
            self.stats.imports += 1
        # Pack inside the storage when it is a local directory, so that the layers are
        # renamed into place rather than copied.
        work_key = f"{WORK_PREFIX}/{uuid.uuid4().hex}"
        local = self.registry.driver.local_path(work_key)
        tmp = Path(local) if local else Path(tempfile.mkdtemp(prefix="modelyard-hf-"))
        try:
            try:
                result = import_resolved(resolved, tmp / "layout", settings=settings)
            except HubError as exc:
                raise _registry_error(exc, name, settings) from exc
            layout = Layout.open(result.layout)
            self._store(name, layout, result.index, tags, f"{work_key}/layout" if local else None)
        finally:
            if local:
                self.registry.driver.delete(work_key)
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    def _store(
        self, name: str, layout: Layout, index: Any, tags: list[str], layout_key: str | None
    ) -> None:
        """Put an image from a layout into the registry: blobs first, then the manifests,
        then the tags, so that a reader never sees a tag whose content is missing.

        `layout_key`: where the layout is inside the storage, if it is; its blobs are then
        moved, not copied."""
        from modelyard.registry.service import blob_key

        registry = self.registry
        images = layout.image_manifests(index)
        blobs = {d.digest for _, m in images for d in (m.config, *m.layers)}
        for digest in sorted(blobs):
            d = Digest.parse(digest)
            if registry.has_global_blob(d):
                pass
            elif layout_key is not None:
                registry.driver.move(f"{layout_key}/blobs/{d.algorithm}/{d.hex}", blob_key(d))
            else:
                writer = registry.driver.writer(blob_key(d))
                try:
                    with open(layout.blob_path(digest), "rb") as src:
                        for chunk in iter_chunks(src):
                            writer.write(chunk)
                    writer.commit()
                finally:
                    writer.cancel()
            registry.link_blob(name, d)
        for desc, _ in images:
            if desc.digest != index.digest:
                registry.put_manifest(
                    name, desc.digest, layout.read_blob(desc.digest), desc.media_type
                )
        data = layout.read_blob(index.digest)
        for tag in tags:
            registry.put_manifest(name, tag, data, index.media_type)


def _registry_error(exc: HubError, name: str, settings: HubSettings) -> RegistryError:
    if isinstance(exc, HubRepoNotFound):
        return RegistryError("NAME_UNKNOWN", f"{name}: {exc}")
    if isinstance(exc, HubRevisionNotFound | HubEntryNotFound):
        return RegistryError("MANIFEST_UNKNOWN", f"{name}: {exc}")
    if isinstance(exc, HubGated):
        who = (
            "the registry's HF_TOKEN has no access"
            if settings.token
            else (
                "the registry has no hub token: start it with HF_TOKEN set to a token of an "
                "account that accepted the model's conditions"
            )
        )
        return RegistryError("UNAUTHORIZED", f"{exc.repo_id} is a gated model on the hub; {who}")
    return RegistryError("UNKNOWN", f"{name}: hub import failed: {exc}", status=502)

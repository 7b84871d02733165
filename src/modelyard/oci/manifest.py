"""Image manifest, image index and image config documents (OCI image-spec).

`to_bytes()` gives canonical JSON; `parse_manifest()` validates documents received from
elsewhere (a registry PUT, a layout on disk) and accepts Docker schema 2 as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidManifest
from modelyard.oci import mediatypes as mt
from modelyard.oci.canonical import dumps
from modelyard.oci.descriptor import Descriptor, Platform
from modelyard.oci.digest import sha256_bytes


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
    ):
        raise InvalidManifest("annotations must map strings to strings")
    return dict(ann)


def _with_optional(
    out: dict[str, Any],
    annotations: dict[str, str],
    subject: Descriptor | None,
    artifact_type: str | None,
) -> dict[str, Any]:
    """Add the fields manifests and indexes share, each only when set."""
    if annotations:
        out["annotations"] = dict(annotations)
    if subject is not None:
        out["subject"] = subject.to_json()
    if artifact_type:
        out["artifactType"] = artifact_type
    return out


@dataclass(frozen=True)
class ImageConfig:
    """The image config: what a runtime needs; for a model image mostly `rootfs.diff_ids`."""

    diff_ids: tuple[str, ...]
    platform: Platform = field(default_factory=Platform)
    labels: dict[str, str] = field(default_factory=dict)
    created: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": {"Labels": dict(self.labels)} if self.labels else {},
            "rootfs": {"type": "layers", "diff_ids": list(self.diff_ids)},
            "history": [
                {"created_by": "modelyard pack", "comment": "model files"} for _ in self.diff_ids
            ],
        }
        if self.platform.variant:
            out["variant"] = self.platform.variant
        if self.created:
            out["created"] = self.created
            for h in out["history"]:
                h["created"] = self.created
        return out

    def to_bytes(self) -> bytes:
        return dumps(self.to_json())


@dataclass(frozen=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    media_type: str = mt.OCI_MANIFEST

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [d.to_json() for d in self.layers],
        }
        return _with_optional(out, self.annotations, self.subject, self.artifact_type)

    def to_bytes(self) -> bytes:
        return dumps(self.to_json())

    def digest(self) -> str:
        return sha256_bytes(self.to_bytes())

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ImageManifest:
        if obj.get("schemaVersion") != 2:
            raise InvalidManifest("schemaVersion must be 2")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise InvalidManifest("manifest layers must be an array")
        if "config" not in obj:
            raise InvalidManifest("manifest has no config descriptor")
        subject = obj.get("subject")
        return cls(
            config=Descriptor.from_json(obj["config"]),
            layers=tuple(Descriptor.from_json(d) for d in layers),
            annotations=_annotations(obj),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            artifact_type=obj.get("artifactType"),
            media_type=obj.get("mediaType") or mt.OCI_MANIFEST,
        )

    def references(self) -> list[Descriptor]:
        """Blobs this manifest needs to exist: config and layers."""
        return [self.config, *self.layers]


@dataclass(frozen=True)
class ImageIndex:
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    media_type: str = mt.OCI_INDEX

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [d.to_json() for d in self.manifests],
        }
        return _with_optional(out, self.annotations, self.subject, self.artifact_type)

    def to_bytes(self) -> bytes:
        return dumps(self.to_json())

    def digest(self) -> str:
        return sha256_bytes(self.to_bytes())

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ImageIndex:
        if obj.get("schemaVersion") != 2:
            raise InvalidManifest("schemaVersion must be 2")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidManifest("index manifests must be an array")
        subject = obj.get("subject")
        return cls(
            manifests=tuple(Descriptor.from_json(d) for d in manifests),
            annotations=_annotations(obj),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            artifact_type=obj.get("artifactType"),
            media_type=obj.get("mediaType") or mt.OCI_INDEX,
        )


Manifest = ImageManifest | ImageIndex


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse and validate a manifest or index.

    Args:
        data: the raw document bytes (their digest is the manifest's identity; never re-encode).
        media_type: the Content-Type it arrived with, if any. When both the header and the
            document's `mediaType` are present they must agree.

    Raises:
        InvalidManifest: not JSON, not an object, unknown or inconsistent media type, or a
            descriptor that is missing fields.
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidManifest("manifest must be a JSON object")
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest("mediaType must be a string")
    if media_type and declared and media_type != declared:
        raise InvalidManifest(
            f"Content-Type {media_type!r} does not match the document's mediaType {declared!r}"
        )
    kind = declared or media_type
    if kind is None:
        # OCI allows an absent mediaType; decide by shape.
        kind = mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST
    if kind in mt.INDEXES:
        index = ImageIndex.from_json(obj)
        return ImageIndex(
            index.manifests, index.annotations, index.subject, index.artifact_type, kind
        )
    if kind in mt.IMAGE_MANIFESTS:
        manifest = ImageManifest.from_json(obj)
        return ImageManifest(
            manifest.config,
            manifest.layers,
            manifest.annotations,
            manifest.subject,
            manifest.artifact_type,
            kind,
        )
    raise InvalidManifest(f"unsupported manifest media type {kind!r}")

"""Content descriptors and platforms (OCI image-spec `descriptor.md`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidManifest
from modelyard.oci.digest import Digest


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Platform:
        return cls(obj.get("os", ""), obj.get("architecture", ""), obj.get("variant"))

    @classmethod
    def parse(cls, value: str) -> Platform:
        """Parse `os/arch[/variant]`, as in `linux/arm64/v8`."""
        parts = value.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {value!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.urls:
            out["urls"] = list(self.urls)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """Raises: InvalidManifest if a required field is missing or mistyped."""
        if not isinstance(obj, dict):
            raise InvalidManifest("descriptor must be a JSON object")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidManifest("descriptor mediaType must be a non-empty string")
        if not isinstance(digest, str):
            raise InvalidManifest("descriptor digest must be a string")
        try:
            Digest.parse(digest)
        except ValueError as exc:
            raise InvalidManifest(f"descriptor digest: {exc}") from exc
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest("descriptor size must be a non-negative integer")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidManifest("descriptor annotations must map strings to strings")
        platform = obj.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise InvalidManifest("descriptor platform must be an object")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=dict(annotations),
            platform=Platform.from_json(platform) if platform else None,
            artifact_type=obj.get("artifactType"),
            urls=tuple(obj.get("urls") or ()),
        )

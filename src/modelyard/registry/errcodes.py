"""The distribution-spec error codes as data, shared by the registry server and the client.

Pure Python (no HTTP library): the server writes these to the wire with one function, the
client parses error bodies back into `RegistryError` with the same `ErrorCode`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelyard.errors import ModelyardError


@dataclass(frozen=True)
class ErrorCode:
    value: str
    message: str
    status: int


_CODES = [
    ErrorCode("BLOB_UNKNOWN", "blob unknown to registry", 404),
    ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
    ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404),
    ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content", 400),
    ErrorCode(
        "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400
    ),
    ErrorCode("MANIFEST_INVALID", "manifest invalid", 400),
    ErrorCode("MANIFEST_UNKNOWN", "manifest unknown to registry", 404),
    ErrorCode("NAME_INVALID", "invalid repository name", 400),
    ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404),
    ErrorCode("SIZE_INVALID", "provided length did not match content length", 400),
    ErrorCode("UNAUTHORIZED", "authentication required", 401),
    ErrorCode("DENIED", "requested access to the resource is denied", 403),
    ErrorCode("UNSUPPORTED", "the operation is unsupported", 405),
    ErrorCode("TOOMANYREQUESTS", "too many requests", 429),
    # Not in the spec's table but used by distribution for its own conditions.
    ErrorCode("RANGE_INVALID", "invalid content range", 416),
    ErrorCode("TAG_INVALID", "manifest tag did not match URI", 400),
    ErrorCode("PAYLOAD_TOO_LARGE", "request body too large", 413),
    ErrorCode("UNKNOWN", "unknown error", 500),
]
CODES: dict[str, ErrorCode] = {c.value: c for c in _CODES}


class RegistryError(ModelyardError):
    """An error with a distribution-spec code, raised by the server's domain layer and by the
    client when a registry answers with an error body."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = CODES.get(code, CODES["UNKNOWN"])
        self.message = message or self.code.message
        self.detail = detail
        self.status = status or self.code.status
        self.headers = headers or {}
        super().__init__(f"{self.code.value}: {self.message}")

    def to_body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()


def parse_error_body(status: int, body: bytes) -> RegistryError:
    """Turn a registry's error response into a `RegistryError` (first error of the list)."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return RegistryError(
            first.get("code", "UNKNOWN"), first.get("message"), first.get("detail"), status
        )
    except (ValueError, AttributeError, IndexError, TypeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return RegistryError("UNKNOWN", f"HTTP {status}: {text or 'no body'}", status=status)

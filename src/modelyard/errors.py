"""The exception tree of modelyard.

Every error modelyard raises derives from `ModelyardError`; most also inherit the builtin
that matches (`ValueError`, `FileNotFoundError`, ...) so that callers can catch either.
Exceptions of libraries underneath are re-raised at the boundary with `from exc`.

    ModelyardError
    ├── InvalidDigest (ValueError)
    ├── DigestMismatch (ValueError)
    ├── InvalidReference (ValueError)
    ├── InvalidManifest (ValueError)
    ├── LayoutError (ValueError)
    ├── SourceError (ValueError)
    │   ├── SourceNotFound (FileNotFoundError)
    │   ├── SymlinkEscape
    │   └── UnsupportedFileType
    └── BlobUnknown (KeyError)
"""

from __future__ import annotations


class ModelyardError(Exception):
    """Root of every error raised by modelyard."""


class InvalidDigest(ModelyardError, ValueError):
    """A string is not a valid `algorithm:hex` digest, or the algorithm is not supported."""


class DigestMismatch(ModelyardError, ValueError):
    """Content does not hash to the digest it was announced with."""

    def __init__(self, expected: str, actual: str, what: str = "content") -> None:
        super().__init__(f"{what} digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class InvalidReference(ModelyardError, ValueError):
    """A string is not a valid image reference (`host/org/name:tag` or `...@digest`)."""


class InvalidManifest(ModelyardError, ValueError):
    """A manifest, index or config is not valid JSON of the expected schema."""


class LayoutError(ModelyardError, ValueError):
    """A directory is not a valid OCI image layout, or a tag is missing from it."""


class SourceError(ModelyardError, ValueError):
    """A model source directory cannot be packed as it is."""


class SourceNotFound(SourceError, FileNotFoundError):
    """The model source does not exist or holds no files."""


class SymlinkEscape(SourceError):
    """A symlink in the model source points outside the model root."""


class UnsupportedFileType(SourceError):
    """The model source holds a fifo, socket or device file."""


class BlobUnknown(ModelyardError, KeyError):
    """A blob is not present where it was looked up."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest

    def __str__(self) -> str:
        return f"blob unknown: {self.digest}"


class BundleError(ModelyardError, ValueError):
    """A slim bundle or its `modelyard.json` manifest is missing or invalid."""


class ExportError(ModelyardError, RuntimeError):
    """A model could not be loaded, exported to ONNX or quantized."""


class FidelityError(ModelyardError, ValueError):
    """The optimized model strays from the original beyond the fidelity bar."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []

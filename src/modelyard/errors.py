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


class StorageError(ModelyardError, OSError):
    """A storage driver failed to read or write (disk full, permission, I/O error)."""


class PathNotFound(StorageError, FileNotFoundError):
    """A storage driver was asked for a path that does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class RegistryUnreachable(ModelyardError, ConnectionError):
    """A registry could not be reached (connection refused, DNS, TLS, timeouts after retries)."""

    def __init__(self, registry: str, reason: str) -> None:
        super().__init__(f"cannot reach registry {registry}: {reason}")
        self.registry = registry
        self.reason = reason


class AuthenticationError(ModelyardError, PermissionError):
    """A registry refused the credentials, or asked for credentials modelyard does not have."""

    def __init__(self, registry: str, reason: str) -> None:
        super().__init__(f"{registry}: {reason}")
        self.registry = registry
        self.reason = reason


class RemoteNotFound(ModelyardError, LookupError):
    """A registry does not hold the repository, tag, manifest or blob asked for."""

    def __init__(self, what: str, reason: str = "not found") -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what


class BundleError(ModelyardError, ValueError):
    """A slim bundle or its `modelyard.json` manifest is missing or invalid."""


class ExportError(ModelyardError, RuntimeError):
    """A model could not be loaded, exported to ONNX or quantized."""


class FidelityError(ModelyardError, ValueError):
    """The optimized model strays from the original beyond the fidelity bar."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


# --- serve (the runner) ---


class ServeConfigError(ModelyardError, ValueError):
    """A runner configuration (TOML/JSON file or --model flag) is invalid."""


class ModelRefError(ModelyardError, ValueError):
    """A model reference cannot be resolved to a directory of model files."""


class ModelNotFound(ModelyardError, LookupError):
    """The runner serves no model of this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown model {name!r}")
        self.name = name


class ModelLoadFailed(ModelyardError, RuntimeError):
    """A model failed to load; it stays in the ERROR state with this message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"model {name!r} failed to load: {message}")
        self.name = name
        self.message = message


class ModelUnavailable(ModelyardError, RuntimeError):
    """A model cannot take requests right now (unloading, or the runner is shutting down)."""


class InvalidInput(ModelyardError, ValueError):
    """A request body is malformed, empty or of the wrong type; `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class InputTooLarge(InvalidInput):
    """A request holds more texts, tokens or bytes than the model accepts."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=413)


class Overloaded(ModelyardError, RuntimeError):
    """A model's request queue is full; retry after `retry_after` seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"model {name!r} is overloaded: its queue is full")
        self.name = name
        self.retry_after = retry_after


class InferenceTimeout(ModelyardError, TimeoutError):
    """A request did not get its result within the model's request timeout."""


class InvalidEStargz(ModelyardError, ValueError):
    """A layer announced as eStargz has no valid footer, TOC or gzip member where expected."""


class HubError(ModelyardError):
    """A Hugging Face Hub import failed. Subclasses: HubRepoNotFound, HubRevisionNotFound,
    HubEntryNotFound (LookupError), HubGated (PermissionError), HubNotCached
    (FileNotFoundError), HubUnavailable (ConnectionError)."""


class HubRepoNotFound(HubError, LookupError):
    """The hub has no such model, or it is private and no valid token was sent."""

    def __init__(self, repo_id: str) -> None:
        super().__init__(
            f"model {repo_id} not found on the hub (if it is private, set HF_TOKEN to a token "
            "that can read it)"
        )
        self.repo_id = repo_id


class HubRevisionNotFound(HubError, LookupError):
    """The model exists but the branch, tag or commit does not."""

    def __init__(self, repo_id: str, revision: str) -> None:
        super().__init__(f"revision {revision!r} not found in model {repo_id}")
        self.repo_id = repo_id
        self.revision = revision


class HubEntryNotFound(HubError, LookupError):
    """A file is missing from the model, or no file matches the include/exclude patterns."""


class HubGated(HubError, PermissionError):
    """The model is gated: a token of an account that accepted its conditions is needed."""

    def __init__(self, repo_id: str, has_token: bool) -> None:
        how = (
            "the token in HF_TOKEN has no access: accept the model's conditions on its hub page "
            "with that account"
            if has_token
            else "a token is needed: accept the model's conditions on its hub page, create a "
            "read token and set HF_TOKEN=hf_... (or run `hf auth login`)"
        )
        super().__init__(f"model {repo_id} is gated; {how}")
        self.repo_id = repo_id


class HubNotCached(HubError, FileNotFoundError):
    """Offline (HF_HUB_OFFLINE=1) and the files are not in the local Hugging Face cache."""


class HubUnavailable(HubError, ConnectionError):
    """The hub could not be reached or answered with an error."""


class FileNotInImage(RemoteNotFound, FileNotFoundError):
    """An image holds no file at the path asked for (file-level pull, `modelyard.open`)."""

    def __init__(self, image: str, path: str) -> None:
        super().__init__(f"{image}: {path}", "no such file in the image")
        self.image = image
        self.path = path


class InvalidLayer(ModelyardError, ValueError):
    """A layer blob cannot be read as the tar (or tar+gzip) its media type announces."""


class TLSConfigError(ModelyardError, ValueError):
    """A TLS certificate, private key or CA bundle cannot be used (missing, unreadable,
    not PEM, or a key that does not match its certificate)."""

"""modelyard: models into reproducible OCI images, a registry, lazy access and a slim runner."""

from modelyard.errors import ModelyardError

__version__ = "0.1.0"

__all__ = ["ModelyardError", "__version__"]


def __getattr__(name: str) -> object:
    # `modelyard.open` imports the HTTP client only when first used: `import modelyard` stays fast.
    if name == "open":
        from modelyard.lazy.reader import open_file

        return open_file
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")

"""modelyard: models into reproducible OCI images, a registry, lazy access and a slim runner."""

from modelyard.errors import ModelyardError

__version__ = "0.1.0"

__all__ = ["ModelyardError", "__version__"]

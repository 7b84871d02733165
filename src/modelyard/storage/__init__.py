"""Storage drivers: a small byte-store interface that knows nothing of OCI."""

from modelyard.storage.base import FileInfo, FileWriter, StorageDriver
from modelyard.storage.local import LocalDriver

__all__ = ["FileInfo", "FileWriter", "LocalDriver", "StorageDriver"]

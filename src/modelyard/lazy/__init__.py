"""Lazy, file-level access to model images: pull some files, or open one and read ranges.

modelyard.open(REF, PATH)      a seekable read-only file, fetching chunks on demand
pull_files(REF, PATHS, DIR)    only those files, through the shared content cache
ContentCache                   the content-addressed, size-bounded local cache
"""

from modelyard.lazy.cache import ContentCache
from modelyard.lazy.files import FilesResult, PulledFile, pull_files
from modelyard.lazy.image import Located, RemoteImage
from modelyard.lazy.reader import LazyFile, open_file

__all__ = [
    "ContentCache",
    "FilesResult",
    "LazyFile",
    "Located",
    "PulledFile",
    "RemoteImage",
    "open_file",
    "pull_files",
]

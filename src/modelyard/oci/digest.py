"""Content digests as defined by the OCI image spec (`algorithm:encoded`).

sha256 is what modelyard writes; sha512 is accepted when reading.
"""

from __future__ import annotations

import hashlib
import mmap
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelyard.errors import InvalidDigest

_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")

#: Read size for streaming: large enough to keep hashing at full speed.
READ_SIZE = 4 << 20


@dataclass(frozen=True, order=True)
class Digest:
    """A validated `algorithm:hex` digest."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate a digest string.

        Raises:
            InvalidDigest: the string is malformed or the algorithm is unsupported.
        """
        if not isinstance(value, str) or not _DIGEST_RE.match(value):
            raise InvalidDigest(f"invalid digest {value!r}: expected 'sha256:<64 hex>'")
        algorithm, _, encoded = value.partition(":")
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r} in {value!r}")
        if len(encoded) != length or not _HEX_RE.match(encoded):
            raise InvalidDigest(
                f"invalid digest {value!r}: {algorithm} needs {length} lowercase hex characters"
            )
        return cls(algorithm, encoded)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def is_digest(value: str) -> bool:
    try:
        Digest.parse(value)
    except InvalidDigest:
        return False
    return True


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def aligned_buffer(size: int = READ_SIZE) -> mmap.mmap:
    """A page-aligned buffer: `readinto` into it is several times faster than into a bytearray."""
    return mmap.mmap(-1, size)


def iter_chunks(f: BinaryIO, size: int = READ_SIZE) -> Iterable[memoryview]:
    """Yield successive views of `f`'s content through one reused aligned buffer.

    Each view is only valid until the next one is requested.
    """
    # The buffer is left to the garbage collector: a consumer may still hold a slice of it.
    view = memoryview(aligned_buffer(size))
    while True:
        n = f.readinto(view)  # type: ignore[attr-defined]
        if not n:
            return
        yield view[:n]


def digest_file(path: str | Path, algorithm: str = "sha256") -> tuple[str, int]:
    """Return (digest, size) of a file, streaming in constant memory."""
    h = hashlib.new(algorithm)
    size = 0
    with open(path, "rb", buffering=0) as f:
        for chunk in iter_chunks(f):
            h.update(chunk)
            size += len(chunk)
    return f"{algorithm}:{h.hexdigest()}", size

"""The compiled fast paths against the standard library: the multi-state sha256
(modelyard.oci.sha256) against hashlib, the PCLMULQDQ CRC-32 against zlib."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import threading
import zlib
from pathlib import Path

import pytest

from modelyard.oci import compress, sha256


def _cpu_has_sha_ni() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and " sha_ni" in cpuinfo.read_text()


def test_the_extension_is_built_where_the_cpu_can_use_it() -> None:
    if platform.machine() != "x86_64" or not _cpu_has_sha_ni():
        pytest.fail("this test expects an x86-64 CPU with SHA-NI, as on the CI machines")
    assert sha256.ACCELERATED, "modelyard._sha256ni was not built: is a C compiler installed?"
    assert compress.crc32 is not zlib.crc32, "modelyard._crc32 was not built"


def test_crc32_matches_zlib_for_any_length_start_and_split() -> None:
    rng = random.Random(11)
    for n in [*range(0, 140), *(rng.randint(0, 300_000) for _ in range(100))]:
        data = os.urandom(n)
        start = rng.randint(0, 2**32 - 1)
        assert compress.crc32(data, start) == zlib.crc32(data, start)
        assert compress.crc32(data) == zlib.crc32(data)
    data = os.urandom(1 << 20)
    value = 0
    for pos in range(0, len(data), 4097):
        value = compress.crc32(memoryview(data)[pos : pos + 4097], value)
    assert value == zlib.crc32(data)


@pytest.mark.parametrize("states", [1, 2, 3])
def test_updates_match_hashlib_for_any_split_and_prefix(states: int) -> None:
    rng = random.Random(states)
    for _ in range(200):
        data = os.urandom(rng.randint(0, 6000))
        prefixes = [os.urandom(rng.choice([0, 64, 512, rng.randint(0, 200)])) for _ in range(3)]
        hashes = [sha256.new(p) for p in prefixes[:states]]
        pos = 0
        while pos < len(data):
            n = rng.randint(1, 2500)
            piece = memoryview(data)[pos : pos + n]
            if states == 3:
                sha256.update3(*hashes, piece)
            elif states == 2:
                sha256.update2(*hashes, piece)
            else:
                hashes[0].update(piece)
            pos += n
        for h, prefix in zip(hashes, prefixes, strict=False):
            assert h.hexdigest() == hashlib.sha256(prefix + data).hexdigest()
            assert h.digest() == hashlib.sha256(prefix + data).digest()


def test_copy_is_independent() -> None:
    h = sha256.new(b"abc")
    c = h.copy()
    c.update(b"def")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert c.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_same_object_twice_is_refused() -> None:
    if not sha256.ACCELERATED:
        pytest.fail("modelyard._sha256ni is not built")
    h, g = sha256.new(), sha256.new()
    with pytest.raises(ValueError, match="only once"):
        sha256.update3(h, g, h, b"x")


def test_concurrent_updates_on_shared_objects_stay_consistent() -> None:
    """Large updates release the GIL; each object's lock keeps its state whole."""
    a, b = sha256.new(), sha256.new()
    block = os.urandom(1 << 20)

    def work() -> None:
        for _ in range(8):
            sha256.update2(a, b, block)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = hashlib.sha256(block * 32).hexdigest()
    assert a.hexdigest() == b.hexdigest() == expected

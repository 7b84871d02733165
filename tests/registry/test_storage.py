"""The storage-driver contract, run against every driver."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.errors import PathNotFound, StorageError
from modelyard.storage import LocalDriver, StorageDriver

DRIVERS: dict[str, Callable[[Path], StorageDriver]] = {"local": LocalDriver}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    return DRIVERS[request.param](tmp_path / "store")


def test_is_a_storage_driver(driver: StorageDriver) -> None:
    assert isinstance(driver, StorageDriver)


def test_put_get_stat(driver: StorageDriver) -> None:
    driver.put("a/b/c", b"hello")
    assert driver.get("a/b/c") == b"hello"
    info = driver.stat("a/b/c")
    assert info is not None and info.size == 5 and not info.is_dir
    assert driver.stat("a/b").is_dir  # type: ignore[union-attr]
    driver.put("a/b/c", b"replaced")
    assert driver.get("a/b/c") == b"replaced"


def test_missing_paths(driver: StorageDriver) -> None:
    assert driver.stat("nope") is None
    assert driver.stat("nope/deeper") is None
    with pytest.raises(PathNotFound):
        driver.get("nope")
    with pytest.raises(PathNotFound):
        driver.open("nope")
    with pytest.raises(PathNotFound):
        driver.move("nope", "elsewhere")
    with pytest.raises(PathNotFound):
        driver.truncate("nope", 0)
    assert driver.list("nope") == []
    assert driver.delete("nope") is False


def test_writer_is_invisible_until_commit(driver: StorageDriver) -> None:
    w = driver.writer("x/blob")
    w.write(b"part one ")
    w.write(memoryview(b"part two"))
    assert driver.stat("x/blob") is None
    assert driver.list("x") == []  # temp files are not listed
    w.commit()
    assert driver.get("x/blob") == b"part one part two"
    assert w.size == 17


def test_cancelled_writer_leaves_nothing(driver: StorageDriver, tmp_path: Path) -> None:
    driver.put("x/keep", b"old")
    w = driver.writer("x/keep")
    w.write(b"new content")
    w.cancel()
    assert driver.get("x/keep") == b"old"
    assert sorted(p.name for p in (tmp_path / "store" / "x").iterdir()) == ["keep"]


def test_ranged_reads(driver: StorageDriver) -> None:
    driver.put("f", bytes(range(256)))
    with driver.open("f", offset=250) as f:
        assert f.read() == bytes(range(250, 256))


def test_append_truncate_sync(driver: StorageDriver) -> None:
    with driver.append("u/data") as f:
        f.write(b"abc")
    with driver.append("u/data") as f:
        f.write(b"def")
    driver.sync("u/data")
    assert driver.get("u/data") == b"abcdef"
    driver.truncate("u/data", 2)
    assert driver.get("u/data") == b"ab"


def test_append_at_unaligned_offsets_keeps_every_byte(driver: StorageDriver) -> None:
    # Appends bypass the page cache with aligned writes: existing unaligned tails are
    # rewritten, staging buffers fill and flush, and a failed append writes nothing more.
    import os

    pieces = [os.urandom(n) for n in (1, 4095, 4097, 9 << 20, 3, 70_000)]
    for piece in pieces:
        with driver.append("u/data") as f:
            f.write(piece[: len(piece) // 2])
            f.write(piece[len(piece) // 2 :])
    assert driver.get("u/data") == b"".join(pieces)
    size = sum(map(len, pieces))
    with pytest.raises(RuntimeError), driver.append("u/data") as f:
        f.write(b"partial")
        raise RuntimeError("connection lost")
    driver.truncate("u/data", size)
    assert driver.get("u/data") == b"".join(pieces)


def test_append_hashes_exactly_the_bytes_appended(driver: StorageDriver) -> None:
    # The hasher sees each appended byte once, in order, whatever the alignment of what the
    # file held before (its re-read tail is not hashed again) and across staging buffers.
    import hashlib
    import os

    pieces = [os.urandom(n) for n in (4095, 1, (17 << 20) + 5, 0, 8 << 20, 70_001)]
    for piece in pieces:
        h = hashlib.sha256()
        with driver.append("u/data", h) as f:
            for i in range(0, len(piece), 1_000_003):
                f.write(piece[i : i + 1_000_003])
        assert h.hexdigest() == hashlib.sha256(piece).hexdigest()
    assert driver.get("u/data") == b"".join(pieces)


def test_list_delete_move(driver: StorageDriver) -> None:
    driver.put("d/b", b"1")
    driver.put("d/a", b"2")
    driver.put("d/sub/c", b"3")
    assert driver.list("d") == ["a", "b", "sub"]
    driver.move("d/a", "e/moved")
    assert driver.get("e/moved") == b"2"
    assert driver.stat("d/a") is None
    assert driver.delete("d") is True
    assert driver.stat("d/sub/c") is None


def test_paths_cannot_escape(driver: StorageDriver) -> None:
    with pytest.raises(StorageError):
        driver.put("../outside", b"x")
    with pytest.raises(StorageError):
        driver.get("a/../../etc/passwd")


def test_purge_temp(driver: StorageDriver) -> None:
    w = driver.writer("a/b")
    w.write(b"abandoned by a crash")
    assert driver.purge_temp(older_than=time.time() - 3600) == []  # too young
    removed = driver.purge_temp(older_than=time.time() + 1)
    assert len(removed) == 1 and removed[0].startswith("a/")
    assert driver.list("a") == [] and driver.stat("a/b") is None

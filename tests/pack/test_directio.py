"""The O_DIRECT writer used for layers, uploads, pulls and cache entries."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from unittest import mock

import pytest

from modelyard.directio import ALIGN, DirectWriter


@pytest.mark.parametrize("size", [0, 1, ALIGN - 1, ALIGN, (8 << 20) + 1, (17 << 20) + 4097])
def test_every_byte_lands_and_the_size_is_exact(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    with DirectWriter(path) as w:
        for i in range(0, size, 300_001):  # writes that do not line up with anything
            w.write(data[i : i + 300_001])
    assert path.read_bytes() == data
    assert w.size == size


def test_append_after_unaligned_content(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(b"x" * 5000)
    tail = os.urandom((8 << 20) + 10)
    with DirectWriter(path, append=True) as w:
        w.write(tail)
    assert path.read_bytes() == b"x" * 5000 + tail


def test_an_exception_writes_nothing_staged(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    with pytest.raises(RuntimeError), DirectWriter(path) as w:
        w.write(b"staged only")
        raise RuntimeError("client went away")
    assert path.read_bytes() == b""


def test_falls_back_when_the_file_system_refuses_direct_writes(tmp_path: Path) -> None:
    real = os.pwrite
    refused = []

    def pwrite(fd: int, data: memoryview, pos: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(pos)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, pos)

    data = os.urandom((9 << 20) + 123)
    path = tmp_path / "blob"
    with mock.patch("os.pwrite", pwrite), DirectWriter(path) as w:
        opened_direct = w.direct
        w.write(data)
    assert path.read_bytes() == data
    assert w.direct is False
    assert refused == ([0] if opened_direct else [])

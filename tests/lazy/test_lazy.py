"""File-level pulls, `modelyard.open` and the content cache, against Debian's docker-registry.

Bytes moved are read from the registry's own access log, not from our counters.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

import modelyard
from modelyard.errors import DigestMismatch, FileNotInImage
from modelyard.lazy import ContentCache, pull_files
from modelyard.oci.layout import Layout
from modelyard.pack import PackOptions, pack
from modelyard.testing.files import MiB, make_model
from modelyard.testing.peers import modelyard_registry, skopeo_push

if TYPE_CHECKING:
    from .conftest import Registry

ESTARGZ = PackOptions(threshold=1 * MiB, format="estargz")
TAR = PackOptions(threshold=1 * MiB, format="tar")


def push(registry: Registry, layout: Path, name: str) -> str:
    skopeo_push(layout, "v1", f"{registry.host}/{name}:v1")
    return f"{registry.host}/{name}:v1"


def layers(layout: Path) -> list:
    lay = Layout.open(layout)
    return list(lay.image_manifests(lay.resolve("v1"))[0][1].layers)


@pytest.fixture(scope="module")
def big_image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """4 random float32 weight files of 64 MiB each (256 MiB), config and tokenizer."""
    root = tmp_path_factory.mktemp("big")
    model = make_model(root / "model", seed=1, weights=4, weight_size=64 * MiB)
    pack(model, "v1", root / "layout", ESTARGZ)
    return push(registry, root / "layout", "org/big"), model


def test_one_small_file_of_a_256_mib_model_moves_under_1_mib(
    registry: Registry, big_image: tuple[str, Path], tmp_path: Path
) -> None:
    ref, model = big_image
    mark = registry.mark()
    result = pull_files(ref, ["config.json"], tmp_path / "out", cache=ContentCache(tmp_path / "c"))
    assert (tmp_path / "out" / "config.json").read_bytes() == (model / "config.json").read_bytes()
    assert os.listdir(tmp_path / "out") == ["config.json"]
    served = registry.blob_bytes_served(mark)
    assert 0 < served < 1 * MiB, served
    assert result.bytes_fetched == served


def test_second_pull_moves_zero_blob_bytes_and_links_from_the_cache(
    registry: Registry, big_image: tuple[str, Path], tmp_path: Path
) -> None:
    ref, model = big_image
    cache = ContentCache(tmp_path / "cache")
    wanted = ["config.json", "model-00002.safetensors"]
    first = pull_files(ref, wanted, tmp_path / "a", cache=cache)
    assert first.bytes_fetched > 64 * MiB
    mark = registry.mark()
    second = pull_files(ref, wanted, tmp_path / "b", cache=cache)
    assert registry.blob_bytes_served(mark) == 0 and second.bytes_fetched == 0
    for name in wanted:
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert b.read_bytes() == (model / name).read_bytes()
        assert {f.how for f in second.files} <= {"hardlink", "reflink"}
        if second.files[0].how == "hardlink":
            assert a.stat().st_ino == b.stat().st_ino
    # Another cache user (a second "process") sees the same content: still no bytes.
    mark = registry.mark()
    with modelyard.open(
        ref, "model-00002.safetensors", cache=ContentCache(tmp_path / "cache")
    ) as f:
        f.seek(10 * MiB)
        assert f.read(100) == (model / "model-00002.safetensors").read_bytes()[10 * MiB :][:100]
    assert registry.blob_bytes_served(mark) == 0


def test_unknown_path_is_not_found_and_writes_nothing(
    big_image: tuple[str, Path], tmp_path: Path
) -> None:
    ref, _ = big_image
    with pytest.raises(FileNotInImage):
        pull_files(ref, ["config.json", "nope.bin"], tmp_path / "o", cache=ContentCache(tmp_path))
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError):
        pull_files(ref, ["../etc/passwd"], tmp_path / "o", cache=ContentCache(tmp_path))


def _safetensors_model(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    tensors = {
        "embeddings.weight": rng.standard_normal((1024, 768), dtype=np.float32),  # 3 MiB
        "encoder.layer.0.weight": rng.standard_normal((2048, 1024), dtype=np.float32),  # 8 MiB
        "encoder.layer.1.weight": rng.standard_normal((4096, 1024), dtype=np.float32),  # 16 MiB
        "head.bias": rng.standard_normal((7,), dtype=np.float32),
    }
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file(tensors, str(model / "model.safetensors"))
    return model, tensors


def read_tensor(f: object, name: str) -> tuple[np.ndarray, int]:
    """Read one tensor by hand from a safetensors file object: header, then its bytes only."""
    (n,) = struct.unpack("<Q", f.read(8))  # type: ignore[attr-defined]
    header = json.loads(f.read(n))  # type: ignore[attr-defined]
    meta = header[name]
    start, end = meta["data_offsets"]
    f.seek(8 + n + start)  # type: ignore[attr-defined]
    data = f.read(end - start)  # type: ignore[attr-defined]
    assert meta["dtype"] == "F32"
    return np.frombuffer(data, dtype=np.float32).reshape(meta["shape"]), 8 + n


def test_open_reads_one_tensor_moving_little_more_than_the_tensor(
    registry: Registry, tmp_path: Path
) -> None:
    model, tensors = _safetensors_model(tmp_path)
    pack(model, "v1", tmp_path / "layout", ESTARGZ)
    ref = push(registry, tmp_path / "layout", "org/st")
    name = "encoder.layer.0.weight"
    size = tensors[name].nbytes
    mark = registry.mark()
    with modelyard.open(ref, "model.safetensors", cache=ContentCache(tmp_path / "c")) as f:
        assert f.seekable() and f.readable() and not f.writable()
        got, header = read_tensor(f, name)
        assert f.seek(0, os.SEEK_END) == (model / "model.safetensors").stat().st_size
    np.testing.assert_array_equal(got, tensors[name])
    served = registry.blob_bytes_served(mark)
    assert served < 2 * size + header + 4 * MiB, (served, size)
    # The other tensors (19 MiB of the 27 MiB file) were not fetched.
    assert served < (model / "model.safetensors").stat().st_size - 8 * MiB


def test_corrupt_byte_in_registry_storage_fails_and_leaves_no_file(
    registry: Registry, tmp_path: Path
) -> None:
    for fmt, options in (("estargz", ESTARGZ), ("tar", TAR)):
        model = make_model(
            tmp_path / fmt / "model", seed=9 if fmt == "tar" else 8, weights=1, weight_size=9 * MiB
        )
        layout = tmp_path / fmt / "layout"
        pack(model, "v1", layout, options)
        ref = push(registry, layout, f"org/corrupt-{fmt}")
        weights = next(
            d
            for d in layers(layout)
            if d.annotations.get("org.opencontainers.image.title") == "model-00000.safetensors"
        )
        blob = registry.blob_file(weights.digest)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside the stored float data
        blob.write_bytes(bytes(data))
        out = tmp_path / fmt / "out"
        cache = ContentCache(tmp_path / fmt / "cache")
        with pytest.raises(DigestMismatch):
            pull_files(ref, ["model-00000.safetensors"], out, cache=cache)
        assert not (out / "model-00000.safetensors").exists()
        assert not list((cache.root / "tmp").iterdir())
        file_digest = (
            "sha256:"
            + __import__("hashlib")
            .sha256((model / "model-00000.safetensors").read_bytes())
            .hexdigest()
        )
        assert not cache.has(file_digest)
        # Reading through modelyard.open fails the same way on the damaged chunk.
        with (
            pytest.raises(DigestMismatch),
            modelyard.open(ref, "model-00000.safetensors", cache=cache) as f,
        ):
            f.read()


def test_tar_format_single_file_layer_is_fetched_alone(registry: Registry, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", seed=5, weights=2, weight_size=3 * MiB)
    pack(model, "v1", tmp_path / "layout", TAR)
    ref = push(registry, tmp_path / "layout", "org/plain")
    target = next(
        d
        for d in layers(tmp_path / "layout")
        if d.annotations.get("org.opencontainers.image.title") == "model-00001.safetensors"
    )
    mark = registry.mark()
    pull_files(
        ref, ["model-00001.safetensors"], tmp_path / "out", cache=ContentCache(tmp_path / "c")
    )
    assert (tmp_path / "out/model-00001.safetensors").read_bytes() == (
        model / "model-00001.safetensors"
    ).read_bytes()
    assert registry.blob_bytes_served(mark) == target.size


def _pull_in_child(ref: str, cache_root: str, out: str) -> None:
    pull_files(ref, ["config.json", "model-00000.safetensors"], out, cache=ContentCache(cache_root))


def test_concurrent_processes_share_one_cache(registry: Registry, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", seed=6, weights=1, weight_size=6 * MiB)
    pack(model, "v1", tmp_path / "layout", ESTARGZ)
    ref = push(registry, tmp_path / "layout", "org/shared")
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_pull_in_child, args=(ref, str(tmp_path / "cache"), str(tmp_path / f"o{i}"))
        )
        for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for i in range(3):
        for name in ("config.json", "model-00000.safetensors"):
            assert (tmp_path / f"o{i}" / name).read_bytes() == (model / name).read_bytes()
    assert not list((tmp_path / "cache" / "tmp").iterdir())


def test_cache_evicts_least_recently_used_and_refuses_bad_content(tmp_path: Path) -> None:
    import hashlib

    cache = ContentCache(tmp_path, max_size=200 << 10)
    blobs = [os.urandom(64 << 10) for _ in range(4)]
    digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    for d, b in zip(digests[:3], blobs[:3], strict=True):
        cache.put(d, b)
    assert cache.has(digests[0])  # used: now newer than entry 1
    cache.put(digests[3], blobs[3])
    assert [cache.has(d) for d in digests] == [True, False, True, True]
    assert cache.size() <= 200 << 10
    with pytest.raises(DigestMismatch):
        cache.put(digests[1], b"not it")
    assert not cache.has(digests[1]) and not list((tmp_path / "tmp").iterdir())
    # A torn small entry (written without fsync) is detected, dropped and reported missing.
    torn = cache.path(digests[2])
    os.chmod(torn, 0o644)
    torn.write_bytes(blobs[2][:100])
    assert cache.get(digests[2]) is None and not torn.exists()
    assert cache.get(digests[3]) == blobs[3]


def test_cli_pull_paths(registry: Registry, big_image: tuple[str, Path], tmp_path: Path) -> None:
    ref, model = big_image
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    cmd = [
        sys.executable,
        "-m",
        "modelyard",
        "pull",
        ref,
        "config.json",
        "tokenizer.json",
        "-o",
        str(tmp_path / "out"),
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [f["path"] for f in summary["files"]] == ["config.json", "tokenizer.json"]
    assert 0 < summary["bytes_fetched"] < 1 * MiB
    for name in ("config.json", "tokenizer.json"):
        assert (tmp_path / "out" / name).read_bytes() == (model / name).read_bytes()
    assert (tmp_path / "xdg" / "modelyard").is_dir()  # the default cache follows XDG
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert json.loads(again.stdout)["bytes_fetched"] == 0
    missing = subprocess.run(
        [*cmd[:5], "nope.txt", *cmd[6:]], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 3 and "nope.txt" in missing.stderr


@pytest.fixture(scope="module")
def our_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m modelyard registry serve` on a free port."""
    root = tmp_path_factory.mktemp("ours")
    with modelyard_registry(root / "data") as (addr, _):
        yield addr


def test_lazy_access_through_our_registry(our_registry: str, tmp_path: Path) -> None:
    model, tensors = _safetensors_model(tmp_path)
    pack(model, "v1", tmp_path / "layout", ESTARGZ)
    ref = f"{our_registry}/org/st:v1"
    skopeo_push(tmp_path / "layout", "v1", ref)
    cache = ContentCache(tmp_path / "cache")
    result = pull_files(ref, ["config.json"], tmp_path / "out", cache=cache)
    assert (tmp_path / "out/config.json").read_bytes() == (model / "config.json").read_bytes()
    assert 0 < result.bytes_fetched < 1 * MiB
    name = "encoder.layer.1.weight"
    with modelyard.open(ref, "model.safetensors", cache=cache) as f:
        got, header = read_tensor(f, name)
        fetched = f.raw.bytes_fetched  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got, tensors[name])
    assert fetched < 2 * tensors[name].nbytes + header + 4 * MiB


def test_plain_zstd_and_gzip_layers_give_single_files(registry: Registry, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", seed=11, weights=1, weight_size=2 * MiB)
    for compression in ("zstd", "gzip"):
        layout = tmp_path / compression
        pack(model, "v1", layout, PackOptions(threshold=1 * MiB, compression=compression))
        ref = push(registry, layout, f"org/plain-{compression}")
        cache = ContentCache(tmp_path / f"cache-{compression}")
        pull_files(
            ref,
            ["tokenizer.json", "model-00000.safetensors"],
            tmp_path / "o" / compression,
            cache=cache,
        )
        for name in ("tokenizer.json", "model-00000.safetensors"):
            assert (tmp_path / "o" / compression / name).read_bytes() == (model / name).read_bytes()
        with modelyard.open(ref, "config.json", cache=cache) as f:
            assert json.load(f) == json.loads((model / "config.json").read_text())

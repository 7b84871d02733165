"""eStargz layers: checked by a reader written here, by gzip + tarfile, umoci and buildah."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import DigestMismatch, InvalidEStargz
from modelyard.oci import estargz
from modelyard.oci.layout import Layout
from modelyard.oci.manifest import ImageManifest
from modelyard.pack import PackOptions, pack
from modelyard.testing.files import MiB, make_model, tree
from modelyard.testing.peers import buildah_bud, docker_registry, run, skopeo_push

OPTS = PackOptions(threshold=1 * MiB, format="estargz")


# -- an independent reader: only the spec, struct, zlib and json ---------------------------------


def spec_footer_offset(blob: bytes) -> int:
    foot = blob[-51:]
    assert foot[:3] == b"\x1f\x8b\x08" and foot[3] & 0x04, "footer is a gzip member with FEXTRA"
    xlen = struct.unpack("<H", foot[10:12])[0]
    assert xlen == 26
    si1, si2, sublen = foot[12], foot[13], struct.unpack("<H", foot[14:16])[0]
    assert (si1, si2, sublen) == (ord("S"), ord("G"), 22)
    sub = foot[16:38]
    assert sub.endswith(b"STARGZ")
    # The rest decompresses to nothing.
    assert gzip.decompress(foot) == b""
    return int(sub[:16], 16)


def spec_toc(blob: bytes) -> tuple[dict[str, Any], bytes]:
    off = spec_footer_offset(blob)
    raw = zlib.decompressobj(31).decompress(blob[off:-51])
    # ustar/PAX: the TOC is the only file entry; the JSON is its payload.
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = t.getmembers()
        assert [m.name for m in members] == ["stargz.index.json"]
        data = t.extractfile(members[0]).read()  # type: ignore[union-attr]
    return json.loads(data), data


def check_every_chunk(blob: bytes, files: dict[str, bytes]) -> tuple[int, set[str]]:
    toc, _ = spec_toc(blob)
    assert toc["version"] == 1
    toc_off = spec_footer_offset(blob)
    seen: dict[str, bytearray] = {}
    size_of: dict[str, int] = {}
    digests: dict[str, str] = {}
    checked = 0
    for e in toc["entries"]:
        assert e["name"] != "stargz.index.json"
        if e["type"] == "reg":
            size_of[e["name"]] = e.get("size", 0)
            digests[e["name"]] = e["digest"]
            seen[e["name"]] = bytearray()
        if e["type"] not in ("reg", "chunk") or not size_of[e["name"]]:
            continue
        off = e["offset"]
        assert 0 < off < toc_off
        assert blob[off : off + 3] == b"\x1f\x8b\x08", f"no gzip member at {off}"
        want = e.get("chunkSize") or size_of[e["name"]] - e.get("chunkOffset", 0)
        assert e.get("chunkOffset", 0) == len(seen[e["name"]])
        d = zlib.decompressobj(31)
        data = d.decompress(blob[off:toc_off], want)[:want]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == e["chunkDigest"]
        seen[e["name"]] += data
        checked += 1
    for name, content in seen.items():
        assert "sha256:" + hashlib.sha256(content).hexdigest() == digests[name]
        if name in files:
            assert bytes(content) == files[name]
    assert seen[".no.prefetch.landmark"] == b"\x0f"
    return checked, set(seen)


def write(
    entries: list[tuple[str, bytes | None]], chunk_size: int = 1 * MiB, slices: int = 1 << 30
) -> tuple[bytes, estargz.EStargzDigests]:
    out = io.BytesIO()
    w = estargz.EStargzWriter(out.write, chunk_size=chunk_size)
    for name, content in entries:
        if content is None:
            w.add_dir(name)
            continue
        w.begin_file(name, len(content))
        for i in range(0, len(content), slices):
            w.write(content[i : i + slices])
        w.end_file()
    digests = w.close()
    return out.getvalue(), digests


def _sample() -> list[tuple[str, bytes | None]]:
    rng = __import__("random").Random(7)
    weights = rng.randbytes(3 * MiB + 12345)
    text = b"".join(b"token %d\n" % i for i in range(40000))
    return [
        ("config.json", b'{"a": 1}'),
        ("empty", b""),
        ("sub", None),
        ("sub/text.txt", text),
        ("sub/w.bin", weights),
    ]


def test_independent_reader_checks_every_chunk_and_file_digest() -> None:
    entries = _sample()
    blob, d = write(entries)
    files = {n: c for n, c in entries if c is not None}
    # 3 MiB + a bit in 1 MiB chunks: 4 chunks; text 1 chunk; config; landmark.
    checked, names = check_every_chunk(blob, files)
    assert checked == 4 + 1 + 1 + 1 and set(files) <= names
    _, toc_json = spec_toc(blob)
    assert d.toc_digest == "sha256:" + hashlib.sha256(toc_json).hexdigest()
    assert d.digest == "sha256:" + hashlib.sha256(blob).hexdigest() and d.size == len(blob)
    assert d.annotations[estargz.TOC_DIGEST_ANNOTATION] == d.toc_digest
    raw = gzip.decompress(blob)
    assert d.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert d.annotations[estargz.UNCOMPRESSED_SIZE_ANNOTATION] == str(len(raw))


def test_gzip_dc_gives_a_plain_tar_with_the_files(tmp_path: Path) -> None:
    entries = _sample()
    blob, _ = write(entries)
    (tmp_path / "layer.gz").write_bytes(blob)
    raw = subprocess.run(
        ["gzip", "-dc", str(tmp_path / "layer.gz")], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        got = {
            m.name: (t.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
            for m in t.getmembers()
        }
    assert next(iter(got)) == ".no.prefetch.landmark" and list(got)[-1] == "stargz.index.json"
    for name, content in entries:
        assert got[name] == content


def test_bytes_are_reproducible_and_independent_of_write_slicing() -> None:
    entries = _sample()
    a, da = write(entries)
    b, db = write(entries, slices=777)
    assert a == b and da == db


def test_random_weights_are_stored_not_deflated() -> None:
    rng = __import__("random").Random(1)
    weights = rng.randbytes(2 * MiB)
    blob, _ = write([("w.bin", weights)])
    # Stored blocks cost 5 bytes per 64 KiB plus gzip framing per chunk.
    assert len(weights) < len(blob) < len(weights) + 4096


def test_reader_locates_and_verifies_chunks_and_rejects_corruption() -> None:
    entries = _sample()
    blob, d = write(entries)
    ranges: list[tuple[int, int]] = []

    def read_range(start: int, end: int) -> bytes:
        ranges.append((start, end))
        return blob[start:end]

    toc = estargz.read_toc(read_range, len(blob), d.toc_digest)
    assert "sub/w.bin" in {n.rstrip("/") for n in toc.names()}
    f = toc.file("sub/w.bin")
    assert f is not None and len(f.chunks) == 4
    assert f.chunk_index(0) == 0 and f.chunk_index(3 * MiB) == 3 and f.chunk_index(MiB - 1) == 0
    ranges.clear()
    data = b"".join(estargz.iter_file(read_range, f))
    assert data == dict(entries)["sub/w.bin"]
    # Only the members of that file were fetched.
    assert sum(e - s for s, e in ranges) < len(data) + 4096

    bad = bytearray(blob)
    bad[f.chunks[2].offset + 100] ^= 0xFF
    with pytest.raises((DigestMismatch, InvalidEStargz)):
        b"".join(estargz.iter_file(lambda s, e: bytes(bad[s:e]), f))
    with pytest.raises(DigestMismatch):
        estargz.read_toc(read_range, len(blob), "sha256:" + "0" * 64)
    with pytest.raises(InvalidEStargz):
        estargz.read_toc(read_range, len(blob) - 1)


def test_file_growing_or_shrinking_is_refused() -> None:
    w = estargz.EStargzWriter(io.BytesIO().write)
    w.begin_file("a", 3)
    with pytest.raises(ValueError):
        w.write(b"abcd")
    w = estargz.EStargzWriter(io.BytesIO().write)
    w.begin_file("a", 3)
    w.write(b"ab")
    with pytest.raises(ValueError):
        w.end_file()


# -- packed images, unpacked by the real tools ---------------------------------------------------


def _layers(layout: Path, tag: str) -> tuple[Layout, ImageManifest]:
    lay = Layout.open(layout)
    return lay, lay.image_manifests(lay.resolve(tag))[0][1]


def test_pack_estargz_layers_carry_annotations_and_pass_the_reader(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", weights=2, weight_size=3 * MiB)
    out = tmp_path / "layout"
    pack(model, "v1", out, OPTS)
    lay, manifest = _layers(out, "v1")
    files = tree(model)
    assert len(manifest.layers) == 3
    seen: set[str] = set()
    for desc in manifest.layers:
        blob = lay.read_blob(desc.digest)
        _, toc_json = spec_toc(blob)
        assert desc.annotations[estargz.TOC_DIGEST_ANNOTATION] == (
            "sha256:" + hashlib.sha256(toc_json).hexdigest()
        )
        assert desc.annotations[estargz.UNCOMPRESSED_SIZE_ANNOTATION] == str(
            len(gzip.decompress(blob))
        )
        checked, names = check_every_chunk(blob, files)
        assert checked >= 2
        seen |= names
    assert set(files) <= seen
    # Reproducible to the byte.
    pack(model, "v1", tmp_path / "again", OPTS)
    assert _layers(tmp_path / "again", "v1")[1] == manifest


def test_umoci_unpacks_estargz_layers(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", weights=2, weight_size=2 * MiB)
    out = tmp_path / "layout"
    pack(model, "v1", out, OPTS)
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--rootless", "--image", f"{out}:v1-linux-amd64", str(bundle)])
    got = tree(bundle / "rootfs")
    # Tools that know nothing of eStargz unpack its landmark and TOC as ordinary files.
    assert got.pop(".no.prefetch.landmark") == b"\x0f"
    assert json.loads(got.pop("stargz.index.json"))["version"] == 1
    assert got == tree(model)


def test_buildah_copy_from_registry_image_with_estargz_layers(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", weights=1, weight_size=5 * MiB)
    out = tmp_path / "layout"
    pack(model, "v1", out, OPTS)
    with docker_registry(tmp_path / "registry") as host:
        skopeo_push(out, "v1", f"{host}/org/lazy:v1")
        b = buildah_bud(
            tmp_path / "buildah",
            f"FROM scratch\nCOPY --from={host}/org/lazy:v1 /config.json "
            "/model-00000.safetensors /m/\n",
            "localhost/b:1",
        )
        container = run([*b, "from", "localhost/b:1"]).stdout.strip()
        mount = Path(run([*b, "mount", container]).stdout.strip())
        for name in ("config.json", "model-00000.safetensors"):
            assert (mount / "m" / name).read_bytes() == (model / name).read_bytes()
        run([*b, "umount", container])
        run([*b, "rm", container])
        run([*b, "rmi", "--all", "--force"])

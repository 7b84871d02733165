"""The OCI core on its own: digests, references, manifests, tar and layer compression."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import struct
import subprocess
import tarfile
import zlib

import pytest
import zstandard

from modelyard.errors import InvalidDigest, InvalidManifest, InvalidReference
from modelyard.oci import mediatypes as mt
from modelyard.oci import sha256
from modelyard.oci.compress import CHUNK, GZIP_HEADER, STORED_BLOCK, LayerStream, stored_frame
from modelyard.oci.descriptor import Descriptor
from modelyard.oci.digest import Digest
from modelyard.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from modelyard.oci.reference import Reference
from modelyard.oci.tar import TarWriter


def test_digest_accepts_sha256_and_sha512() -> None:
    assert Digest.parse("sha256:" + "a" * 64).algorithm == "sha256"
    assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    "bad",
    ["sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha256", "", "sha256:../x"],
)
def test_digest_rejects_malformed(bad: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(bad)


def test_reference_parsing() -> None:
    r = Reference.parse("localhost:5000/org/model:rev1")
    assert (r.registry, r.name, r.tag) == ("localhost:5000", "org/model", "rev1")
    r = Reference.parse("org/model")
    assert (r.registry, r.name, r.reference) == (None, "org/model", "latest")
    r = Reference.parse("ghcr.io/a/b@sha256:" + "0" * 64)
    assert r.registry == "ghcr.io" and r.reference == "sha256:" + "0" * 64
    for bad in ["Org/model", "../x", "a//b", "x:", "x:-bad", "a/" + "b" * 300]:
        with pytest.raises(InvalidReference):
            Reference.parse(bad)


def test_parse_manifest_validates() -> None:
    with pytest.raises(InvalidManifest):
        parse_manifest(b"not json")
    with pytest.raises(InvalidManifest):
        parse_manifest(b'{"schemaVersion": 2, "mediaType": "' + mt.OCI_MANIFEST.encode() + b'"}')
    with pytest.raises(InvalidManifest, match="does not match"):
        parse_manifest(ImageIndex(()).to_bytes(), mt.OCI_MANIFEST)
    doc = parse_manifest(ImageIndex(()).to_bytes())
    assert isinstance(doc, ImageIndex)
    bad_digest = (
        b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}'
    )
    with pytest.raises(InvalidManifest):
        parse_manifest(bad_digest)
    manifest = ImageManifest(
        Descriptor(mt.OCI_CONFIG, "sha256:" + "c" * 64, 2),
        (Descriptor(mt.OCI_LAYER_GZIP, "sha256:" + "d" * 64, 9, {"k": "v"}),),
        {"a": "b"},
    )
    assert parse_manifest(manifest.to_bytes(), mt.OCI_MANIFEST) == manifest


def _layer(data: bytes, mode: str, pieces: int = 7) -> tuple[bytes, object]:
    out = io.BytesIO()
    stream = LayerStream(out.write, mode)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        stream.write(data[i : i + step])
    digests = stream.close()
    return out.getvalue(), digests


@pytest.mark.parametrize("mode", ["auto", "gzip", "zstd", "none"])
def test_layer_stream_round_trip_and_digests(mode: str) -> None:
    data = os.urandom(CHUNK + 12345) + b"text " * 300_000 + os.urandom(100)
    blob, d = _layer(data, mode)
    if mode in ("auto", "gzip"):
        back = gzip.decompress(blob)
    elif mode == "zstd":
        back = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    else:
        back = blob
    assert back == data
    assert d.digest == "sha256:" + hashlib.sha256(blob).hexdigest()  # type: ignore[attr-defined]
    assert d.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
    assert d.size == len(blob)  # type: ignore[attr-defined]


def test_auto_stores_incompressible_chunks_byte_exactly() -> None:
    data = os.urandom(CHUNK)
    blob, _ = _layer(data, "auto")
    # Stored blocks of 65472 bytes (a multiple of 64), each after a frame of empty deflate
    # blocks that puts the content at a blob offset congruent to its tar offset mod 64: the
    # first frame fills the gzip header's 10 bytes up to 64, the others are 64 bytes.
    blocks = -(-len(data) // STORED_BLOCK)
    assert STORED_BLOCK == 65472
    assert len(blob) == len(GZIP_HEADER) + 54 + 64 * (blocks - 1) + len(data) + 5 + 8
    assert blob[:10] == GZIP_HEADER
    for k in range(blocks):
        at = 64 + k * (STORED_BLOCK + 64)
        piece = data[k * STORED_BLOCK : (k + 1) * STORED_BLOCK]
        assert blob[at - 4 : at] == struct.pack("<HH", len(piece), len(piece) ^ 0xFFFF)
        assert blob[at : at + len(piece)] == piece
    assert zlib.decompress(blob, 31) == data
    # Output does not depend on how the writes were sliced.
    assert _layer(data, "auto", pieces=1)[0] == _layer(data, "auto", pieces=13)[0] == blob


def test_stored_frames_are_valid_deflate_of_every_size() -> None:
    for shift in range(64):
        frame = stored_frame(3, shift)
        assert len(frame) % 64 == shift and len(frame) >= 5
        assert zlib.decompressobj(-15).decompress(frame + b"abc") == b"abc"


def test_layer_digests_match_hashlib_whatever_the_slicing() -> None:
    """The one-pass hashing (diff_id, blob digest and an attached file hash together) gives
    what hashlib gives, for mixed content and awkward write sizes."""
    rng = random.Random(7)
    data = os.urandom(3 * CHUNK + 12345) + b"text " * 300_000 + os.urandom(100_000)
    for mode in ("auto", "gzip", "none", "zstd"):
        for _ in range(2):
            out = bytearray()
            stream = LayerStream(out.extend, mode)
            file_hash = sha256.new()
            stream.write(b"x" * 512)  # like a tar header: not part of the file
            stream.attach(file_hash)
            pos = 0
            while pos < len(data):
                n = rng.choice([1, 63, 4096, 65472, 1 << 20, 9 << 20])
                stream.write(data[pos : pos + n])
                pos += n
            stream.detach()
            stream.write(b"\0" * 1024)
            digests = stream.close()
            layer = b"x" * 512 + data + b"\0" * 1024
            assert digests.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
            assert digests.digest == "sha256:" + hashlib.sha256(out).hexdigest()
            assert file_hash.hexdigest() == hashlib.sha256(data).hexdigest()


def test_auto_compresses_text_and_gzip_tool_accepts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = b'{"vocab": {"hello": 1, "world": 2}}\n' * 200_000 + os.urandom(CHUNK)
    blob, _ = _layer(data, "auto")
    assert len(blob) < len(data) * 0.7
    path = tmp_path / "layer.gz"
    path.write_bytes(blob)
    subprocess.run(["gzip", "-t", str(path)], check=True)
    assert zlib.decompress(blob, 31) == data


def test_tar_headers_are_normalised() -> None:
    out = io.BytesIO()
    tar = TarWriter(out.write, mtime=1234)
    long_name = "d/" + "x" * 150 + "/ü-name.bin"
    tar.add_dir("d")
    tar.begin_file(long_name, 3)
    tar.write(b"abc")
    tar.end_file()
    tar.close()
    out.seek(0)
    with tarfile.open(fileobj=out) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == ["d", long_name]
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 1234)
            assert m.mode == (0o755 if m.isdir() else 0o644)
            assert not m.pax_headers.keys() - {"path"}
        assert tf.extractfile(members[1]).read() == b"abc"  # type: ignore[union-attr]


def test_tar_refuses_size_changes() -> None:
    tar = TarWriter(io.BytesIO().write)
    tar.begin_file("a", 2)
    tar.write(b"a")
    with pytest.raises(ValueError, match="changed"):
        tar.end_file()

"""Push and pull against Debian's docker-registry (CNCF distribution 2.8) over real sockets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modelyard.client import RegistryClient, pull, push_layout
from modelyard.client.locations import BlobLocations
from modelyard.oci.layout import Layout
from modelyard.testing.peers import require, run

from .clienttools import (
    Rule,
    pack_model,
    port_of,
    run_cli,
    write_model,
)


def reachable_blobs(layout_dir: Path, tag: str) -> set[str]:
    layout = Layout.open(layout_dir)
    root = layout.resolve(tag)
    out = {root.digest}
    for desc, manifest in layout.image_manifests(root):
        out.add(desc.digest)
        out.update(d.digest for d in manifest.references())
    return out


def test_push_then_pull_is_byte_identical(docker_registry, model_layout, tmp_path):
    ref = f"{docker_registry}/org/model:v1"
    rc, out, err = run_cli("push", str(model_layout), ref, "--json")
    assert rc == 0, err
    summary = json.loads(out)
    source_root = Layout.open(model_layout).resolve("v1")
    assert summary["digest"] == source_root.digest
    assert summary["blobs_uploaded"] == 4  # small-files layer, weights layer, 2 configs
    assert summary["manifests"] == 3  # amd64, arm64, index

    dest = tmp_path / "pulled"
    rc, out, err = run_cli("pull", ref, "-o", str(dest), "--json")
    assert rc == 0, err
    assert json.loads(out)["digest"] == source_root.digest
    pulled = Layout.open(dest)
    assert pulled.resolve("v1").digest == source_root.digest
    for digest in reachable_blobs(model_layout, "v1"):
        src = Layout(model_layout).blob_path(digest).read_bytes()
        assert pulled.blob_path(digest).read_bytes() == src, digest
    assert not [p for p in dest.rglob(".tmp-*")]

    # Pulling again downloads nothing: every blob is there already.
    again = pull(ref, dest)
    assert again.blobs_downloaded == 0 and again.bytes_downloaded == 0
    assert again.blobs_present == 4


def test_pull_one_platform(docker_registry, model_layout, tmp_path):
    ref = f"{docker_registry}/org/model:v1"
    push_layout(model_layout, "v1", ref)
    result = pull(ref, tmp_path / "arm", platform="linux/arm64")
    layout = Layout.open(tmp_path / "arm")
    tagged = layout.resolve("v1")
    assert tagged.digest == result.digest
    assert tagged.platform is not None and tagged.platform.architecture == "arm64"
    # Only the arm64 config among the configs was fetched.
    manifest = layout.read_manifest(tagged)
    assert layout.has_blob(manifest.config.digest)  # type: ignore[union-attr]
    assert result.blobs_downloaded == 3


def test_skopeo_reads_what_we_pushed(docker_registry, model_layout, tmp_path):
    skopeo = require("skopeo")
    ref = f"{docker_registry}/org/model:v1"
    result = push_layout(model_layout, "v1", ref)
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
    ).stdout
    layout = Layout.open(model_layout)
    assert raw == layout.read_blob(result.digest)
    dest = tmp_path / "skopeo-oci"
    run(
        [
            skopeo,
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{ref}",
            f"oci:{dest}:v1",
        ]
    )
    copied = Layout.open(dest)
    assert copied.resolve("v1").digest == result.digest
    for digest in reachable_blobs(model_layout, "v1"):
        assert copied.blob_path(digest).read_bytes() == layout.blob_path(digest).read_bytes()


def test_revision_two_uploads_only_the_small_files_layer(docker_registry, proxy_factory, tmp_path):
    proxy = proxy_factory(port_of(docker_registry))
    ref = f"{proxy.addr}/org/model:v1"
    src = write_model(tmp_path / "model", revision=1)
    v1 = pack_model(src, tmp_path / "v1")
    rc, _, err = run_cli("push", str(v1), ref, "--json")
    assert rc == 0, err

    write_model(tmp_path / "model", revision=2)  # only config.json changes
    v2 = pack_model(src, tmp_path / "v2", tag="v2")
    layout = Layout.open(v2)
    root = layout.resolve("v2")
    images = layout.image_manifests(root)
    layers = images[0][1].layers
    small = [d for d in layers if "org.opencontainers.image.title" not in d.annotations]
    big = [d for d in layers if "org.opencontainers.image.title" in d.annotations]
    assert len(small) == 1 and len(big) == 1
    configs = {m.config.digest: m.config.size for _, m in images}
    expected = small[0].size + sum(configs.values())

    proxy.reset()
    rc, out, err = run_cli("push", str(v2), f"{proxy.addr}/org/model:v2", "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["blobs_skipped"] == 1  # the weights layer
    assert summary["blobs_uploaded"] == 1 + len(configs)
    assert summary["bytes_uploaded"] == expected

    # What really crossed the wire: blob bodies are exactly the new blobs, and everything the
    # client sent (heads, manifests included) is far below the weights layer it skipped.
    uploaded = proxy.body_bytes("PUT", "/blobs/uploads/") + proxy.body_bytes(
        "PATCH", "/blobs/uploads/"
    )
    assert uploaded == expected
    assert proxy.bytes_up < expected + 64 * 1024
    assert big[0].size > 3_000_000
    assert not any(r.method in ("PUT", "PATCH") and big[0].digest in r.path for r in proxy.requests)


def test_chunked_upload_resumes_after_a_failed_chunk(docker_registry, proxy_factory, tmp_path):
    import random

    proxy = proxy_factory(port_of(docker_registry))
    data = random.Random(3).randbytes(5 * (1 << 20) + 12345)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    from modelyard.oci.digest import digest_bytes

    digest = digest_bytes(data)
    # The registry answers 503 to the third chunk (the proxy drops it unseen).
    proxy.rules.append(Rule("PATCH", "/blobs/uploads/", "respond", nth=3))
    with RegistryClient(proxy.addr, chunk_size=1 << 20, backoff=0.01) as client:
        client.upload_blob("org/big", blob, digest, len(data))
        assert client.head_blob("org/big", digest) == len(data)
        assert b"".join(client.get_blob_stream("org/big", digest)) == data
    patches = [r for r in proxy.requests if r.method == "PATCH"]
    assert proxy.rules[0].fired == 1
    assert len(patches) == 7  # 6 chunks + the refused one
    # Resumed, not restarted: the registry received each byte once.
    assert proxy.body_bytes("PATCH") == len(data)
    assert any(r.method == "GET" and "/blobs/uploads/" in r.path for r in proxy.requests)


def test_chunked_upload_survives_a_connection_cut_mid_chunk(
    docker_registry, proxy_factory, tmp_path
):
    import random

    from modelyard.oci.digest import digest_bytes

    proxy = proxy_factory(port_of(docker_registry))
    data = random.Random(4).randbytes(3 * (1 << 20) + 7)
    digest = digest_bytes(data)
    proxy.rules.append(Rule("PATCH", "/blobs/uploads/", "cut", nth=2, after=300_000))
    seen: list[int] = []
    with RegistryClient(proxy.addr, chunk_size=1 << 20, backoff=0.01) as client:
        client.upload_blob("org/cut", data, digest, len(data), progress=seen.append)
        assert b"".join(client.get_blob_stream("org/cut", digest)) == data
    assert proxy.rules[0].fired == 1
    assert sum(seen) == len(data)  # the progress count ends exact despite the rewind


def test_monolithic_upload_retries_after_503(docker_registry, proxy_factory, tmp_path):
    from modelyard.oci.digest import digest_bytes

    proxy = proxy_factory(port_of(docker_registry))
    proxy.rules.append(Rule("PUT", "/blobs/uploads/", "respond", nth=1))
    data = b"small blob" * 1000
    with RegistryClient(proxy.addr, backoff=0.01) as client:
        client.upload_blob("org/small", data, digest_bytes(data), len(data))
        assert client.head_blob("org/small", digest_bytes(data)) == len(data)


def test_wrong_digest_is_refused_by_the_registry(docker_registry):
    from modelyard.oci.digest import digest_bytes
    from modelyard.registry.errcodes import RegistryError

    with RegistryClient(docker_registry, backoff=0.01) as client:
        with pytest.raises(RegistryError) as info:
            client.upload_blob("org/x", b"abc", digest_bytes(b"abd"), 3)
        assert info.value.code.value == "DIGEST_INVALID"
        assert client.head_blob("org/x", digest_bytes(b"abd")) is None


def test_cross_repository_mount(docker_registry, model_layout, tmp_path):
    locations = BlobLocations(tmp_path / "locations.json")
    first = push_layout(model_layout, "v1", f"{docker_registry}/org/a:v1", locations=locations)
    assert first.blobs_uploaded == 4
    # A new process reads the record back from disk.
    second = push_layout(
        model_layout,
        "v1",
        f"{docker_registry}/org/b:v1",
        locations=BlobLocations(tmp_path / "locations.json"),
    )
    assert second.blobs_mounted == 4
    assert second.blobs_uploaded == 0 and second.bytes_uploaded == 0
    with RegistryClient(docker_registry) as client:
        for digest in reachable_blobs(model_layout, "v1") - {first.digest}:
            if client.head_blob("org/b", digest) is None:
                assert client.head_manifest("org/b", digest) is not None


def test_pull_digest_mismatch_keeps_nothing(docker_registry, proxy_factory, model_layout, tmp_path):
    ref = f"{docker_registry}/org/model:v1"
    push_layout(model_layout, "v1", ref)
    layout = Layout.open(model_layout)
    weights = next(
        d
        for _, m in layout.image_manifests(layout.resolve("v1"))
        for d in m.layers
        if "org.opencontainers.image.title" in d.annotations
    )
    good = layout.blob_path(weights.digest).read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    proxy = proxy_factory(port_of(docker_registry))
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        + f"Docker-Content-Digest: {weights.digest}\r\nContent-Length: {len(bad)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + bytes(bad)
    )
    proxy.rules.append(Rule("GET", f"/blobs/{weights.digest}", "respond", response=response))

    dest = tmp_path / "pulled"
    rc, _, err = run_cli("pull", f"{proxy.addr}/org/model:v1", "-o", str(dest), "-q")
    assert rc == 1
    assert "digest mismatch" in err and weights.digest in err
    assert not dest.exists()

    # Into an existing layout: the layout stays, no blob and no temp file for the bad digest.
    existing = tmp_path / "existing"
    Layout.create(existing)
    proxy.rules[0].seen = 0
    rc, _, err = run_cli("pull", f"{proxy.addr}/org/model:v1", "-o", str(existing), "-q")
    assert rc == 1
    assert not Layout(existing).has_blob(weights.digest)
    assert not list(existing.rglob(".tmp-*"))
    assert Layout.open(existing).tags() == []


def test_unknown_tag_exits_3(docker_registry, model_layout, tmp_path):
    push_layout(model_layout, "v1", f"{docker_registry}/org/model:v1")
    ref = f"{docker_registry}/org/model:nope"
    rc, _, err = run_cli("pull", ref, "-o", str(tmp_path / "o"))
    assert rc == 3
    assert "org/model:nope" in err


def test_unreachable_registry_is_a_clear_error(tmp_path, model_layout):
    from modelyard.testing.peers import free_port

    port = free_port()
    rc, _, err = run_cli("push", str(model_layout), f"127.0.0.1:{port}/org/m:v1", "-q")
    assert rc == 1
    assert "cannot reach registry" in err


def test_push_a_model_directory_packs_it(docker_registry, tmp_path):
    src = write_model(tmp_path / "model", weights=200_000)
    rc, out, err = run_cli("push", str(src), f"{docker_registry}/org/dir:v3", "--json")
    assert rc == 0, err
    summary = json.loads(out)
    result = pull(f"{docker_registry}/org/dir:v3", tmp_path / "back")
    assert result.digest == summary["digest"]


def test_get_blob_range_returns_exactly_the_window(docker_registry, tmp_path):
    import random

    from modelyard.oci.digest import digest_bytes

    data = random.Random(5).randbytes(300_000)
    digest = digest_bytes(data)
    with RegistryClient(docker_registry) as client:
        client.upload_blob("org/r", data, digest, len(data))
        for start, end in [(0, 1), (0, 300_000), (123, 456), (299_999, 300_000), (5, 5)]:
            assert client.get_blob_range("org/r", digest, start, end) == data[start:end]
        from modelyard.registry.errcodes import RegistryError

        with pytest.raises(RegistryError):
            client.get_blob_range("org/r", digest, 299_000, 300_001)


def test_choosing_the_image_of_a_layout_with_several(docker_registry, tmp_path):
    src = write_model(tmp_path / "model", weights=100_000)
    layout_dir = pack_model(src, tmp_path / "layout", tag="v1")
    write_model(src, revision=2, weights=100_000)
    pack_model(src, layout_dir, tag="v2")
    layout = Layout.open(layout_dir)
    v1, v2 = layout.resolve("v1").digest, layout.resolve("v2").digest
    assert v1 != v2

    rc, _, err = run_cli("push", str(layout_dir), f"{docker_registry}/org/m:latest", "-q")
    assert rc == 1 and "--tag" in err
    # The reference's tag names an image of the layout: that one is pushed.
    assert push_layout(layout_dir, None, f"{docker_registry}/org/m:v1").digest == v1
    rc, out, err = run_cli(
        "push", str(layout_dir), f"{docker_registry}/org/m:stable", "--tag", "v2", "--json"
    )
    assert rc == 0, err
    assert json.loads(out)["digest"] == v2
    with RegistryClient(docker_registry) as client:
        assert sorted(client.list_tags("org/m")) == ["stable", "v1"]
    # A REF without a host means Docker Hub now (test_references.py checks that offline).


def test_pull_a_docker_manifest_list_pushed_by_skopeo(docker_registry, model_layout, tmp_path):
    from modelyard.oci import mediatypes as mt

    ref = f"{docker_registry}/org/docker:v1"
    run(
        [
            "skopeo", "copy", "--all", "--format", "v2s2", "--dest-tls-verify=false",
            f"oci:{model_layout}:v1", f"docker://{ref}",
        ]
    )  # fmt: skip
    result = pull(ref, tmp_path / "pulled")
    assert result.media_type == mt.DOCKER_MANIFEST_LIST
    layout = Layout.open(tmp_path / "pulled")
    root = layout.resolve("v1")
    images = layout.image_manifests(root)
    assert {m.media_type for _, m in images} == {mt.DOCKER_MANIFEST}
    for _, manifest in images:
        for desc in manifest.references():
            assert layout.verify_blob(desc.digest) == desc.size
    # And it goes back out unchanged: push the pulled layout elsewhere, same digest.
    again = push_layout(tmp_path / "pulled", "v1", f"{docker_registry}/org/copy:v1")
    assert again.digest == result.digest

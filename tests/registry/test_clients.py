"""Real clients against the real server (`python -m modelyard registry serve` on a free port):
skopeo, buildah, oras (PyPI) and curl."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import httpx

from modelyard.oci import mediatypes as mt
from modelyard.oci.layout import Layout
from modelyard.testing.peers import buildah_bud, require, run

from .conftest import Server, serving
from .regtools import sha256


def skopeo(*args: str) -> str:
    return run(["skopeo", *args], timeout=300).stdout


def layout_blobs(layout: Path) -> dict[str, bytes]:
    out = {}
    for p in (layout / "blobs" / "sha256").iterdir():
        out["sha256:" + p.name] = p.read_bytes()
    return out


def test_skopeo_copy_oci_in_and_out(server: Server, model_layout: Path, tmp_path: Path) -> None:
    ref = f"docker://{server.addr}/org/model:v1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{model_layout}:v1", ref)
    raw = skopeo("inspect", "--tls-verify=false", "--raw", ref).encode()
    index_digest = Layout.open(model_layout).resolve("v1").digest
    assert sha256(raw) == index_digest  # the index arrived byte for byte
    r = httpx.get(f"{server.url}/v2/org/model/manifests/v1", headers={"Accept": mt.OCI_INDEX})
    assert r.headers["Content-Type"] == mt.OCI_INDEX
    out = tmp_path / "out"
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:v1")
    assert layout_blobs(out) == layout_blobs(model_layout)


def test_skopeo_docker_v2s2(server: Server, model_layout: Path, tmp_path: Path) -> None:
    ref = f"docker://{server.addr}/org/docker:v1"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        f"oci:{model_layout}:v1-linux-amd64",
        ref,
    )
    r = httpx.get(
        f"{server.url}/v2/org/docker/manifests/v1", headers={"Accept": mt.DOCKER_MANIFEST}
    )
    assert r.status_code == 200 and r.headers["Content-Type"] == mt.DOCKER_MANIFEST
    manifest = r.json()
    assert manifest["mediaType"] == mt.DOCKER_MANIFEST
    out = tmp_path / "dir"
    skopeo("copy", "--src-tls-verify=false", ref, f"dir:{out}")
    for layer in manifest["layers"]:
        data = (out / layer["digest"].split(":")[1]).read_bytes()
        assert sha256(data) == layer["digest"]
    # The whole index becomes a Docker manifest list.
    ref = f"docker://{server.addr}/org/list:v1"
    skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        f"oci:{model_layout}:v1",
        ref,
    )
    r = httpx.get(
        f"{server.url}/v2/org/list/manifests/v1", headers={"Accept": mt.DOCKER_MANIFEST_LIST}
    )
    assert r.status_code == 200 and r.headers["Content-Type"] == mt.DOCKER_MANIFEST_LIST
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'list'}:v1")


def _layer_files(blob: bytes) -> dict[str, bytes]:
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar:
            if member.isfile():
                out[member.name.lstrip("./")] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return out


def test_buildah_bud_copy_from_and_push(server: Server, model_layout: Path, tmp_path: Path) -> None:
    skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci:{model_layout}:v1",
        f"docker://{server.addr}/org/model:v1",
    )
    containerfile = f"FROM scratch\nCOPY --from={server.addr}/org/model:v1 /config.json /x/\n"
    buildah = buildah_bud(tmp_path / "buildah", containerfile, "built")
    run([*buildah, "push", "--tls-verify=false", "built", f"docker://{server.addr}/org/built:v1"])
    r = httpx.get(
        f"{server.url}/v2/org/built/manifests/v1", headers={"Accept": ", ".join(mt.MANIFESTS)}
    )
    assert r.status_code == 200
    layers = r.json()["layers"]
    assert len(layers) == 1
    blob = httpx.get(f"{server.url}/v2/org/built/blobs/{layers[0]['digest']}").content
    files = _layer_files(blob)
    source = json.loads((tmp_path / "model" / "config.json").read_text())
    assert json.loads(files["x/config.json"]) == source


def test_oras_push_pull_artifact(server: Server, tmp_path: Path, monkeypatch: object) -> None:
    import oras.client

    work = tmp_path / "art"
    work.mkdir()
    (work / "notes.txt").write_text("model card")
    big = os.urandom(20 << 20)
    (work / "weights.bin").write_bytes(big)
    os.chdir(work)  # oras stores paths relative to the working directory
    client = oras.client.OrasClient(hostname=server.addr, insecure=True)
    r = client.push(target=f"{server.addr}/org/artifact:v1", files=["notes.txt", "weights.bin"])
    assert r.status_code == 201
    r = client.push(
        target=f"{server.addr}/org/artifact:chunked",
        files=["weights.bin"],
        do_chunked=True,
        chunk_size=4 << 20,
    )
    assert r.status_code == 201
    for tag, out in (("v1", tmp_path / "o1"), ("chunked", tmp_path / "o2")):
        client.pull(target=f"{server.addr}/org/artifact:{tag}", outdir=str(out))
        assert (
            hashlib.sha256((out / "weights.bin").read_bytes()).digest()
            == hashlib.sha256(big).digest()
        )
    assert (tmp_path / "o1" / "notes.txt").read_text() == "model card"
    tags = httpx.get(f"{server.url}/v2/org/artifact/tags/list").json()["tags"]
    assert tags == ["chunked", "v1"]


def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    out = subprocess.run(
        [require("curl"), "-s", "-i", "--path-as-is", *args],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def test_curl_error_paths(server: Server, tmp_path: Path) -> None:
    url = server.url
    status, headers, body = curl(f"{url}/v2/")
    assert status == 200 and headers["docker-distribution-api-version"] == "registry/2.0"
    status, _, body = curl(f"{url}/v2/../x/manifests/latest")
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    status, _, body = curl(f"{url}/v2/Upper/Case/tags/list")
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    status, _, body = curl(f"{url}/v2/{'a' * 300}/tags/list")
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    status, _, body = curl(f"{url}/v2/org/m/manifests/latest")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    status, _, body = curl(
        "-X",
        "POST",
        "--data-binary",
        "abc",
        f"{url}/v2/org/m/blobs/uploads/?digest={sha256(b'xyz')}",
    )
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
    status, headers, _ = curl("-X", "POST", f"{url}/v2/org/m/blobs/uploads/")
    assert status == 202
    location = headers["location"]
    status, headers, body = curl(
        "-X", "PATCH", "-H", "Content-Range: 5-7", "--data-binary", "abc", url + location
    )
    assert status == 416 and headers["range"] == "0-0"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 << 20))
    status, _, body = curl(
        "-X",
        "PUT",
        "-H",
        f"Content-Type: {mt.OCI_MANIFEST}",
        "--data-binary",
        f"@{big}",
        f"{url}/v2/org/m/manifests/v1",
    )
    assert status == 413 and json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    assert not list((server.root / "repositories").rglob("_manifests"))
    assert not (server.root / "blobs").exists()


def test_uvicorn_server(tmp_path: Path, model_layout: Path) -> None:
    """The fallback ASGI server serves the same API (blobs by chunks, not by path)."""
    with serving(tmp_path / "uv", "--server", "uvicorn") as srv:
        ref = f"docker://{srv.addr}/org/model:v1"
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{model_layout}:v1", ref)
        out = tmp_path / "out"
        skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:v1")
        assert layout_blobs(out) == layout_blobs(model_layout)
        biggest = max(layout_blobs(model_layout).items(), key=lambda kv: len(kv[1]))
        r = httpx.get(
            f"{srv.url}/v2/org/model/blobs/{biggest[0]}", headers={"Range": "bytes=100-2000000"}
        )
        assert r.status_code == 206 and r.content == biggest[1][100:2000001]

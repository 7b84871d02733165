"""SIGKILL the real server in the middle of a chunked upload and of a manifest PUT, restart
it, and check that nothing partial is visible and that the upload resumes."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from modelyard.oci import mediatypes as mt

from .conftest import Server
from .regtools import image_manifest, push_blob, sha256

CHUNK = 8 << 20


def _start_request(addr: str, method: str, path: str, headers: dict[str, str]) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    head = f"{method} {path} HTTP/1.1\r\nHost: {addr}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    return sock


def _wait_size(path: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {at_least} bytes")


def test_kill_during_chunked_upload_then_resume(server: Server) -> None:
    data = os.urandom(CHUNK) + os.urandom(64 << 20)
    digest = sha256(data)
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v2/org/big/blobs/uploads/")
        location = r.headers["Location"]
        upload_id = r.headers["Docker-Upload-UUID"]
        r = c.patch(location, content=data[:CHUNK], headers={"Content-Range": f"0-{CHUNK - 1}"})
        assert r.status_code == 202
        location = r.headers["Location"]
    # The second chunk: send half of it, wait until the server has written past the first
    # chunk, then kill it mid-write.
    rest = data[CHUNK:]
    path = urlsplit(location).path
    sock = _start_request(
        server.addr,
        "PATCH",
        path,
        {
            "Content-Length": str(len(rest)),
            "Content-Range": f"{CHUNK}-{len(data) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    sock.sendall(rest[: len(rest) // 2])
    upload_data = server.root / "repositories/org/big/_uploads" / upload_id / "data"
    _wait_size(upload_data, CHUNK + (1 << 20))
    server.kill()
    sock.close()

    server.restart()
    with httpx.Client(base_url=server.url) as c:
        # Nothing of the blob is visible.
        assert c.head(f"/v2/org/big/blobs/{digest}").status_code == 404
        assert not (server.root / "blobs").exists()
        # The upload survived the crash, holding exactly the acknowledged chunk.
        r = c.get(location)
        assert r.status_code == 204
        assert r.headers["Range"] == f"0-{CHUNK - 1}"
        offset = int(r.headers["Range"].split("-")[1]) + 1
        r = c.patch(
            location, content=data[offset:], headers={"Content-Range": f"{offset}-{len(data) - 1}"}
        )
        assert r.status_code == 202
        r = c.put(r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201
        h = hashlib.sha256()
        with c.stream("GET", f"/v2/org/big/blobs/{digest}") as resp:
            for part in resp.iter_bytes():
                h.update(part)
        assert "sha256:" + h.hexdigest() == digest


def test_kill_during_manifest_put(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        config = push_blob(c, "org/m", b"{}")
        layer = push_blob(c, "org/m", b"layer bytes")
    body = image_manifest(config, 2, [(layer, 11)], annotations={"pad": "x" * 200_000})
    sock = _start_request(
        server.addr,
        "PUT",
        "/v2/org/m/manifests/v1",
        {
            "Content-Length": str(len(body)),
            "Content-Type": mt.OCI_MANIFEST,
        },
    )
    sock.sendall(body[: len(body) // 2])
    time.sleep(0.3)  # the server is now inside the handler, reading the body
    server.kill()
    sock.close()

    server.restart()
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/v2/org/m/manifests/v1").status_code == 404
        assert c.get(f"/v2/org/m/manifests/{sha256(body)}").status_code == 404
        assert c.get("/v2/org/m/tags/list").json()["tags"] == []
        stored = {p.name for p in (server.root / "blobs").rglob("*") if p.is_dir()}
        assert sha256(body).split(":")[1] not in stored
        # The retry succeeds and stores exactly the bytes sent.
        r = c.put("/v2/org/m/manifests/v1", content=body, headers={"Content-Type": mt.OCI_MANIFEST})
        assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == sha256(body)
        assert c.get("/v2/org/m/manifests/v1").content == body
        # Blobs pushed before the crash are intact.
        assert c.get(f"/v2/org/m/blobs/{layer}").content == b"layer bytes"
        assert json.loads(c.get(f"/v2/org/m/blobs/{config}").content) == {}

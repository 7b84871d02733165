"""Helpers for the registry tests (a uniquely named module: tests have no packages)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from modelyard.oci import mediatypes as mt


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(c: httpx.Client | TestClient, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def image_manifest(
    config: str, config_size: int, layers: list[tuple[str, int]], **extra: object
) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config, "size": config_size},
        "layers": [{"mediaType": mt.OCI_LAYER, "digest": d, "size": n} for d, n in layers],
        **extra,
    }
    return json.dumps(doc).encode()


def push_image(c: httpx.Client | TestClient, name: str, tag: str, payload: bytes = b"layer") -> str:
    """Push a config, one layer and a manifest; returns the manifest digest."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    cd = push_blob(c, name, config)
    ld = push_blob(c, name, payload)
    body = image_manifest(cd, len(config), [(ld, len(payload))])
    r = c.put(
        f"/v2/{name}/manifests/{tag}", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

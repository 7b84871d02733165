"""Garbage collection: what tags reach stays, the rest goes, young content is spared."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

from modelyard.oci import mediatypes as mt
from modelyard.registry.gc import collect
from modelyard.storage import LocalDriver
from modelyard.testing.peers import run

from .regtools import push_blob, push_image, sha256


def age(root: Path, seconds: float = 7200) -> None:
    """Make everything under root look `seconds` old."""
    past = time.time() - seconds
    for p in root.rglob("*"):
        os.utime(p, (past, past))


def test_gc_sweeps_unreachable(client: TestClient, tmp_path: Path) -> None:
    root = tmp_path / "root"
    keep = push_image(client, "org/m", "v1", payload=b"kept layer")
    drop = push_image(client, "org/m", "v2", payload=b"dropped layer")
    client.delete("/v2/org/m/manifests/v2")  # untagged: unreachable
    stray = push_blob(client, "org/m", b"never referenced")
    # A referrer of the tagged manifest survives although no tag names it.
    empty = push_blob(client, "org/m", b"{}")
    size = len(client.get("/v2/org/m/manifests/v1").content)
    sig = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/x-sig",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": keep, "size": size},
        }
    ).encode()
    client.put(
        f"/v2/org/m/manifests/{sha256(sig)}", content=sig, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    upload = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    age(root)

    dry = collect(LocalDriver(root), grace=3600, dry_run=True)
    assert dry.manifests == [f"org/m@{drop}"]
    assert client.get(f"/v2/org/m/manifests/{drop}").status_code == 200  # dry run: kept

    report = collect(LocalDriver(root), grace=3600)
    assert report.manifests == [f"org/m@{drop}"]
    assert set(report.blobs) == {drop, sha256(b"dropped layer"), stray}
    assert report.freed_bytes > 0 and len(report.uploads) == 1
    assert client.get(f"/v2/org/m/manifests/{drop}").status_code == 404
    assert client.get(f"/v2/org/m/blobs/{stray}").status_code == 404
    assert client.get(f"/v2/org/m/blobs/{sha256(b'dropped layer')}").status_code == 404
    assert client.get(upload).status_code == 404
    assert client.get("/v2/org/m/manifests/v1").status_code == 200
    assert client.get(f"/v2/org/m/blobs/{sha256(b'kept layer')}").content == b"kept layer"
    assert client.get(f"/v2/org/m/manifests/{sha256(sig)}").status_code == 200
    assert collect(LocalDriver(root), grace=3600).blobs == []  # idempotent


def test_gc_spares_young_content(client: TestClient, tmp_path: Path) -> None:
    root = tmp_path / "root"
    # A push in progress: blobs uploaded, manifest not yet put, an open upload.
    layer = push_blob(client, "org/m", b"fresh layer")
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"partial")
    report = collect(LocalDriver(root), grace=3600)
    assert report.blobs == [] and report.uploads == [] and report.links == []
    assert client.get(f"/v2/org/m/blobs/{layer}").content == b"fresh layer"
    assert client.get(location).headers["Range"] == "0-6"


def test_gc_blob_shared_across_repositories(client: TestClient, tmp_path: Path) -> None:
    root = tmp_path / "root"
    push_image(client, "org/a", "v1", payload=b"shared")
    push_image(client, "org/b", "v1", payload=b"shared")
    client.delete("/v2/org/b/manifests/v1")
    digest = client.get("/v2/org/a/manifests/v1").headers["Docker-Content-Digest"]
    client.delete(f"/v2/org/b/manifests/{digest}")
    age(root)
    collect(LocalDriver(root), grace=3600)
    # org/b lost its link, but org/a still reaches the shared blob.
    assert client.get(f"/v2/org/b/blobs/{sha256(b'shared')}").status_code == 404
    assert client.get(f"/v2/org/a/blobs/{sha256(b'shared')}").content == b"shared"


def test_gc_command(client: TestClient, tmp_path: Path) -> None:
    root = tmp_path / "root"
    push_image(client, "org/m", "v1")
    stray = push_blob(client, "org/m", b"stray")
    age(root)
    cmd = [sys.executable, "-m", "modelyard", "registry", "gc", "--root", str(root)]
    out = run([*cmd, "--dry-run", "--json"]).stdout
    assert json.loads(out)["blobs"] == [stray]
    assert client.get(f"/v2/org/m/blobs/{stray}").status_code == 200
    out = run([*cmd, "--grace", "60"]).stdout
    assert out.startswith("deleted: 0 manifests, 1 blobs")
    assert client.get(f"/v2/org/m/blobs/{stray}").status_code == 404

"""The distribution API in process: every endpoint, status code, header and error code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.oci import mediatypes as mt
from modelyard.registry.service import MAX_MANIFEST_SIZE

from .regtools import files_under, image_manifest, push_blob, push_image, sha256


def error_code(r) -> str:  # type: ignore[no-untyped-def]
    return r.json()["errors"][0]["code"]


def test_base_endpoint(client: TestClient) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# ---- blobs and uploads -------------------------------------------------------------------


def test_monolithic_upload_and_get(client: TestClient) -> None:
    data = b"hello blob"
    digest = sha256(data)
    r = client.post("/v2/org/m/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/org/m/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = client.get(f"/v2/org/m/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == f'"{digest}"'
    assert r.headers["Docker-Content-Digest"] == digest
    r = client.head(f"/v2/org/m/blobs/{digest}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == str(len(data))
    r = client.get(f"/v2/org/m/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304


def test_post_then_put(client: TestClient) -> None:
    r = client.post("/v2/org/m/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    assert r.headers["Docker-Upload-UUID"] in location
    data = b"x" * 1000
    r = client.put(location, params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201
    assert client.get(f"/v2/org/m/blobs/{sha256(data)}").content == data


def test_chunked_upload_status_and_range(client: TestClient) -> None:
    data = bytes(range(256)) * 100
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    r = client.patch(
        location,
        content=data[:1000],
        headers={"Content-Range": "0-999", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202
    assert r.headers["Range"] == "0-999"
    location = r.headers["Location"]
    r = client.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-999"
    assert r.headers["Docker-Upload-UUID"] in location
    r = client.patch(
        location, content=data[1000:], headers={"Content-Range": f"1000-{len(data) - 1}"}
    )
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201
    digest = sha256(data)
    r = client.get(f"/v2/org/m/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = client.get(f"/v2/org/m/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = client.get(f"/v2/org/m/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_out_of_order_chunk_is_416_with_range(client: TestClient, tmp_path: Path) -> None:
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"a" * 10, headers={"Content-Range": "0-9"})
    r = client.patch(location, content=b"b" * 10, headers={"Content-Range": "20-29"})
    assert r.status_code == 416
    assert r.headers["Range"] == "0-9"
    assert client.get(location).headers["Range"] == "0-9"  # nothing was appended


@pytest.mark.parametrize("header", ["garbage", "9-0", "bytes=a-b"])
def test_malformed_content_range(client: TestClient, header: str) -> None:
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    r = client.patch(location, content=b"abc", headers={"Content-Range": header})
    assert r.status_code == 416
    assert error_code(r) == "RANGE_INVALID"


def test_content_range_disagreeing_with_length(client: TestClient) -> None:
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    r = client.patch(location, content=b"abc", headers={"Content-Range": "0-9"})
    assert r.status_code == 416
    assert client.get(location).headers["Range"] == "0-0"


def test_digest_mismatch_stores_nothing(client: TestClient, tmp_path: Path) -> None:
    wrong = sha256(b"something else")
    r = client.post("/v2/org/m/blobs/uploads/", params={"digest": wrong}, content=b"data")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"data")
    r = client.put(location, params={"digest": wrong})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.head(f"/v2/org/m/blobs/{wrong}").status_code == 404
    assert not any(p.startswith("blobs/") for p in files_under(tmp_path / "root"))
    assert not list((tmp_path / "root").rglob("_uploads/*/data"))


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 32, "nonsense"])
def test_invalid_digest(client: TestClient, digest: str) -> None:
    r = client.post("/v2/org/m/blobs/uploads/", params={"digest": digest}, content=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.get(f"/v2/org/m/blobs/{digest}").status_code == 400


def test_put_without_digest(client: TestClient) -> None:
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    r = client.put(location, content=b"x")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_sha512_blob(client: TestClient) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.post("/v2/org/m/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201
    assert client.get(f"/v2/org/m/blobs/{digest}").content == data


def test_unknown_blob_and_upload(client: TestClient) -> None:
    r = client.get(f"/v2/org/m/blobs/{sha256(b'nothing')}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    r = client.head(f"/v2/org/m/blobs/{sha256(b'nothing')}")
    assert r.status_code == 404 and r.content == b""
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(
            method, "/v2/org/m/blobs/uploads/" + "0" * 32, params={"digest": sha256(b"")}
        )
        assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN", method
    r = client.get("/v2/org/m/blobs/uploads/../../../etc")
    assert r.status_code in (400, 404)


def test_cancel_upload(client: TestClient) -> None:
    location = client.post("/v2/org/m/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"abc")
    assert client.delete(location).status_code == 204
    assert client.get(location).status_code == 404


def test_repositories_only_read_their_own_blobs(client: TestClient) -> None:
    digest = push_blob(client, "org/private", b"secret weights")
    r = client.get(f"/v2/org/other/blobs/{digest}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"


def test_cross_repository_mount(client: TestClient, tmp_path: Path) -> None:
    digest = push_blob(client, "org/a", b"shared layer")
    r = client.post("/v2/org/b/blobs/uploads/", params={"mount": digest, "from": "org/a"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/org/b/blobs/{digest}"
    assert client.get(f"/v2/org/b/blobs/{digest}").content == b"shared layer"
    # Stored once for the registry.
    assert len([p for p in files_under(tmp_path / "root") if p.startswith("blobs/")]) == 1
    # Not readable in `from`: an ordinary upload session instead.
    missing = sha256(b"absent")
    r = client.post("/v2/org/b/blobs/uploads/", params={"mount": missing, "from": "org/a"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    r = client.post("/v2/org/b/blobs/uploads/", params={"mount": digest, "from": "../bad"})
    assert r.status_code == 202


def test_delete_blob(client: TestClient) -> None:
    digest = push_blob(client, "org/m", b"to delete")
    assert client.delete(f"/v2/org/m/blobs/{digest}").status_code == 202
    assert client.get(f"/v2/org/m/blobs/{digest}").status_code == 404
    assert client.delete(f"/v2/org/m/blobs/{digest}").status_code == 404


# ---- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Org/Model", "a" * 256, "org//m", "-x", "org/_x", "org/m-"])
def test_invalid_names(client: TestClient, name: str) -> None:
    for path in (
        f"/v2/{name}/manifests/latest",
        f"/v2/{name}/tags/list",
        f"/v2/{name}/blobs/{sha256(b'')}",
    ):
        r = client.get(path)
        assert r.status_code == 400 and error_code(r) == "NAME_INVALID", path
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"


def test_dot_dot_name(client: TestClient, tmp_path: Path) -> None:
    # The test client would normalize the path; build the request by hand.
    scope_path = "/v2/../x/blobs/uploads/"
    r = client.request("POST", "http://reg" + scope_path.replace("..", "%2E%2E"))
    assert r.status_code in (400, 404)
    from modelyard.registry.errcodes import RegistryError
    from modelyard.registry.service import check_name

    with pytest.raises(RegistryError) as err:
        check_name("../x")
    assert err.value.code.value == "NAME_INVALID"
    assert not (tmp_path / "x").exists()


# ---- manifests ----------------------------------------------------------------------------


def test_manifest_put_get_head_by_tag_and_digest(client: TestClient) -> None:
    digest = push_image(client, "org/m", "v1")
    for ref in ("v1", digest):
        r = client.get(f"/v2/org/m/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST})
        assert r.status_code == 200
        assert r.headers["Content-Type"] == mt.OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        assert sha256(r.content) == digest
        h = client.head(f"/v2/org/m/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(r.content))


def test_manifest_bytes_are_stored_unchanged(client: TestClient) -> None:
    config = push_blob(client, "org/m", b"{}")
    body = (
        b'{  "schemaVersion" : 2, "mediaType": "' + mt.OCI_MANIFEST.encode() + b'",\n'
        b'"config": {"mediaType": "'
        + mt.OCI_EMPTY.encode()
        + b'", "digest": "'
        + config.encode()
        + b'", "size": 2}, "layers": []}\n'
    )
    r = client.put(
        "/v2/org/m/manifests/odd", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/org/m/manifests/{sha256(body)}"
    assert client.get("/v2/org/m/manifests/odd").content == body


def test_put_by_digest_checks_digest(client: TestClient) -> None:
    config = push_blob(client, "org/m", b"{}")
    body = image_manifest(config, 2, [])
    r = client.put(
        f"/v2/org/m/manifests/{sha256(body + b' ')}",
        content=body,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = client.put(
        f"/v2/org/m/manifests/{sha256(body)}",
        content=body,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 201
    assert client.get("/v2/org/m/tags/list").json()["tags"] == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 1}',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
        b'{"schemaVersion": 2, "mediaType": "text/plain", "layers": []}',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
        b' "config": {"mediaType": "x", "digest": "sha256:bad", "size": 1}, "layers": []}',
    ],
)
def test_malformed_manifests_store_nothing(client: TestClient, tmp_path: Path, body: bytes) -> None:
    r = client.put(
        "/v2/org/m/manifests/v1", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    assert not any("_manifests" in p for p in files_under(tmp_path / "root"))


def test_content_type_must_match_media_type(client: TestClient) -> None:
    config = push_blob(client, "org/m", b"{}")
    body = image_manifest(config, 2, [])
    r = client.put("/v2/org/m/manifests/v1", content=body, headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"


def test_manifest_with_unknown_blob(client: TestClient, tmp_path: Path) -> None:
    config = push_blob(client, "org/m", b"{}")
    body = image_manifest(config, 2, [(sha256(b"never pushed"), 12)])
    r = client.put(
        "/v2/org/m/manifests/v1", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert client.get("/v2/org/m/manifests/v1").status_code == 404
    # A blob of another repository does not count either.
    other = push_blob(client, "org/other", b"elsewhere")
    body = image_manifest(config, 2, [(other, 9)])
    r = client.put(
        "/v2/org/m/manifests/v1", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_index_children_must_exist(client: TestClient) -> None:
    child = push_image(client, "org/m", "child")
    size = len(client.get(f"/v2/org/m/manifests/{child}").content)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": child,
                "size": size,
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    }
    r = client.put("/v2/org/m/manifests/multi", json=index, headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 201
    r = client.get("/v2/org/m/manifests/multi", headers={"Accept": mt.OCI_INDEX})
    assert r.headers["Content-Type"] == mt.OCI_INDEX
    index["manifests"][0]["digest"] = sha256(b"missing")  # type: ignore[index]
    r = client.put(
        "/v2/org/m/manifests/bad",
        content=json.dumps(index).encode(),
        headers={"Content-Type": mt.OCI_INDEX},
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_docker_schema2_and_accept_negotiation(client: TestClient) -> None:
    config = push_blob(client, "org/d", b"{}")
    layer = push_blob(client, "org/d", b"layer")
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "digest": layer, "size": 5}],
    }
    r = client.put("/v2/org/d/manifests/v1", json=doc, headers={"Content-Type": mt.DOCKER_MANIFEST})
    assert r.status_code == 201
    r = client.get("/v2/org/d/manifests/v1", headers={"Accept": mt.DOCKER_MANIFEST})
    assert r.status_code == 200 and r.headers["Content-Type"] == mt.DOCKER_MANIFEST
    # A client asking only for OCI types does not get a Docker manifest it cannot read.
    r = client.get("/v2/org/d/manifests/v1", headers={"Accept": mt.OCI_MANIFEST})
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert client.get("/v2/org/d/manifests/v1", headers={"Accept": "*/*"}).status_code == 200


def test_oversized_manifest_is_413(client: TestClient, tmp_path: Path) -> None:
    body = b" " * (MAX_MANIFEST_SIZE + 1)
    r = client.put(
        "/v2/org/m/manifests/v1", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert not any("_manifests" in p for p in files_under(tmp_path / "root"))


def test_unknown_manifest(client: TestClient) -> None:
    r = client.get("/v2/org/m/manifests/nope")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.get(f"/v2/org/m/manifests/{sha256(b'x')}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.get("/v2/org/m/manifests/.INVALID_TAG")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert client.head("/v2/org/m/manifests/.INVALID_TAG").status_code == 404
    config = push_blob(client, "org/m", b"{}")
    r = client.put(
        "/v2/org/m/manifests/.bad",
        content=image_manifest(config, 2, []),
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status_code == 400 and error_code(r) == "TAG_INVALID"


def test_delete_manifest_and_tag(client: TestClient) -> None:
    digest = push_image(client, "org/m", "v1")
    client.put(
        "/v2/org/m/manifests/v2",
        content=client.get("/v2/org/m/manifests/v1").content,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert client.delete("/v2/org/m/manifests/v2").status_code == 202
    assert client.get("/v2/org/m/manifests/v2").status_code == 404
    assert client.get("/v2/org/m/manifests/v1").status_code == 200
    assert client.delete(f"/v2/org/m/manifests/{digest}").status_code == 202
    assert client.get(f"/v2/org/m/manifests/{digest}").status_code == 404
    assert client.get("/v2/org/m/manifests/v1").status_code == 404  # its tag went too
    r = client.delete(f"/v2/org/m/manifests/{digest}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"


# ---- tags, catalog, referrers --------------------------------------------------------------


def test_tag_list_pagination(client: TestClient) -> None:
    manifest = None
    for tag in ["c", "a", "e", "b", "d"]:
        if manifest is None:
            push_image(client, "org/m", tag)
            manifest = client.get(f"/v2/org/m/manifests/{tag}").content
        else:
            client.put(
                f"/v2/org/m/manifests/{tag}",
                content=manifest,
                headers={"Content-Type": mt.OCI_MANIFEST},
            )
    r = client.get("/v2/org/m/tags/list")
    assert r.json() == {"name": "org/m", "tags": ["a", "b", "c", "d", "e"]}
    assert "Link" not in r.headers
    r = client.get("/v2/org/m/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/org/m/tags/list?n=2&last=b>; rel="next"'
    r = client.get("/v2/org/m/tags/list", params={"n": 2, "last": "b"})
    assert r.json()["tags"] == ["c", "d"]
    r = client.get("/v2/org/m/tags/list", params={"n": 2, "last": "d"})
    assert r.json()["tags"] == ["e"] and "Link" not in r.headers
    assert client.get("/v2/org/m/tags/list", params={"n": 0}).json()["tags"] == []
    r = client.get("/v2/org/none/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_catalog(client: TestClient) -> None:
    for name in ["org/b", "org/a/nested", "top"]:
        push_blob(client, name, b"x")
    assert client.get("/v2/_catalog").json() == {"repositories": ["org/a/nested", "org/b", "top"]}
    r = client.get("/v2/_catalog", params={"n": 1})
    assert r.json()["repositories"] == ["org/a/nested"]
    assert r.headers["Link"] == '</v2/_catalog?n=1&last=org%2Fa%2Fnested>; rel="next"'
    r = client.get("/v2/_catalog", params={"n": 5, "last": "org/a/nested"})
    assert r.json()["repositories"] == ["org/b", "top"]


def test_referrers(client: TestClient) -> None:
    subject = push_image(client, "org/m", "v1")
    size = len(client.get("/v2/org/m/manifests/v1").content)
    empty = push_blob(client, "org/m", b"{}")
    sig_layer = push_blob(client, "org/m", b"signature")
    ids = []
    for artifact_type in ["application/vnd.example.sig", "application/vnd.example.sbom"]:
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig_layer, "size": 9}],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": size},
            "annotations": {"k": artifact_type},
        }
        body = json.dumps(doc).encode()
        r = client.put(
            f"/v2/org/m/manifests/{sha256(body)}",
            content=body,
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status_code == 201
        assert r.headers["OCI-Subject"] == subject
        ids.append(sha256(body))
    r = client.get(f"/v2/org/m/referrers/{subject}")
    assert r.status_code == 200 and r.headers["Content-Type"] == mt.OCI_INDEX
    found = r.json()["manifests"]
    assert sorted(d["digest"] for d in found) == sorted(ids)
    assert {d["artifactType"] for d in found} == {
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    }
    assert all(d["annotations"]["k"] == d["artifactType"] for d in found)
    r = client.get(
        f"/v2/org/m/referrers/{subject}", params={"artifactType": "application/vnd.example.sig"}
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [ids[0]]
    # Subject that does not exist (yet): an empty index, not an error.
    r = client.get(f"/v2/org/m/referrers/{sha256(b'nothing')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    # Deleting a referrer removes it from the list.
    client.delete(f"/v2/org/m/manifests/{ids[0]}")
    assert [
        d["digest"] for d in client.get(f"/v2/org/m/referrers/{subject}").json()["manifests"]
    ] == [ids[1]]
    r = client.get("/v2/org/m/referrers/sha256:bad")
    assert r.status_code == 400


def test_unknown_endpoint_and_method(client: TestClient) -> None:
    r = client.get("/v3/")
    assert r.status_code == 404 and "errors" in r.json()
    r = client.post("/v2/org/m/manifests/v1")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"


def test_sha512_manifest_and_referrer(client: TestClient) -> None:
    config = push_blob(client, "org/m", b"{}")
    body = image_manifest(config, 2, [])
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = client.put(
        f"/v2/org/m/manifests/{digest}", content=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == digest
    r = client.get(f"/v2/org/m/manifests/{digest}")
    assert r.content == body and r.headers["Docker-Content-Digest"] == digest
    referrer = image_manifest(
        config, 2, [], subject={"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(body)}
    )
    r = client.put(
        f"/v2/org/m/manifests/{sha256(referrer)}",
        content=referrer,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.headers["OCI-Subject"] == digest
    found = client.get(f"/v2/org/m/referrers/{digest}").json()["manifests"]
    assert [d["digest"] for d in found] == [sha256(referrer)]
    assert found[0]["artifactType"] == mt.OCI_CONFIG


def test_concurrent_chunks_do_not_interleave(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from modelyard.registry.app import create_app

    async def scenario() -> tuple[list[int], bytes]:
        app = create_app(tmp_path / "root2")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://reg") as c:
            location = (await c.post("/v2/org/m/blobs/uploads/")).headers["Location"]

            async def slow(fill: bytes):  # type: ignore[no-untyped-def]
                for _ in range(4):
                    await asyncio.sleep(0.01)
                    yield fill * 1000

            results = await asyncio.gather(
                *(
                    c.patch(location, content=slow(b), headers={"Content-Range": "0-3999"})
                    for b in (b"a", b"b")
                )
            )
            status = await c.get(location)
            return sorted(r.status_code for r in results), status.headers["Range"].encode()

    codes, rng = asyncio.run(scenario())
    assert codes == [202, 416]
    assert rng == b"0-3999"

"""The hub stand-in speaks the protocol the real `huggingface_hub` and curl expect."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import errors as hf

from modelyard.testing.hubstandin import HubStandIn
from modelyard.testing.peers import require

from .hubtools import MODEL_REPO, make_model


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [require("curl"), "-s", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _headers(text: str) -> tuple[int, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    status = int(lines[0].split()[1])
    pairs = (line.split(":", 1) for line in lines[1:] if ":" in line)
    return status, {k.strip().lower(): v.strip() for k, v in pairs}


def test_model_info_and_tree(hub: HubStandIn, tiny_repo: str, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.endpoint)
    info = api.model_info(MODEL_REPO, revision="main", files_metadata=True)
    assert info.sha == tiny_repo
    siblings = {s.rfilename: s for s in info.siblings or []}
    src = tmp_path / "src-0"
    weights = (src / "model.safetensors").read_bytes()
    lfs = siblings["model.safetensors"].lfs
    assert lfs is not None and lfs.sha256 == hashlib.sha256(weights).hexdigest()
    config = (src / "config.json").read_bytes()
    git_id = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id == git_id
    assert ".gitattributes" in siblings
    # Pagination: the library follows the Link header across pages.
    hub.page_size = 2
    paths = {f.path for f in api.list_repo_tree(MODEL_REPO, recursive=True, revision=tiny_repo)}
    assert paths == {*siblings, "onnx"}
    assert sum(1 for m, p, _ in hub.requests if "/tree/" in p) > 2


def test_resolve_headers_redirect_and_range(
    hub: HubStandIn, tiny_repo: str, tmp_path: Path
) -> None:
    base = f"{hub.endpoint}/{MODEL_REPO}/resolve/main"
    status, h = _headers(_curl("-I", f"{base}/model.safetensors").stdout)
    weights = (tmp_path / "src-0" / "model.safetensors").read_bytes()
    sha = hashlib.sha256(weights).hexdigest()
    assert status == 302
    assert h["x-repo-commit"] == tiny_repo
    assert h["x-linked-etag"] == f'"{sha}"' and h["x-linked-size"] == str(len(weights))
    assert h["location"].startswith(hub.cdn)  # another origin, as the hub's CDN
    status, h = _headers(_curl("-I", f"{base}/config.json").stdout)
    assert status == 200 and h["etag"].strip('"') != sha and "x-repo-commit" in h
    # Range through the redirect, served by the CDN.
    out = _curl(
        "-L",
        "-r",
        "100-199",
        "-w",
        "%{http_code}",
        "-o",
        str(tmp_path / "part"),
        f"{base}/model.safetensors",
    )
    assert out.stdout == "206"
    assert (tmp_path / "part").read_bytes() == weights[100:200]
    out = _curl(
        "-L",
        "-r",
        f"{len(weights)}-",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        f"{base}/model.safetensors",
    )
    assert out.stdout == "416"
    # An unsigned CDN URL is refused.
    assert (
        _curl("-w", "%{http_code}", "-o", "/dev/null", f"{hub.cdn}/repos/x/{sha}").stdout == "403"
    )


def test_errors_map_to_the_library_exceptions(
    hub: HubStandIn, tiny_repo: str, tmp_path: Path
) -> None:
    hub.add_repo("org/gated", make_model(tmp_path / "gated"), gated=True)
    cache = tmp_path / "c"
    cases: list[tuple[tuple[str, str, str], dict[str, str | None], type[Exception]]] = [
        ((MODEL_REPO, "config.json", "nope"), {}, hf.RevisionNotFoundError),
        ((MODEL_REPO, "nope.json", "main"), {}, hf.RemoteEntryNotFoundError),
        (("org/missing", "config.json", "main"), {}, hf.RepositoryNotFoundError),
        (("org/gated", "config.json", "main"), {}, hf.GatedRepoError),
        (("org/gated", "config.json", "main"), {"token": "wrong"}, hf.HfHubHTTPError),
    ]
    for (repo, name, rev), kwargs, exc in cases:
        with pytest.raises(exc):
            hf_hub_download(
                repo, name, revision=rev, cache_dir=cache, endpoint=hub.endpoint, **kwargs
            )  # type: ignore[arg-type]
    hub.add_repo("org/private", make_model(tmp_path / "private"), private=True)
    with pytest.raises(hf.RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint).model_info("org/private")
    assert HfApi(endpoint=hub.endpoint, token="hf_standin_token").model_info("org/private").sha
    status, h = _headers(_curl("-I", f"{hub.endpoint}/org/gated/resolve/main/config.json").stdout)
    assert (status, h["x-error-code"]) == (401, "GatedRepo")
    path = hf_hub_download(
        "org/gated", "config.json", cache_dir=cache, endpoint=hub.endpoint, token="hf_standin_token"
    )
    assert Path(path).read_text() == (tmp_path / "gated" / "config.json").read_text()


def test_moving_a_branch(hub: HubStandIn, tiny_repo: str, tmp_path: Path) -> None:
    new = hub.commit(MODEL_REPO, make_model(tmp_path / "src-1", seed=1))
    api = HfApi(endpoint=hub.endpoint)
    assert new != tiny_repo
    assert api.model_info(MODEL_REPO).sha == new
    assert api.model_info(MODEL_REPO, revision=tiny_repo).sha == tiny_repo
    hub.set_ref(MODEL_REPO, "v1", tiny_repo)
    assert api.model_info(MODEL_REPO, revision="v1").sha == tiny_repo

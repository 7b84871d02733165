"""Pull-through of hub models in the registry (`registry serve --hf-proxy`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from modelyard.hub import HubSettings, HubSource, import_model
from modelyard.hub.proxy import HubProxy
from modelyard.oci.layout import Layout
from modelyard.registry.errcodes import RegistryError
from modelyard.registry.service import Registry
from modelyard.storage.local import LocalDriver
from modelyard.testing.hubstandin import HubStandIn
from modelyard.testing.peers import require, run

from .hubtools import MODEL_OCI, MODEL_REPO, make_model

ALL_FILES = [
    ".gitattributes",
    "README.md",
    "config.json",
    "model.safetensors",
    "onnx/model.onnx",
    "pytorch_model.bin",
    "tokenizer.json",
]


def _digest(host: str, ref: str) -> str:
    cmd = ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}"]
    return run([*cmd, f"docker://{host}/{ref}"], timeout=120).stdout.strip()


def _model_info_calls(hub: HubStandIn, repo: str = MODEL_REPO) -> int:
    return sum(1 for m, p, _ in hub.requests if p.startswith(f"/api/models/{repo}/revision/"))


def test_concurrent_first_pulls_run_one_import(
    hub: HubStandIn, tiny_repo: str, proxy_registry, tmp_path: Path
) -> None:
    host = proxy_registry()
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(lambda _: _digest(host, f"hf/{MODEL_OCI}:main"), range(8)))
    assert len(set(digests)) == 1
    assert _model_info_calls(hub) == 1
    assert sorted(hub.downloaded(MODEL_REPO)) == ALL_FILES  # each file once
    # The same image as a local import: the proxy adds nothing of its own.
    local = import_model(HubSource(MODEL_REPO), tmp_path / "local", settings=HubSettings.from_env())
    assert local.index.digest == digests[0]
    # Served from storage afterwards: no more hub traffic (within the TTL), layers included.
    hub.clear_log()
    assert _digest(host, f"hf/{MODEL_OCI}:main") == digests[0]
    assert _digest(host, f"hf/{MODEL_OCI}:{tiny_repo}") == digests[0]
    run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--all",
            f"docker://{host}/hf/{MODEL_OCI}:main",
            f"oci:{tmp_path / 'pulled'}:main",
        ]
    )
    pulled = Layout.open(tmp_path / "pulled")
    assert pulled.resolve("main").digest == digests[0]
    for blob in pulled.blobs():
        pulled.verify_blob(blob)
    assert set(pulled.blobs()) == set(Layout.open(tmp_path / "local").blobs())
    assert hub.requests == []


def test_moving_branch_is_re_resolved_after_the_ttl(
    hub: HubStandIn, tiny_repo: str, proxy_registry, tmp_path: Path
) -> None:
    ttl = 5.0
    host = proxy_registry(ttl=ttl)
    old = _digest(host, f"hf/{MODEL_OCI}:{tiny_repo}")
    assert _digest(host, f"hf/{MODEL_OCI}:main") == old
    resolved_at = time.monotonic()
    new_commit = hub.commit(MODEL_REPO, make_model(tmp_path / "src-1", seed=1))
    hub.clear_log()

    # Within the TTL: the stored image, without asking the hub.
    assert _digest(host, f"hf/{MODEL_OCI}:main") == old
    assert time.monotonic() - resolved_at < ttl, "machine too slow for this TTL"
    assert _model_info_calls(hub) == 0

    time.sleep(max(0.0, ttl - (time.monotonic() - resolved_at)) + 0.5)
    new = _digest(host, f"hf/{MODEL_OCI}:main")
    assert new != old
    assert _model_info_calls(hub) == 1
    assert _digest(host, f"hf/{MODEL_OCI}:latest") == new  # latest is main
    assert _digest(host, f"hf/{MODEL_OCI}:{new_commit}") == new
    assert _digest(host, f"hf/{MODEL_OCI}:{tiny_repo}") == old  # a commit never changes


def _error(host: str, path: str) -> tuple[int, str, str]:
    r = httpx.get(f"http://{host}/v2/{path}", timeout=60)
    body = json.loads(r.content)["errors"][0]
    return r.status_code, body["code"], body["message"]


def test_hub_errors_become_registry_errors(
    hub: HubStandIn, tiny_repo: str, proxy_registry, tmp_path: Path
) -> None:
    hub.add_repo("org/gated", make_model(tmp_path / "gated"), gated=True)
    host = proxy_registry()
    status, code, _ = _error(host, "hf/org/missing/manifests/main")
    assert (status, code) == (404, "NAME_UNKNOWN")
    status, code, message = _error(host, f"hf/{MODEL_OCI}/manifests/v9")
    assert (status, code) == (404, "MANIFEST_UNKNOWN") and "v9" in message
    status, code, _ = _error(host, "hf/org/tiny--x1/manifests/main")
    assert (status, code) == (404, "NAME_UNKNOWN")
    status, code, message = _error(host, "hf/org/gated/manifests/main")
    assert (status, code) == (401, "UNAUTHORIZED")
    assert "gated" in message and "HF_TOKEN" in message
    skopeo = subprocess.run(
        [
            require("skopeo"),
            "inspect",
            "--tls-verify=false",
            f"docker://{host}/hf/org/missing:main",
        ],
        capture_output=True,
        text=True,
    )
    assert skopeo.returncode != 0 and "not found on the hub" in skopeo.stderr
    # Not hub names: the registry behaves as without the proxy.
    status, code, _ = _error(host, "org/other/manifests/main")
    assert (status, code) == (404, "MANIFEST_UNKNOWN")
    # With a token the gated model is served.
    with_token = proxy_registry(token="hf_standin_token")
    assert _digest(with_token, "hf/org/gated:main").startswith("sha256:")


def test_proxy_logic_with_a_fake_clock(hub: HubStandIn, tiny_repo: str, tmp_path: Path) -> None:
    registry = Registry(LocalDriver(tmp_path / "registry"))
    now = [1000.0]
    proxy = HubProxy(registry, ttl=60, clock=lambda: now[0])
    name = f"hf/{MODEL_OCI}"

    async def pulls(tag: str, n: int = 1) -> str:
        await asyncio.gather(*(proxy.ensure(name, tag) for _ in range(n)))
        return registry.get_manifest(name, tag).digest

    old = asyncio.run(pulls("main", 8))
    assert (proxy.stats.imports, proxy.stats.resolutions) == (1, 1)
    assert not any((tmp_path / "registry" / "_hub-imports").iterdir())  # packed there, moved
    hub.commit(MODEL_REPO, make_model(tmp_path / "src-1", seed=1))
    now[0] += 59
    assert asyncio.run(pulls("main")) == old
    assert proxy.stats.resolutions == 1
    now[0] += 2
    new = asyncio.run(pulls("main"))
    assert new != old and (proxy.stats.imports, proxy.stats.resolutions) == (2, 2)
    assert asyncio.run(pulls(tiny_repo)) == old  # commit tag: never re-resolved
    assert proxy.stats.resolutions == 2
    assert asyncio.run(pulls("latest")) == new  # same commit as main: tagged, not imported
    assert proxy.stats.imports == 2
    # The hub goes away: the stored image is served after the TTL rather than an error.
    hub.stop()
    now[0] += 120
    assert asyncio.run(pulls("main")) == new
    assert proxy.stats.stale_served == 1
    resolutions = proxy.stats.resolutions
    now[0] += 30
    assert asyncio.run(pulls("main")) == new  # no new attempt within the TTL
    assert proxy.stats.resolutions == resolutions
    with pytest.raises(RegistryError) as err:
        asyncio.run(pulls("v2"))
    assert err.value.status == 502

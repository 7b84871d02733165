"""A model served straight from a registry reference (CNCF distribution, pushed by skopeo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.pack.packer import PackOptions, pack
from modelyard.serve.resolve import resolve_model_ref
from modelyard.testing.peers import docker_registry, run


def test_registry_ref_is_fetched_once_and_served(
    tiny: dict[str, Path], tmp_path: Path, start_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = tmp_path / "layout"
    pack(tiny["emb"], "v1", layout, PackOptions(threshold=1024))
    # The lazy-access content cache, here and in the runner process (it inherits os.environ).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    with docker_registry(tmp_path / "registry") as host:
        run(
            [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout}:v1",
                f"docker://{host}/org/emb:v1",
            ]
        )
        ref = f"{host}/org/emb:v1"

        path = resolve_model_ref(ref, tmp_path / "cache")
        for name in ("modelyard.json", "model.onnx", "tokenizer.json", "config.json"):
            assert (path / name).read_bytes() == (tiny["emb"] / name).read_bytes(), name
        assert resolve_model_ref(ref, tmp_path / "cache") == path

        runner = start_runner({"models": [{"name": "emb", "ref": ref, "preload": True}]})
        runner.wait_ready()
        r = runner.client.post("/v1/embeddings", json={"model": "emb", "input": "hello"})
        assert r.status_code == 200, r.text
        assert runner.health()["models"]["emb"]["state"] == "READY"

        missing = start_runner({"models": [{"name": "gone", "ref": f"{host}/org/none:v1"}]})
        r = missing.client.post("/v1/embeddings", json={"model": "gone", "input": "x"})
        assert r.status_code == 503 and "cannot fetch" in r.json()["error"]

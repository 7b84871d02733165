"""`modelyard import hf://...` against the hub stand-in."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from modelyard.errors import DigestMismatch, HubGated
from modelyard.hub import HubSettings, HubSource, import_model
from modelyard.oci.layout import Layout
from modelyard.testing.hubstandin import HubStandIn
from modelyard.testing.peers import run

from .hubtools import MODEL_OCI, MODEL_REPO, make_model, run_cli

FILES = "dev.modelyard.model.files"
SELECTED = {"config.json", "tokenizer.json", "onnx/model.onnx"}


def _image(layout_dir: Path, tag: str) -> tuple[str, dict[str, str]]:
    layout = Layout.open(layout_dir)
    desc = layout.resolve(tag)
    _, manifest = layout.image_manifests(desc)[0]
    return desc.digest, dict(manifest.annotations)


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_include_downloads_and_packs_only_the_selected_files(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    args = ["import", f"hf://{MODEL_REPO}", "--include", "*.json", "--include", "*.onnx"]
    r = run_cli(*args, "-o", str(out), "--json", env=hf_env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["commit"] == tiny_repo
    assert summary["name"] == MODEL_OCI
    assert summary["tags"] == ["main", tiny_repo]

    # Downloaded: exactly the selected files, each once; the weights were not even asked for.
    assert sorted(hub.downloaded(MODEL_REPO)) == sorted(SELECTED)
    asked = [path for _, path, _ in hub.requests]
    assert not [p for p in asked if p.endswith((".safetensors", ".bin", "README.md"))]

    # Packed: exactly those files, with the hub's content, under both tags.
    digest, annotations = _image(out, "main")
    assert _image(out, tiny_repo)[0] == digest == summary["digest"]
    files = {f["path"]: f["sha256"] for f in json.loads(annotations[FILES])}
    src = tmp_path / "src-0"
    assert files == {p: _sha256(src / p) for p in SELECTED}
    assert annotations["org.opencontainers.image.source"] == f"https://huggingface.co/{MODEL_REPO}"
    assert annotations["org.opencontainers.image.revision"] == tiny_repo

    # A real client reads the image, and the layers hold the files.
    run(["skopeo", "inspect", "--raw", f"oci:{out}:main-linux-amd64"])
    layout = Layout.open(out)
    _, manifest = layout.image_manifests(layout.resolve("main"))[0]
    found: dict[str, bytes] = {}
    for layer in manifest.layers:
        with tarfile.open(layout.blob_path(layer.digest), "r:*") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    found[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert found == {p: (src / p).read_bytes() for p in SELECTED}


def test_exclude_patterns(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], tmp_path: Path
) -> None:
    result = import_model(
        HubSource(MODEL_REPO),
        tmp_path / "a",
        exclude=["*.bin", "onnx/", ".git*"],
        settings=HubSettings.from_env(),
    )
    expected = ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    assert [f.path for f in result.files] == expected
    assert sorted(hub.downloaded()) == expected


def test_branch_and_commit_give_the_same_image_and_the_cache_is_reused(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], tmp_path: Path
) -> None:
    settings = HubSettings.from_env()
    first = import_model(HubSource(MODEL_REPO, "main"), tmp_path / "a", settings=settings)
    assert set(hub.downloaded()) == {
        ".gitattributes",
        "README.md",
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "pytorch_model.bin",
        "onnx/model.onnx",
    }
    hub.clear_log()
    again = import_model(HubSource(MODEL_REPO, tiny_repo), tmp_path / "b", settings=settings)
    assert again.index.digest == first.index.digest
    assert again.tags == (tiny_repo,)
    assert hub.downloaded() == []  # everything came from the HF cache


def test_offline_uses_the_cache_only(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], tmp_path: Path
) -> None:
    args = ["import", f"hf://{MODEL_REPO}", "--include", "*.json", "-q"]
    online = run_cli(*args, "-o", str(tmp_path / "a"), env=hf_env)
    assert online.returncode == 0, online.stderr
    hub.clear_log()
    offline_env = {**hf_env, "HF_HUB_OFFLINE": "1"}
    offline = run_cli(*args, "-o", str(tmp_path / "b"), env=offline_env)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == online.stdout  # same digest
    assert hub.requests == []
    # Not in the cache: a clear error, exit code 3 (not found).
    missing = run_cli("import", f"hf://{MODEL_REPO}", "-o", str(tmp_path / "c"), env=offline_env)
    assert missing.returncode == 3
    assert "HF_HUB_OFFLINE" in missing.stderr
    assert not (tmp_path / "c").exists()


def test_hub_errors(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], tmp_path: Path
) -> None:
    hub.add_repo("org/gated", make_model(tmp_path / "gated"), gated=True)
    out = str(tmp_path / "out")
    r = run_cli("import", "hf://org/missing", "-o", out, env=hf_env)
    assert r.returncode == 3 and "not found on the hub" in r.stderr
    r = run_cli("import", f"hf://{MODEL_REPO}@v9", "-o", out, env=hf_env)
    assert r.returncode == 3 and "revision 'v9' not found" in r.stderr
    r = run_cli("import", f"hf://{MODEL_REPO}", "--include", "*.gguf", "-o", out, env=hf_env)
    assert r.returncode == 3 and "no file" in r.stderr
    r = run_cli("import", "hf://org/gated", "-o", out, env=hf_env)
    assert r.returncode == 4 and "gated" in r.stderr and "HF_TOKEN" in r.stderr
    with pytest.raises(HubGated, match="HF_TOKEN"):
        import_model(HubSource("org/gated"), tmp_path / "x", settings=HubSettings.from_env())
    r = run_cli("import", "hf://org/gated", "-o", out, env={**hf_env, "HF_TOKEN": "hf_unknown"})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert not Path(out).exists()
    r = run_cli(
        "import", "hf://org/gated", "-o", out, env={**hf_env, "HF_TOKEN": "hf_standin_token"}
    )
    assert r.returncode == 0, r.stderr


def test_a_dropped_connection_is_resumed_with_range(
    hub: HubStandIn, hf_env: dict[str, str], tmp_path: Path
) -> None:
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    src = tmp_path / "big"
    src.mkdir()
    size = 2 * DOWNLOAD_CHUNK_SIZE + 12345
    with open(src / "model.safetensors", "wb") as f:
        f.write(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    hub.add_repo("org/big", src)
    # The connection drops after one and a half chunks: the library keeps the whole chunk
    # it has and asks for the rest with a Range request.
    hub.cut_after("org/big", "model.safetensors", DOWNLOAD_CHUNK_SIZE * 3 // 2)
    result = import_model(
        HubSource("org/big"),
        tmp_path / "a",
        include=["*.safetensors"],
        settings=HubSettings.from_env(),
    )
    assert [f.path for f in result.files] == ["model.safetensors"]
    ranges = [rng for method, _, rng in hub.requests if method == "GET" and rng]
    assert ranges == [f"bytes={DOWNLOAD_CHUNK_SIZE}-"]
    assert [n for _, _, n in hub.served] == [
        DOWNLOAD_CHUNK_SIZE * 3 // 2,
        size - DOWNLOAD_CHUNK_SIZE,
    ]


def test_a_corrupted_cache_file_is_refused(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], tmp_path: Path
) -> None:
    settings = HubSettings.from_env()
    import_model(HubSource(MODEL_REPO), tmp_path / "a", include=["*.bin"], settings=settings)
    snapshot = settings.cache_dir / "models--Org--Tiny-Model" / "snapshots" / tiny_repo
    blob = (snapshot / "pytorch_model.bin").resolve()
    data = bytearray(blob.read_bytes())
    data[12345] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match=r"pytorch_model\.bin"):
        import_model(HubSource(MODEL_REPO), tmp_path / "b", include=["*.bin"], settings=settings)
    assert not (tmp_path / "b").exists()


def test_push_sends_both_tags(
    hub: HubStandIn, tiny_repo: str, hf_env: dict[str, str], proxy_registry, tmp_path: Path
) -> None:
    host = proxy_registry()
    r = run_cli(
        "import",
        f"hf://{MODEL_REPO}",
        "--include",
        "*.json",
        "-t",
        f"{host}/models/tiny",
        "--push",
        "--json",
        env=hf_env,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert [p["ref"] for p in summary["pushed"]] == [
        f"{host}/models/tiny:main",
        f"{host}/models/tiny:{tiny_repo}",
    ]
    for tag in ("main", tiny_repo):
        raw = run(
            [
                "skopeo",
                "inspect",
                "--tls-verify=false",
                "--raw",
                f"docker://{host}/models/tiny:{tag}",
            ]
        ).stdout
        assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == summary["digest"]

"""`modelyard pack` against the real tools: umoci, skopeo, buildah and Debian's docker-registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.errors import (
    InvalidReference,
    LayoutError,
    SourceNotFound,
    SymlinkEscape,
    UnsupportedFileType,
)
from modelyard.oci import mediatypes as mt
from modelyard.oci.layout import Layout
from modelyard.oci.manifest import ImageIndex, ImageManifest
from modelyard.pack import PackOptions, pack
from modelyard.pack.packer import FILES, REVISION, TITLE
from modelyard.testing.files import MiB, make_model, tree
from modelyard.testing.peers import buildah_bud, docker_registry, modelyard_registry, run

OPTS = PackOptions(threshold=1 * MiB)


def _manifests(layout: Path, tag: str) -> list[ImageManifest]:
    lay = Layout.open(layout)
    return [m for _, m in lay.image_manifests(lay.resolve(tag))]


def test_umoci_unpacks_exactly_the_source_files(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "sub" / "deeper").mkdir(parents=True)
    (model_dir / "sub" / "deeper" / "vocab.txt").write_text("a\nb\n")
    out = tmp_path / "layout"
    result = pack(model_dir, "v1", out, OPTS)
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--rootless", "--image", f"{out}:v1-linux-amd64", str(bundle)])
    assert tree(bundle / "rootfs") == tree(model_dir)
    for p in (bundle / "rootfs").rglob("*"):
        mode = p.stat().st_mode & 0o777
        assert mode == (0o755 if p.is_dir() else 0o644), p
    files = {f.path: f for f in result.files}
    assert set(files) == set(tree(model_dir))


def test_skopeo_sees_one_layer_per_large_file_and_shared_layers(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    pack(model_dir, "v1", out, OPTS)
    info = json.loads(run(["skopeo", "inspect", f"oci:{out}:v1"]).stdout)
    assert len(info["Layers"]) == 3  # two weight files + one small-files layer
    raw = json.loads(run(["skopeo", "inspect", "--raw", f"oci:{out}:v1"]).stdout)
    assert raw["mediaType"] == mt.OCI_INDEX
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in raw["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    amd64, arm64 = _manifests(out, "v1")
    assert [d.digest for d in amd64.layers] == [d.digest for d in arm64.layers]
    assert amd64.config.digest != arm64.config.digest
    titles = [d.annotations.get(TITLE) for d in amd64.layers]
    assert titles == [None, "model-00000.safetensors", "model-00001.safetensors"]
    listed = json.loads(amd64.annotations[FILES])
    assert {f["path"] for f in listed} == set(tree(model_dir))
    # skopeo can copy it out again, layers intact.
    run(["skopeo", "copy", f"oci:{out}:v1", f"oci:{tmp_path / 'copy'}:v1"])


def _messy_copy(src: Path, dst: Path, reverse: bool, mtime: int, mode: int) -> None:
    dst.mkdir()
    names = sorted(os.listdir(src), reverse=reverse)
    for name in names:
        shutil.copyfile(src / name, dst / name)
        os.chmod(dst / name, mode)
        os.utime(dst / name, (mtime, mtime))
        if os.geteuid() == 0:
            os.chown(dst / name, 12345, 54321)


def test_same_content_gives_the_same_digest(model_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _messy_copy(model_dir, a, reverse=False, mtime=1_000_000, mode=0o600)
    old = os.umask(0o077)
    try:
        _messy_copy(model_dir, b, reverse=True, mtime=1_700_000_000, mode=0o755)
    finally:
        os.umask(old)
    ra = pack(a, "v1", tmp_path / "la", OPTS)
    rb = pack(b, "v1", tmp_path / "lb", OPTS)
    assert ra.index.digest == rb.index.digest
    # Each layer depends only on its own files: a layout with other content shares them.
    rc = pack(a, "v1", tmp_path / "lc", PackOptions(threshold=1 * MiB, compression="zstd"))
    assert rc.index.digest != ra.index.digest


def test_changing_config_changes_only_the_small_files_layer(
    model_dir: Path, tmp_path: Path
) -> None:
    r1 = pack(model_dir, "v1", tmp_path / "l1", OPTS)
    (model_dir / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')
    r2 = pack(model_dir, "v2", tmp_path / "l2", OPTS)
    d1 = [layer.digests.digest for layer in r1.layers]
    d2 = [layer.digests.digest for layer in r2.layers]
    assert d1[0] != d2[0]
    assert d1[1:] == d2[1:]


def test_source_date_epoch_and_created(model_dir: Path, tmp_path: Path) -> None:
    plain = pack(model_dir, "v1", tmp_path / "l1", OPTS)
    dated = pack(
        model_dir,
        "v1",
        tmp_path / "l2",
        PackOptions(threshold=1 * MiB, mtime=1_700_000_000, created=True),
    )
    assert plain.index.digest != dated.index.digest
    lay = Layout.open(tmp_path / "l2")
    manifest = _manifests(tmp_path / "l2", "v1")[0]
    config = json.loads(lay.read_blob(manifest.config.digest))
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert "created" not in json.loads(
        Layout.open(tmp_path / "l1").read_blob(_manifests(tmp_path / "l1", "v1")[0].config.digest)
    )


def test_layer_limit_merges_adjacent_large_files(tmp_path: Path) -> None:
    src = make_model(tmp_path / "m", weights=5, weight_size=1 * MiB)
    result = pack(src, "v1", tmp_path / "l", PackOptions(threshold=1 * MiB, max_layers=3))
    groups = [[f.path for f in layer.files] for layer in result.layers]
    assert groups == [
        ["config.json", "tokenizer.json"],
        ["model-00000.safetensors", "model-00001.safetensors", "model-00002.safetensors"],
        ["model-00003.safetensors", "model-00004.safetensors"],
    ]


def test_hugging_face_cache_snapshot(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--tiny"
    rev = "0123456789abcdef0123456789abcdef01234567"
    blobs, snap = repo / "blobs", repo / "snapshots" / rev
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    model = make_model(tmp_path / "files")
    for p in sorted(model.iterdir()):
        blob = blobs / f"blob-{p.name}"
        shutil.copyfile(p, blob)
        (snap / p.name).symlink_to(Path("../../blobs") / blob.name)
    result = pack(snap, "v1", tmp_path / "l", OPTS)
    manifest = _manifests(tmp_path / "l", "v1")[0]
    assert manifest.annotations[REVISION] == rev
    assert {f.path for f in result.files} == set(tree(model))
    # A symlink that leaves the model root is refused.
    (snap / "evil.json").symlink_to(tmp_path / "files" / "config.json")
    with pytest.raises(SymlinkEscape):
        pack(snap, "v1", tmp_path / "l-evil", OPTS)
    assert not (tmp_path / "l-evil").exists()


def _no_partial_output(parent: Path) -> None:
    assert not [p for p in parent.iterdir() if p.name.startswith(".")], list(parent.iterdir())


def test_bad_input_is_refused_and_leaves_nothing(model_dir: Path, tmp_path: Path) -> None:
    out_parent = tmp_path / "outs"
    out_parent.mkdir()
    with pytest.raises(SourceNotFound):
        pack(tmp_path / "missing", "v1", out_parent / "a", OPTS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFound):
        pack(tmp_path / "empty", "v1", out_parent / "b", OPTS)
    fifo_dir = make_model(tmp_path / "fifo")
    os.mkfifo(fifo_dir / "pipe")
    with pytest.raises(UnsupportedFileType, match="fifo"):
        pack(fifo_dir, "v1", out_parent / "c", OPTS)
    escape = make_model(tmp_path / "escape")
    (escape / "x.json").symlink_to("/etc/hostname")
    with pytest.raises(SymlinkEscape):
        pack(escape, "v1", out_parent / "d", OPTS)
    with pytest.raises(InvalidReference):
        pack(model_dir, "-bad", out_parent / "e", OPTS)
    (out_parent / "notalayout").mkdir()
    (out_parent / "notalayout" / "file").write_text("x")
    with pytest.raises(LayoutError):
        pack(model_dir, "v1", out_parent / "notalayout", OPTS)
    assert sorted(p.name for p in out_parent.iterdir()) == ["notalayout"]
    _no_partial_output(out_parent)


def test_second_tag_in_existing_layout(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "l"
    pack(model_dir, "v1", out, OPTS)
    (model_dir / "config.json").write_text("{}")
    pack(model_dir, "v2", out, OPTS)
    lay = Layout.open(out)
    assert {"v1", "v2"} <= set(lay.tags())
    for digest in lay.blobs():
        lay.verify_blob(digest)
    index = ImageIndex.from_json(json.loads((out / "index.json").read_text()))
    assert len({d.digest for d in index.manifests if d.media_type == mt.OCI_INDEX}) == 2


def test_cli_json_and_exit_codes(model_dir: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "modelyard",
        "pack",
        str(model_dir),
        "-t",
        "org/m:v1",
        "--threshold",
        "1M",
        "-o",
        str(tmp_path / "l"),
        "--json",
    ]
    proc = run(cmd)
    summary = json.loads(proc.stdout)
    assert summary["digest"].startswith("sha256:") and len(summary["layers"]) == 3
    bad = subprocess.run(
        [*cmd[:4], str(tmp_path / "nope"), *cmd[5:]], capture_output=True, text=True
    )
    assert bad.returncode == 3 and "does not exist" in bad.stderr
    bad = subprocess.run([*cmd[:6], "Bad/Name", *cmd[7:]], capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid repository name" in bad.stderr


def test_pushed_with_skopeo_and_copied_by_buildah_for_arm64(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    pack(model_dir, "v1", out, OPTS)
    with docker_registry(tmp_path / "registry") as host:
        run(
            [
                "skopeo",
                "copy",
                "--all",
                "--dest-tls-verify=false",
                f"oci:{out}:v1",
                f"docker://{host}/org/model:v1",
            ]
        )
        b = buildah_bud(
            tmp_path / "buildah",
            f"FROM scratch\nCOPY --from={host}/org/model:v1 /tokenizer.json /x/\n",
            "localhost/built:1",
            "--platform",
            "linux/arm64",
        )
        # The image COPY --from used is the arm64 one, resolved from the index.
        images = json.loads(run([*b, "images", "--json"]).stdout)
        source = [i for i in images if any("org/model" in n for n in i.get("names") or [])]
        assert source, images
        arch = json.loads(run([*b, "inspect", "--type", "image", source[0]["id"]]).stdout)
        assert arch["OCIv1"]["architecture"] == "arm64"
        container = run([*b, "from", "localhost/built:1"]).stdout.strip()
        mount = Path(run([*b, "mount", container]).stdout.strip())
        assert (mount / "x" / "tokenizer.json").read_bytes() == (
            model_dir / "tokenizer.json"
        ).read_bytes()
        run([*b, "umount", container])
        run([*b, "rm", container])


def test_cli_pack_and_push_in_one_command(model_dir: Path, tmp_path: Path) -> None:
    with modelyard_registry(tmp_path / "registry") as (host, _):
        ref = f"{host}/org/model:v1"
        proc = run(
            [
                sys.executable,
                "-m",
                "modelyard",
                "pack",
                str(model_dir),
                "-t",
                "org/model:v1",
                "--threshold",
                "1M",
                "-o",
                str(tmp_path / "l"),
                "--push",
                ref,
                "--json",
            ]
        )
        summary = json.loads(proc.stdout)
        assert summary["pushed"] == {"ref": ref, "digest": summary["digest"]}
        raw = json.loads(
            run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]).stdout
        )
        assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"]

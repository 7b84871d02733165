"""Turn a model reference into a local directory of model files.

Forms understood:
    ./dir, /abs/dir        a directory (a modelyard bundle, or model.onnx + tokenizer.json)
    oci:LAYOUT_DIR[:TAG]   an image in an OCI image layout; its layers are extracted once into
                           the runner's cache, keyed by manifest digest
    host[:port]/org/name[:tag|@digest]
                           an image in a registry: only the files the runner needs are fetched,
                           through the shared content cache of lazy access (`modelyard.lazy`),
                           into the runner's cache, keyed by manifest digest

Everything above this function only sees a directory.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO

from modelyard.errors import LayoutError, ModelRefError


def resolve_model_ref(ref: str, cache_dir: Path) -> Path:
    """The local directory holding the files of `ref`.

    Args:
        ref: a directory path or `oci:LAYOUT_DIR[:TAG]`.
        cache_dir: where images are extracted (one subdirectory per manifest digest).

    Raises:
        ModelRefError: the directory does not exist, the layout or tag is missing, or a layer
            cannot be extracted safely.
    """
    if ref.startswith("oci:"):
        return _extract_oci(ref[4:], cache_dir)
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ModelRefError(f"model ref {ref!r} is a file, not a directory")
    if is_registry_ref(ref):
        return _pull_registry(ref, cache_dir)
    raise ModelRefError(f"model directory {ref!r} does not exist")


def is_registry_ref(ref: str) -> bool:
    """`host[:port]/...`: the first segment names a host (a dot, a port, or localhost)."""
    if ref.startswith((".", "/", "~")) or "/" not in ref:
        return False
    host = ref.split("/", 1)[0]
    return "." in host or ":" in host or host == "localhost"


# Files of a plain model directory the runner reads when present (besides the ONNX graph).
_PLAIN_FILES = (
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
)


def _pull_registry(ref: str, cache_dir: Path) -> Path:
    from modelyard.errors import ModelyardError

    try:
        return _pull_registry_files(ref, cache_dir)
    except ModelRefError:
        raise
    except (ModelyardError, OSError, ValueError) as exc:
        raise ModelRefError(f"cannot fetch {ref!r}: {exc}") from exc


def _pull_registry_files(ref: str, cache_dir: Path) -> Path:
    import json

    from modelyard.errors import FileNotInImage
    from modelyard.lazy.image import RemoteImage

    with RemoteImage(ref) as image:
        target = cache_dir / "registry" / image.digest.replace(":", "-")
        if target.is_dir():
            return target
        (cache_dir / "registry").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=cache_dir / "registry"))
        try:

            def fetch(path: str) -> bool:
                try:
                    loc = image.locate(path)
                    digest = image.fetch_to_cache([loc])[loc.path]
                except FileNotInImage:
                    return False
                dest = tmp / loc.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                if image.cache.materialize(digest, dest) is None:  # evicted meanwhile
                    digest = image.fetch_to_cache([loc])[loc.path]
                    image.cache.materialize(digest, dest)
                return True

            if fetch("modelyard.json"):
                manifest = json.loads((tmp / "modelyard.json").read_text(encoding="utf-8"))
                required = [
                    str(manifest.get("model", "model.onnx")),
                    str(manifest.get("tokenizer", "tokenizer.json")),
                ]
                optional = ["config.json", required[0] + ".data"]
            else:
                onnx = next((p for p in ("model.onnx", "onnx/model.onnx") if fetch(p)), None)
                if onnx is None:
                    raise ModelRefError(f"image {ref} holds no model.onnx or modelyard.json")
                required, optional = ["tokenizer.json"], list(_PLAIN_FILES)
            for path in required:
                if not fetch(path):
                    raise ModelRefError(f"image {ref} holds no {path}")
            for path in optional:
                fetch(path)
            os.replace(tmp, target)
        except FileExistsError:
            pass  # another process put it there first
        except OSError:
            if not target.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def _split_layout_ref(spec: str) -> tuple[Path, str | None]:
    # The tag is after the last colon, unless that colon belongs to the path (no tag given).
    if ":" in spec:
        path, tag = spec.rsplit(":", 1)
        if "/" not in tag and tag:
            return Path(path), tag
    return Path(spec), None


def _extract_oci(spec: str, cache_dir: Path) -> Path:
    from modelyard.oci.layout import Layout

    root, tag = _split_layout_ref(spec)
    try:
        layout = Layout.open(root)
        manifests = layout.image_manifests(layout.resolve(tag))
    except (LayoutError, OSError, ValueError) as exc:
        raise ModelRefError(f"cannot open OCI layout {spec!r}: {exc}") from exc
    if not manifests:
        raise ModelRefError(f"OCI layout {spec!r} holds no image manifest")
    desc, manifest = manifests[0]
    target = cache_dir / "oci" / desc.digest.replace(":", "-")
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "oci").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir / "oci"))
    try:
        for layer in manifest.layers:
            with layout.open_blob(layer.digest) as raw:
                _extract_layer(raw, layer.media_type, tmp)
        os.replace(tmp, target)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process extracted it first
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if target.is_dir():
            return target
        raise ModelRefError(f"cannot extract {spec!r}: {exc}") from exc
    except (tarfile.TarError, ModelRefError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelRefError(f"cannot extract {spec!r}: {exc}") from exc
    return target


def _decompressed(raw: IO[bytes], media_type: str) -> IO[bytes]:
    if media_type.endswith(("+gzip", ".gzip")):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if media_type.endswith("+zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[return-value]
    return raw


def _extract_layer(raw: IO[bytes], media_type: str, dest: Path) -> None:
    """Stream one layer's regular files and directories into `dest`; refuse anything else."""
    stream = _decompressed(raw, media_type)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            rel = PurePosixPath(member.name.lstrip("/"))
            if ".." in rel.parts:
                raise ModelRefError(f"layer entry escapes the image root: {member.name}")
            if not rel.parts or rel.parts == (".",):
                continue
            out = dest.joinpath(*rel.parts)
            if member.isdir():
                out.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with open(out, "wb") as fh:
                    shutil.copyfileobj(src, fh, 1024 * 1024)
            elif member.name.split("/")[-1].startswith(".wh."):
                raise ModelRefError(f"whiteout entries are not supported: {member.name}")
            # links and devices are skipped: model images hold regular files only

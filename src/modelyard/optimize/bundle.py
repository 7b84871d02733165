"""Write a slim bundle directory: model.onnx, tokenizer.json, config.json, modelyard.json.

The directory is assembled next to its destination and renamed into place, so a reader never
sees half a bundle; an existing bundle at the destination is replaced, anything else refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from modelyard.bundle import MANIFEST_NAME, BundleManifest, write_text_atomic
from modelyard.errors import BundleError, SourceError
from modelyard.optimize.source import ModelSource

_CONFIG_KEYS = (
    "model_type",
    "architectures",
    "hidden_size",
    "id2label",
    "label2id",
    "pad_token_id",
    "problem_type",
)


def slim_tokenizer_json(source: ModelSource) -> str:
    """The source's tokenizer.json, padding to the longest in the batch, truncating at max_length.

    Saved tokenizers often carry fixed padding (MiniLM pads every input to 128) or a truncation
    length unrelated to the model; the runner should not inherit either.
    """
    from tokenizers import Tokenizer

    path = source.path / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on parse errors
        raise SourceError(f"cannot read {path}: {exc}") from exc
    pad_token = source.pad_token or _guess_pad_token(tok)
    pad_id = tok.token_to_id(pad_token) if pad_token else None
    if pad_token is None or pad_id is None:
        raise SourceError(f"{path}: no padding token (looked for {pad_token!r})")
    tok.no_padding()
    tok.no_truncation()
    tok.enable_padding(direction="right", pad_id=pad_id, pad_token=pad_token, pad_type_id=0)
    tok.enable_truncation(source.max_length, strategy="longest_first", direction="right")
    return tok.to_str(pretty=True)


def _guess_pad_token(tok: Any) -> str | None:
    for candidate in ("[PAD]", "<pad>", "<|pad|>"):
        if tok.token_to_id(candidate) is not None:
            return candidate
    return None


def slim_config(source: ModelSource) -> dict[str, Any]:
    config = {k: source.config[k] for k in _CONFIG_KEYS if k in source.config}
    config["max_length"] = source.max_length
    if source.task == "feature-extraction":
        config["pooling"] = source.pooling
        config["normalize"] = source.normalize
    return config


def write_bundle(
    out_dir: str | Path,
    source: ModelSource,
    onnx_path: Path,
    manifest: BundleManifest,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Assemble the bundle at `out_dir` from an exported (maybe quantized) ONNX file.

    Raises:
        BundleError: `out_dir` exists, is not empty, and is not a modelyard bundle.
    """
    out = check_destination(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _copy_fsync(onnx_path, staging / manifest.model)
        write_text_atomic(staging / manifest.tokenizer, slim_tokenizer_json(source))
        write_text_atomic(staging / "config.json", json.dumps(slim_config(source), indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            write_text_atomic(staging / name, text)
        manifest.save(staging)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def check_destination(out_dir: str | Path) -> Path:
    """The absolute bundle path, if writing there would lose nothing but an older bundle.

    Raises:
        BundleError: `out_dir` exists, is not empty, and is not a modelyard bundle.
    """
    out = Path(out_dir).absolute()
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_NAME).is_file())
    ):
        raise BundleError(f"{out} exists and is not a modelyard bundle; refusing to overwrite")
    return out


def _copy_fsync(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def _swap_into_place(staging: Path, out: Path) -> None:
    staging.chmod(0o755)
    if not out.exists():
        os.replace(staging, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(staging, out)
        return
    # Two renames leave a short window with no bundle, but never a mixed one.
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)

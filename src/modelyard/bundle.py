"""The slim bundle manifest, `modelyard.json`: what the runner needs to run an optimized model.

A bundle is a directory written by `modelyard optimize`:

    model.onnx        the graph (fp32 or int8), dynamic batch and sequence axes
    tokenizer.json    a `tokenizers` file, padding per batch, truncation at `max_length`
    config.json       trimmed model config (model_type, labels, max length, pooling)
    modelyard.json    this manifest

This module is pure (json and dataclasses only) so that the runner can read a bundle without
torch, transformers, or even onnxruntime installed.

Example:
    >>> manifest = BundleManifest.load("bundle/")
    >>> manifest.labels
    ['negative', 'positive']
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import BundleError

MANIFEST_NAME = "modelyard.json"
FORMAT_VERSION = 1
TASKS = ("text-classification", "feature-extraction")
POOLINGS = ("mean", "cls")


@dataclass
class BundleManifest:
    """The contents of `modelyard.json`.

    Attributes:
        task: "text-classification" or "feature-extraction".
        max_length: tokens per sequence the model accepts, special tokens included.
        inputs: the input names the ONNX graph declares; feed exactly these.
        output: the graph output to read (`logits`, or `last_hidden_state` to pool).
        model: path of the ONNX file, relative to the bundle.
        tokenizer: path of `tokenizer.json`, relative to the bundle.
        truncation_side: "right" (the only side written today).
        pooling: "mean" (attention-mask weighted) or "cls" for embeddings; None for classifiers.
        normalize: L2-normalize embeddings after pooling.
        labels: class names by index for classifiers; None for embeddings.
        quantization: the settings chosen (e.g. {"type": "QInt8", "per_channel": true}) or None.
        fidelity: the measured comparison with the original model, or None.
        source: where the model came from: {"path" or "repo": ..., "revision": ...}.
        format: manifest format version; readers refuse versions they do not know.
    """

    task: str
    max_length: int
    inputs: list[str]
    output: str
    model: str = "model.onnx"
    tokenizer: str = "tokenizer.json"
    truncation_side: str = "right"
    pooling: str | None = None
    normalize: bool = False
    labels: list[str] | None = None
    quantization: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the fields; raise `BundleError` naming the first bad one."""
        if self.format != FORMAT_VERSION:
            raise BundleError(f"unsupported bundle format {self.format!r} (know {FORMAT_VERSION})")
        if self.task not in TASKS:
            raise BundleError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if (
            not isinstance(self.max_length, int)
            or isinstance(self.max_length, bool)
            or self.max_length < 2
        ):
            raise BundleError(f"max_length must be an integer >= 2, got {self.max_length!r}")
        if not self.inputs or not all(isinstance(n, str) and n for n in self.inputs):
            raise BundleError(f"inputs must be a non-empty list of names, got {self.inputs!r}")
        if "input_ids" not in self.inputs:
            raise BundleError(f"inputs must include input_ids, got {self.inputs!r}")
        for name in ("output", "model", "tokenizer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise BundleError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("model", "tokenizer"):
            _check_relative(name, getattr(self, name))
        if self.truncation_side != "right":
            raise BundleError(f"truncation_side must be 'right', got {self.truncation_side!r}")
        if not isinstance(self.normalize, bool):
            raise BundleError(f"normalize must be a boolean, got {self.normalize!r}")
        if self.task == "text-classification":
            if not self.labels or not all(isinstance(x, str) for x in self.labels):
                raise BundleError("a text-classification bundle needs a non-empty list of labels")
            if self.pooling is not None:
                raise BundleError("pooling applies to feature-extraction bundles only")
        else:
            if self.labels is not None:
                raise BundleError("labels apply to text-classification bundles only")
            if self.pooling not in POOLINGS:
                raise BundleError(
                    f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"
                )
        for name in ("quantization", "fidelity"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise BundleError(f"{name} must be an object or null, got {value!r}")
        if not isinstance(self.source, dict):
            raise BundleError(f"source must be an object, got {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # `format` first so that a human reading the file sees the version at the top.
        return {"format": data.pop("format"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> BundleManifest:
        """Build and validate a manifest from parsed JSON; unknown keys are refused."""
        if not isinstance(data, dict):
            raise BundleError(f"{MANIFEST_NAME} must hold a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"unknown keys in {MANIFEST_NAME}: {', '.join(unknown)}")
        missing = sorted(k for k in ("task", "max_length", "inputs", "output") if k not in data)
        if missing:
            raise BundleError(f"missing keys in {MANIFEST_NAME}: {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise BundleError(f"bad {MANIFEST_NAME}: {exc}") from exc

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike[str]) -> BundleManifest:
        """Read `modelyard.json` from a bundle directory and check the files it names exist."""
        root = Path(bundle_dir)
        path = root / MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise BundleError(f"not a modelyard bundle: {path} is missing") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path} is not valid JSON: {exc}") from exc
        manifest = cls.from_dict(data)
        for name in (manifest.model, manifest.tokenizer):
            if not (root / name).is_file():
                raise BundleError(f"bundle {root} names {name} but the file is missing")
        return manifest

    def save(self, bundle_dir: str | os.PathLike[str]) -> Path:
        """Write `modelyard.json` atomically (temp file, fsync, rename)."""
        self.validate()
        path = Path(bundle_dir) / MANIFEST_NAME
        write_text_atomic(path, self.to_json())
        return path


def _check_relative(name: str, value: str) -> None:
    parts = Path(value).parts
    if Path(value).is_absolute() or ".." in parts:
        raise BundleError(f"{name} must be a path inside the bundle, got {value!r}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same directory, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

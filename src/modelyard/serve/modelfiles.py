"""What the runner needs to know about a model directory, whichever form it comes in.

Two forms: a modelyard bundle (`modelyard.json`, written by `modelyard optimize`), or a plain
directory with `model.onnx` (or `onnx/model.onnx`), `tokenizer.json` and `config.json`, where the
task, labels and limits are inferred from the Hugging Face config files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import ModelRefError

_CLASSIFIER_SUFFIXES = ("ForSequenceClassification",)
# A tokenizer_config.json model_max_length above this is the "no limit" sentinel, not a limit.
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class ModelFiles:
    root: Path
    task: str
    model: Path
    tokenizer: Path
    max_length: int
    truncation_side: str
    inputs: tuple[str, ...] | None
    output: str | None
    pooling: str | None
    normalize: bool
    labels: tuple[str, ...] | None
    pad_id: int | None
    multi_label: bool = False

    @property
    def weight_bytes(self) -> int:
        try:
            total = self.model.stat().st_size
            data = self.model.with_name(self.model.name + ".data")  # external ONNX weights
            return total + (data.stat().st_size if data.exists() else 0)
        except OSError:
            return 0


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRefError(f"cannot read {path}: {exc}") from exc
    return obj if isinstance(obj, dict) else {}


def describe(root: Path, task: str | None = None) -> ModelFiles:
    """Describe the model in `root`; `task` overrides what the files say.

    Raises: ModelRefError when the ONNX file or tokenizer is missing or the task is unknown.
    """
    if (root / "modelyard.json").is_file():
        return _from_bundle(root, task)
    return _from_plain_dir(root, task)


def _from_bundle(root: Path, task: str | None) -> ModelFiles:
    from modelyard.bundle import BundleManifest
    from modelyard.errors import BundleError

    try:
        m = BundleManifest.load(root)
    except BundleError as exc:
        raise ModelRefError(str(exc)) from exc
    config = _read_json(root / "config.json")
    return ModelFiles(
        root=root,
        task=task or m.task,
        model=root / m.model,
        tokenizer=root / m.tokenizer,
        max_length=m.max_length,
        truncation_side=m.truncation_side,
        inputs=tuple(m.inputs),
        output=m.output,
        pooling=m.pooling,
        normalize=m.normalize,
        labels=tuple(m.labels) if m.labels else None,
        pad_id=config.get("pad_token_id") if isinstance(config.get("pad_token_id"), int) else None,
        multi_label=config.get("problem_type") == "multi_label_classification",
    )


def _find_onnx(root: Path) -> Path:
    for candidate in ("model.onnx", "onnx/model.onnx", "model_quantized.onnx"):
        if (root / candidate).is_file():
            return root / candidate
    found = sorted(root.glob("*.onnx"))
    if len(found) == 1:
        return found[0]
    raise ModelRefError(f"no model.onnx in {root} (export it with `modelyard optimize`)")


def _from_plain_dir(root: Path, task: str | None) -> ModelFiles:
    model = _find_onnx(root)
    tokenizer = root / "tokenizer.json"
    if not tokenizer.is_file():
        raise ModelRefError(f"no tokenizer.json in {root}")
    config = _read_json(root / "config.json")
    tok_config = _read_json(root / "tokenizer_config.json")
    id2label = config.get("id2label")
    archs = config.get("architectures") or []
    if task is None:
        is_classifier = any(str(a).endswith(_CLASSIFIER_SUFFIXES) for a in archs)
        task = "text-classification" if is_classifier else "feature-extraction"
    labels = None
    if task == "text-classification":
        if not isinstance(id2label, dict) or not id2label:
            raise ModelRefError(f"{root}/config.json has no id2label for text-classification")
        try:
            labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
        except (TypeError, ValueError) as exc:
            raise ModelRefError(f"{root}/config.json: id2label keys must be integers") from exc
    return ModelFiles(
        root=root,
        task=task,
        model=model,
        tokenizer=tokenizer,
        max_length=_max_length(root, config, tok_config),
        truncation_side=str(tok_config.get("truncation_side") or "right"),
        inputs=None,
        output=None,
        pooling=_pooling(root),
        normalize=_has_normalize(root),
        labels=labels,
        pad_id=config.get("pad_token_id") if isinstance(config.get("pad_token_id"), int) else None,
        multi_label=config.get("problem_type") == "multi_label_classification",
    )


def _max_length(root: Path, config: dict[str, Any], tok_config: dict[str, Any]) -> int:
    limits: list[int] = []
    st = _read_json(root / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(st, int) and st > 0:
        limits.append(st)
    tok = tok_config.get("model_max_length")
    if isinstance(tok, int | float) and 0 < tok < _NO_LIMIT:
        limits.append(int(tok))
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-family models offset positions by the padding index + 1.
        offset = 2 if config.get("model_type") in ("roberta", "xlm-roberta", "camembert") else 0
        limits.append(positions - offset)
    return min(limits) if limits else 512


def _pooling(root: Path) -> str:
    pooling = _read_json(root / "1_Pooling" / "config.json")
    if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens"):
        return "cls"
    return "mean"


def _has_normalize(root: Path) -> bool:
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in modules
    )

"""What a Hugging Face model directory says about itself: task, labels, max length, pooling.

Reads only JSON files (config.json, tokenizer_config.json, the sentence-transformers files), so
it is cheap and needs no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import SourceError, SourceNotFound

# RoBERTa-family position ids start after the padding index, so two positions are unusable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet"}
# tokenizer_config.json uses a huge sentinel when the tokenizer has no limit of its own.
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class ModelSource:
    """A local model directory as `save_pretrained` writes it.

    Attributes:
        path: the directory.
        config: parsed config.json.
        task: "text-classification" or "feature-extraction".
        max_length: tokens per sequence, special tokens included.
        labels: class names by index (classifiers) or None.
        pooling: "mean" or "cls" (embeddings) or None.
        normalize: whether embeddings are L2-normalized (sentence-transformers Normalize).
        pad_token: the tokenizer's padding token.
    """

    path: Path
    config: dict[str, Any]
    task: str
    max_length: int
    labels: list[str] | None
    pooling: str | None
    normalize: bool
    pad_token: str | None

    @property
    def origin(self) -> dict[str, Any]:
        """Where the model came from, for the manifest: a hub repo and revision when the
        directory is a Hugging Face cache snapshot (`models--org--name/snapshots/REV`)."""
        parts = self.path.absolute().parts
        if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
            repo = parts[-3].removeprefix("models--").replace("--", "/")
            return {"repo": repo, "revision": parts[-1]}
        return {"path": str(self.path.absolute()), "revision": None}

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def multi_label(self) -> bool:
        """Independent sigmoid per label instead of one softmax over all labels."""
        return self.config.get("problem_type") == "multi_label_classification"

    @property
    def uses_token_type_ids(self) -> bool:
        # A single-row token type table (RoBERTa family) carries no information: skip the input.
        return int(self.config.get("type_vocab_size", 0) or 0) > 1


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path} is not valid JSON: {exc}") from exc


def read_source(path: str | Path, task: str) -> ModelSource:
    """Describe the model at `path` for `task`.

    Raises:
        SourceNotFound: the directory or its config.json / tokenizer.json is missing.
        SourceError: the files disagree with the task (e.g. no labels for a classifier).
    """
    root = Path(path)
    if not root.is_dir():
        raise SourceNotFound(f"model directory not found: {root}")
    config = _read_json(root / "config.json")
    if not isinstance(config, dict):
        raise SourceNotFound(f"{root} has no config.json: not a Hugging Face model directory")
    if not (root / "tokenizer.json").is_file():
        raise SourceNotFound(
            f"{root} has no tokenizer.json: only fast (tokenizers) tokenizers can be bundled"
        )
    tok_config = _read_json(root / "tokenizer_config.json") or {}
    special = _read_json(root / "special_tokens_map.json") or {}

    labels: list[str] | None = None
    pooling: str | None = None
    normalize = False
    if task == "text-classification":
        labels = _labels(config, root)
    elif task == "feature-extraction":
        pooling, normalize = _pooling(root)
    else:
        raise SourceError(f"unknown task {task!r}")

    return ModelSource(
        path=root,
        config=config,
        task=task,
        max_length=_max_length(root, config, tok_config),
        labels=labels,
        pooling=pooling,
        normalize=normalize,
        pad_token=_token_text(tok_config.get("pad_token") or special.get("pad_token")),
    )


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # AddedToken serialized as {"content": ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _labels(config: dict[str, Any], root: Path) -> list[str]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise SourceError(f"{root}/config.json has no id2label: not a classifier")
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except ValueError as exc:
        raise SourceError(f"{root}/config.json: id2label keys must be integers") from exc
    if sorted(by_index) != list(range(len(by_index))):
        raise SourceError(f"{root}/config.json: id2label ids must be 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _pooling(root: Path) -> tuple[str, bool]:
    """Pooling and normalization from the sentence-transformers files; mean, no norm if absent."""
    modules = _read_json(root / "modules.json")
    if not isinstance(modules, list):
        return "mean", False
    pooling, normalize = "mean", False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            conf = _read_json(root / str(module.get("path", "")) / "config.json") or {}
            if conf.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif conf.get("pooling_mode_mean_tokens", True):
                pooling = "mean"
            else:
                modes = [k for k, v in conf.items() if k.startswith("pooling_mode") and v]
                raise SourceError(f"{root}: unsupported pooling {modes}; only mean and cls")
        elif not kind.endswith("Transformer"):
            raise SourceError(f"{root}/modules.json: unsupported module {kind!r}")
    return pooling, normalize


def _max_length(root: Path, config: dict[str, Any], tok_config: dict[str, Any]) -> int:
    limits: list[int] = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        offset = 2 if config.get("model_type") in _OFFSET_POSITIONS else 0
        limits.append(positions - offset)
    tok_max = tok_config.get("model_max_length")
    if isinstance(tok_max, int | float) and 0 < tok_max < _NO_LIMIT:
        limits.append(int(tok_max))
    st_config = _read_json(root / "sentence_bert_config.json") or {}
    st_max = st_config.get("max_seq_length")
    if isinstance(st_max, int) and st_max > 0:
        limits.append(st_max)
    if not limits:
        raise SourceError(f"{root}: cannot tell the model's maximum sequence length")
    return min(limits)

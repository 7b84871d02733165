"""Run the original (torch) and the optimized (onnxruntime + tokenizers) model the same way.

Both return one row per sentence: class probabilities for classifiers, pooled (and maybe
normalized) embeddings for encoders, so that fidelity is measured on what a user receives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.optimize.source import ModelSource

BATCH = 32


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def scores(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Class probabilities as transformers' text-classification pipeline computes them."""
    return sigmoid(logits) if multi_label else softmax(logits)


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str | None, normalize: bool) -> np.ndarray:
    """Sentence embeddings from token embeddings, as sentence-transformers computes them."""
    if pooling == "cls":
        out = hidden[:, 0]
    else:
        weights = mask[..., None].astype(hidden.dtype)
        out = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if normalize:
        out = out / np.clip(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12, None)
    return out


class OnnxModel:
    """An ONNX graph plus a `tokenizers` tokenizer: what the slim runner does, in process."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_json: str,
        source: ModelSource,
        output: str,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.source = source
        self.output = output

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(sentences))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        out = self.session.run([self.output], {n: feeds[n] for n in self.inputs})[0]
        if self.source.task == "text-classification":
            return scores(out.astype(np.float64), self.source.multi_label)
        return pool(
            out.astype(np.float64),
            feeds["attention_mask"],
            self.source.pooling,
            self.source.normalize,
        )


class TorchModel:
    """The original model with its own transformers tokenizer."""

    def __init__(self, source: ModelSource, model: Any) -> None:
        from transformers import AutoTokenizer

        self.source = source
        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(source.path)

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=self.source.max_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            out = self.model(**batch, return_dict=True)
        if self.source.task == "text-classification":
            return scores(out.logits.numpy().astype(np.float64), self.source.multi_label)
        return pool(
            out.last_hidden_state.numpy().astype(np.float64),
            batch["attention_mask"].numpy(),
            self.source.pooling,
            self.source.normalize,
        )


def run_batched(
    model: Callable[[Sequence[str]], np.ndarray], sentences: Sequence[str], batch: int = BATCH
) -> np.ndarray:
    return np.concatenate(
        [model(sentences[i : i + batch]) for i in range(0, len(sentences), batch)]
    )


def latency(
    model: Callable[[Sequence[str]], np.ndarray], sentences: Sequence[str], rounds: int = 3
) -> dict[str, float]:
    """Milliseconds per call at batch 1 and batch 32, and sentences per second at each.

    Medians over the calls, after one warm-up call per batch size; the machine is shared, so
    these are indications, not guarantees.
    """
    singles = list(sentences[:16])
    model(singles[:1])
    one = []
    for sentence in singles:
        start = time.perf_counter()
        model([sentence])
        one.append(time.perf_counter() - start)
    full = [sentences[i % len(sentences)] for i in range(BATCH)]
    model(full)
    many = []
    for _ in range(rounds):
        start = time.perf_counter()
        model(full)
        many.append(time.perf_counter() - start)
    ms1 = float(np.median(one) * 1000)
    ms32 = float(np.median(many) * 1000)
    return {
        "batch1_ms": round(ms1, 3),
        "batch1_per_s": round(1000 / ms1, 1),
        "batch32_ms": round(ms32, 3),
        "batch32_per_s": round(BATCH * 1000 / ms32, 1),
    }

"""`feature-extraction`: sentence embeddings by mean (or CLS) pooling, optionally normalised."""

from __future__ import annotations

from typing import Any

from modelyard.serve.config import ModelConfig
from modelyard.serve.modelfiles import ModelFiles
from modelyard.serve.pipelines.text import TEXTS_SCHEMA, TextOnnxPipeline

_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"inputs": TEXTS_SCHEMA},
    "required": ["inputs"],
}


_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "embeddings": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}},
        },
    },
}


class FeatureExtraction(TextOnnxPipeline):
    task = "feature-extraction"
    input_schema = _INPUT_SCHEMA
    output_schema = _OUTPUT_SCHEMA

    def __init__(self, files: ModelFiles, config: ModelConfig) -> None:
        super().__init__(files, config)
        self.pooling = files.pooling or "mean"
        self.normalize = files.normalize if config.normalize is None else config.normalize
        shape = self.session.get_outputs()[self.output_names.index(self.output)].shape
        self.dim = shape[-1] if isinstance(shape[-1], int) else -1
        self.pooled = len(shape) == 2  # the graph already pools (a sentence_embedding output)

    def infer(self, session: Any, feed: dict[str, Any]) -> Any:
        import numpy as np

        (hidden,) = session.run([self.output], feed)
        if self.pooled:
            vectors = hidden.astype(np.float32)
        elif self.pooling == "cls":
            vectors = hidden[:, 0, :].astype(np.float32)
        else:
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            summed = (hidden * mask).sum(axis=1)
            vectors = (summed / np.clip(mask.sum(axis=1), 1e-9, None)).astype(np.float32)
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.clip(norms, 1e-12, None)
        return vectors

    def finish(self, outputs: Any, start: int, stop: int, params: dict[str, Any]) -> Any:
        return outputs[start:stop]

"""`text-classification`: logits -> softmax (or sigmoid for multi-label) -> top-k labels."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidInput, ModelRefError
from modelyard.serve.config import ModelConfig
from modelyard.serve.modelfiles import ModelFiles
from modelyard.serve.pipelines.text import TEXTS_SCHEMA, TextOnnxPipeline

_SCORE = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
}


_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "inputs": TEXTS_SCHEMA,
        "parameters": {
            "type": "object",
            "properties": {"top_k": {"type": "integer", "minimum": 1}},
        },
    },
    "required": ["inputs"],
}


_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "array", "items": _SCORE}},
    },
}


class TextClassification(TextOnnxPipeline):
    task = "text-classification"
    input_schema = _INPUT_SCHEMA
    output_schema = _OUTPUT_SCHEMA

    def __init__(self, files: ModelFiles, config: ModelConfig) -> None:
        super().__init__(files, config)
        if not files.labels:
            raise ModelRefError(f"{files.root}: a classifier needs labels")
        self.labels = list(files.labels)

    def check_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        top_k = params.get("top_k", self.config.top_k)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InvalidInput("parameters.top_k must be an integer >= 1", 422)
        return {"top_k": min(top_k, len(self.labels))}

    def infer(self, session: Any, feed: dict[str, Any]) -> Any:
        import numpy as np

        (logits,) = session.run([self.output], feed)
        logits = logits.astype(np.float64)
        if self.files.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def finish(self, outputs: Any, start: int, stop: int, params: dict[str, Any]) -> Any:
        import numpy as np

        k = params["top_k"]
        out = []
        for row in outputs[start:stop]:
            order = np.argsort(-row, kind="stable")[:k]
            out.append([{"label": self.labels[i], "score": float(row[i])} for i in order])
        return out

"""Export a Hugging Face encoder to ONNX with dynamic batch and sequence axes.

Uses the TorchScript exporter (`dynamo=False`, opset 17): measured exact on BERT-family models
and about 6x faster than the dynamo exporter, which also stores stack traces on every node.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from modelyard.errors import ExportError
from modelyard.optimize.source import ModelSource

OPSET = 17


def load_torch_model(source: ModelSource) -> Any:
    """Load the original model with transformers, in eval mode, eager attention."""
    try:
        from transformers import AutoModel, AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ExportError(
            "optimize needs the export extra: pip install 'modelyard[export]'"
        ) from exc
    hf_logging.disable_progress_bar()
    cls = AutoModelForSequenceClassification if source.task == "text-classification" else AutoModel
    try:
        # Eager attention exports to plain MatMul/Softmax, which dynamic quantization covers.
        model = cls.from_pretrained(source.path, attn_implementation="eager")
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"cannot load {source.path} with transformers: {exc}") from exc
    model.eval()
    return model


def input_names(source: ModelSource) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if source.uses_token_type_ids:
        names.append("token_type_ids")
    return names


def output_name(task: str) -> str:
    return "logits" if task == "text-classification" else "last_hidden_state"


def export_onnx(source: ModelSource, model: Any, out_path: Path) -> list[str]:
    """Export `model` to `out_path`; return the input names the graph declares.

    The output is `logits` (classifiers) or `last_hidden_state` (encoders, pooled by the runner).
    """
    import torch

    names = input_names(source)
    output = output_name(source.task)

    class _Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            result = self.inner(**dict(zip(names, args, strict=True)), return_dict=True)
            return result[output]

    # Batch 2 with one padded row, so that tracing sees masking at work.
    seq = 8
    ids = torch.full((2, seq), 5, dtype=torch.long)
    mask = torch.ones((2, seq), dtype=torch.long)
    mask[1, seq // 2 :] = 0
    dummy: dict[str, torch.Tensor] = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros((2, seq), dtype=torch.long),
    }
    args = tuple(dummy[n] for n in names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter restores the wrapper's training flag afterwards, recursively: a fresh module
    # is in training mode and would switch the model's dropout on for every later use.
    wrapper = _Wrapper().eval()
    try:
        # The TorchScript exporter is deprecated in torch 2.9+ and says so loudly; it still
        # produces the exact, compact graph we want.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    wrapper,
                    args,
                    str(out_path),
                    input_names=names,
                    output_names=[output],
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"ONNX export of {source.path} failed: {exc}") from exc
    finally:
        model.eval()
    return declared_inputs(out_path)


def declared_inputs(onnx_path: Path) -> list[str]:
    """Input names of the graph (unused inputs may have been pruned by the exporter)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        # Past 2 GB, ONNX keeps weights in side files; a bundle carries one model file.
        raise ExportError(
            f"{onnx_path}: the graph keeps weights in external data files; models over 2 GB "
            "are not supported by modelyard optimize yet"
        )
    initializers = {init.name for init in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]

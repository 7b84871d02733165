"""The optimize pipeline: read the source, export, (quantize, check fidelity), write the bundle."""

from __future__ import annotations

import tempfile
from pathlib import Path

from modelyard.bundle import BundleManifest
from modelyard.optimize.bundle import write_bundle
from modelyard.optimize.export import export_onnx, load_torch_model, output_name
from modelyard.optimize.source import read_source


def export_bundle(source_dir: str | Path, out_dir: str | Path, task: str) -> BundleManifest:
    """Export `source_dir` to an fp32 ONNX bundle at `out_dir`, without quantization or checks.

    Example:
        >>> manifest = export_bundle("tiny-bert", "bundle", "text-classification")
    """
    source = read_source(source_dir, task)
    model = load_torch_model(source)
    with tempfile.TemporaryDirectory(prefix="modelyard-export-") as work:
        onnx_path = Path(work) / "model.onnx"
        inputs = export_onnx(source, model, onnx_path)
        manifest = BundleManifest(
            task=task,
            max_length=source.max_length,
            inputs=inputs,
            output=output_name(task),
            pooling=source.pooling,
            normalize=source.normalize,
            labels=source.labels,
            source={"path": str(source.path.absolute()), "revision": None},
        )
        write_bundle(out_dir, source, onnx_path, manifest)
    return manifest

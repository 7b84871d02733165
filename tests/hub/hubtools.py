"""Helpers for the hub tests: generated model repositories and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

MODEL_REPO = "Org/Tiny-Model"
#: `hf_to_oci(MODEL_REPO)`, written out so that a change of the mapping shows here.
MODEL_OCI = "org--u0/tiny-model--u0.5"


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "model", "image"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def _onnx_model(path: Path, rng: np.random.Generator, n: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(rng.standard_normal((n, 256), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
        [weight],
    )
    onnx.save(helper.make_model(graph), str(path))


def make_model(directory: Path, seed: int = 0) -> Path:
    """A small model repository: config, tokenizer, two weight files (a few MiB) and ONNX."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(
        json.dumps({"model_type": "bert", "hidden_size": 256, "seed": seed}, indent=2)
    )
    (directory / "tokenizer.json").write_text(_tokenizer_json())
    (directory / "README.md").write_text(f"# tiny model {seed}\n")
    save_file(
        {"w": rng.standard_normal((1024, 768), dtype=np.float32)},
        str(directory / "model.safetensors"),
    )
    (directory / "pytorch_model.bin").write_bytes(rng.bytes(2 << 20))
    (directory / "onnx").mkdir(exist_ok=True)
    _onnx_model(directory / "onnx" / "model.onnx", rng, 1024)
    return directory


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )

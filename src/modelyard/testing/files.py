"""Small model directories and tree comparisons for tests and benchmarks."""

from __future__ import annotations

import json
import os
from pathlib import Path

MiB = 1 << 20


def make_model(root: Path, seed: int = 0, weights: int = 2, weight_size: int = 3 * MiB) -> Path:
    """A model directory: config, tokenizer and weight files of random float32 values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"vocab": {}}}))
    for i in range(weights):
        path = root / f"model-{i:05d}.safetensors"
        with open(path, "wb") as f:
            left = weight_size // 4
            while left:
                n = min(left, 4 * MiB)
                f.write(rng.standard_normal(n, dtype=np.float32).tobytes())
                left -= n
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every regular file under `root` (small trees only)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out

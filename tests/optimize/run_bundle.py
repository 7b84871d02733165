"""Run a modelyard bundle with onnxruntime + tokenizers only; print outputs as JSON.

Executed by the tests inside a venv that has no torch and no transformers, the way the slim
runner would: read modelyard.json, tokenize, feed exactly the declared inputs, pool, normalize.
Usage: python run_bundle.py BUNDLE_DIR SENTENCES_JSON_FILE
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from modelyard.bundle import BundleManifest


def main() -> None:
    bundle = Path(sys.argv[1])
    sentences = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    manifest = BundleManifest.load(bundle)
    tokenizer = Tokenizer.from_file(str(bundle / manifest.tokenizer))
    session = ort.InferenceSession(str(bundle / manifest.model), providers=["CPUExecutionProvider"])
    rows = []
    for start in range(0, len(sentences), 16):
        enc = tokenizer.encode_batch(sentences[start : start + 16])
        feeds = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        out = session.run([manifest.output], {n: feeds[n] for n in manifest.inputs})[0]
        out = out.astype(np.float64)
        if manifest.task == "text-classification":
            exp = np.exp(out - out.max(axis=-1, keepdims=True))
            rows.append(exp / exp.sum(axis=-1, keepdims=True))
            continue
        mask = feeds["attention_mask"][..., None].astype(np.float64)
        if manifest.pooling == "cls":
            pooled = out[:, 0]
        else:
            pooled = (out * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if manifest.normalize:
            pooled = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
        rows.append(pooled)
    heavy = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is not None]
    print(
        json.dumps(
            {
                "outputs": np.concatenate(rows).tolist(),
                "labels": manifest.labels,
                "max_tokens": max(len(e.ids) for e in tokenizer.encode_batch(sentences)),
                "heavy_modules": heavy,
                "loaded_modules": sorted(m for m in sys.modules if m in ("torch", "transformers")),
            }
        )
    )


if __name__ == "__main__":
    main()

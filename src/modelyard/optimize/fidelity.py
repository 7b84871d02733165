"""Fidelity of an optimized model to its original: metrics, the bar, and the report table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelyard.errors import FidelityError


@dataclass(frozen=True)
class FidelityBar:
    """The minimum an optimized model must reach to be bundled.

    Attributes:
        min_agreement: share of samples where the top label matches (classifiers).
        min_mean_cosine: mean cosine similarity of embeddings to the original's (encoders).
        min_min_cosine: worst single-sample cosine similarity (encoders).
        max_prob_delta: largest allowed change of any class probability; None to only report.
    """

    min_agreement: float = 0.99
    min_mean_cosine: float = 0.98
    min_min_cosine: float = 0.95
    max_prob_delta: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    task: str, reference: np.ndarray, candidate: np.ndarray, multi_label: bool = False
) -> dict[str, Any]:
    """Metrics of `candidate` rows against `reference` rows (probabilities or embeddings).

    Agreement is on the top label, or for multi-label classifiers on the whole set of labels
    scoring above 0.5.
    """
    if reference.shape != candidate.shape:
        raise FidelityError(
            f"optimized outputs have shape {candidate.shape}, original {reference.shape}"
        )
    samples = int(reference.shape[0])
    if task == "text-classification":
        if multi_label:
            same = ((reference > 0.5) == (candidate > 0.5)).all(axis=-1)
        else:
            same = reference.argmax(axis=-1) == candidate.argmax(axis=-1)
        return {
            "samples": samples,
            "agreement": float(same.mean()),
            "disagreements": int((~same).sum()),
            "max_prob_delta": float(np.abs(reference - candidate).max()),
        }
    ref_norm = reference / np.clip(np.linalg.norm(reference, axis=-1, keepdims=True), 1e-12, None)
    cand_norm = candidate / np.clip(np.linalg.norm(candidate, axis=-1, keepdims=True), 1e-12, None)
    cosine = (ref_norm * cand_norm).sum(axis=-1)
    return {
        "samples": samples,
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
    }


def failures(task: str, metrics: dict[str, Any], bar: FidelityBar) -> list[str]:
    """Human-readable reasons `metrics` miss `bar`; empty when the bar is met."""
    out: list[str] = []
    if task == "text-classification":
        if metrics["agreement"] < bar.min_agreement:
            out.append(f"label agreement {metrics['agreement']:.2%} < {bar.min_agreement:.2%}")
        if bar.max_prob_delta is not None and metrics["max_prob_delta"] > bar.max_prob_delta:
            out.append(
                f"max probability delta {metrics['max_prob_delta']:.4f} > {bar.max_prob_delta}"
            )
    else:
        if metrics["mean_cosine"] < bar.min_mean_cosine:
            out.append(f"mean cosine {metrics['mean_cosine']:.4f} < {bar.min_mean_cosine}")
        if metrics["min_cosine"] < bar.min_min_cosine:
            out.append(f"min cosine {metrics['min_cosine']:.4f} < {bar.min_min_cosine}")
    return out


def _fmt_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def format_table(report: dict[str, Any]) -> str:
    """The optimize report as a small text table: one row per model variant tried."""
    task = report["task"]
    metric_names = (
        ["agreement", "max_prob_delta"]
        if task == "text-classification"
        else ["mean_cosine", "min_cosine"]
    )
    header = ["variant", "size", *metric_names, "b1 ms", "b32 /s", "bar"]
    rows: list[list[str]] = []
    original = report.get("original", {})
    rows.append(
        [
            "original (torch)",
            _fmt_size(original.get("size", 0)),
            *["-" for _ in metric_names],
            _num((original.get("latency") or {}).get("batch1_ms")),
            _num((original.get("latency") or {}).get("batch32_per_s")),
            "",
        ]
    )
    for variant in report.get("variants", []):
        metrics = variant.get("fidelity") or {}
        mark = (
            "chosen"
            if variant.get("chosen")
            else ("pass" if variant.get("passes") else ("fail" if metrics else "skipped"))
        )
        rows.append(
            [
                variant["name"],
                _fmt_size(variant["size"]),
                *[_num(metrics.get(m)) for m in metric_names],
                _num((variant.get("latency") or {}).get("batch1_ms")),
                _num((variant.get("latency") or {}).get("batch32_per_s")),
                mark,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or value >= 10:
            return f"{value:.1f}"
        return f"{value:.6f}" if abs(value) >= 0.01 else f"{value:.1e}"
    return str(value)

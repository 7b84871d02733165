"""The optimize pipeline: read the source, export, quantize, measure fidelity, write the bundle.

Example:
    >>> result = optimize("tiny-bert", "bundle", "text-classification", quantize="int8")
    >>> result.manifest.quantization["name"]
    'int8-gather-channel'
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.bundle import BundleManifest
from modelyard.errors import ExportError, FidelityError
from modelyard.optimize.bundle import check_destination, slim_tokenizer_json, write_bundle
from modelyard.optimize.export import export_onnx, load_torch_model, output_name
from modelyard.optimize.fidelity import FidelityBar, compare, failures
from modelyard.optimize.inference import OnnxModel, TorchModel, latency, run_batched
from modelyard.optimize.quantize import SETTINGS, QuantSetting, quantize, setting_by_name
from modelyard.optimize.samples import load_samples
from modelyard.optimize.source import ModelSource, read_source

QUANTIZE_CHOICES = ("int8", "none")


@dataclass
class OptimizeResult:
    """What `optimize` wrote: the bundle directory, its manifest and the full report."""

    out_dir: Path
    manifest: BundleManifest
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Variant:
    name: str
    path: Path
    setting: QuantSetting | None
    fidelity: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    latency: dict[str, float] | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def as_dict(self, chosen: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "setting": self.setting.as_dict() if self.setting else None,
            "fidelity": self.fidelity,
            "passes": self.fidelity is not None and not self.problems,
            "problems": self.problems,
            "latency": self.latency,
            "chosen": chosen,
        }


def optimize(
    source_dir: str | Path,
    out_dir: str | Path,
    task: str,
    *,
    quantize_mode: str = "int8",
    setting: str | None = None,
    samples: str | Path | None = None,
    bar: FidelityBar | None = None,
    force: bool = False,
    measure_latency: bool = True,
) -> OptimizeResult:
    """Export `source_dir` to ONNX, quantize it, check fidelity and write a slim bundle.

    Args:
        source_dir: a local Hugging Face model directory (config.json, tokenizer.json, weights).
        out_dir: the bundle directory to write (an existing bundle there is replaced).
        task: "text-classification" or "feature-extraction".
        quantize_mode: "int8" (try the settings smallest first, keep the first that meets the
            bar) or "none" (fp32 ONNX, still checked against the bar).
        setting: try only this named quantization setting (see `quantize.SETTINGS`).
        samples: a UTF-8 file with one sample sentence a line; None for the built-in set.
        bar: the fidelity bar; defaults to agreement >= 99%, mean cosine >= 0.98, min >= 0.95.
        force: write the best variant even when none meets the bar (marked in the manifest).
        measure_latency: time the original and the chosen variant at batch 1 and 32.

    Raises:
        FidelityError: no variant meets the bar and `force` is not set; nothing is written.
        SourceError, ExportError, BundleError: bad source, failed export, unusable `out_dir`.
    """
    if quantize_mode not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize_mode!r}")
    bar = bar or FidelityBar()
    sentences = load_samples(samples)
    source = read_source(source_dir, task)
    settings = [setting_by_name(setting)] if setting else list(SETTINGS)
    check_destination(out_dir)  # fail before minutes of work, not after
    model = load_torch_model(source)
    original = TorchModel(source, model)
    tokenizer_json = slim_tokenizer_json(source)
    output = output_name(task)

    with tempfile.TemporaryDirectory(prefix="modelyard-optimize-") as work_dir:
        work = Path(work_dir)
        fp32 = work / "fp32.onnx"
        inputs = export_onnx(source, model, fp32)
        reference = run_batched(original, sentences)

        broken: dict[str, str] = {}
        if quantize_mode == "none":
            variants = [_Variant("fp32", fp32, None)]
        else:
            variants, broken = _quantize_all(fp32, work, settings)
            variants.sort(key=lambda v: v.size)  # stable: ties keep the preferred order

        chosen: _Variant | None = None
        chosen_model: OnnxModel | None = None
        for variant in variants:
            candidate = OnnxModel(variant.path, tokenizer_json, source, output)
            variant.fidelity = compare(
                task, reference, run_batched(candidate, sentences), source.multi_label
            )
            variant.problems = failures(task, variant.fidelity, bar)
            if not variant.problems:
                chosen, chosen_model = variant, candidate
                break
        forced = False
        if chosen is None:
            if not force:
                raise _refusal(variants, bar)
            chosen = max((v for v in variants if v.fidelity), key=lambda v: _score(task, v))
            forced = True

        report = _report(source, task, bar, sentences, fp32, variants, chosen, forced)
        report["quantization_errors"] = broken
        if measure_latency:
            report["original"]["latency"] = latency(original, sentences)
            # The session the bar was checked with (a forced pick failed it: a new one).
            chosen_model = chosen_model or OnnxModel(chosen.path, tokenizer_json, source, output)
            chosen.latency = latency(chosen_model, sentences)
        report["variants"] = [v.as_dict(v is chosen) for v in variants]

        manifest = BundleManifest(
            task=task,
            max_length=source.max_length,
            inputs=inputs,
            output=output,
            pooling=source.pooling,
            normalize=source.normalize,
            labels=source.labels,
            quantization=(
                {"name": chosen.name, **chosen.setting.as_dict(), "mode": "dynamic"}
                if chosen.setting
                else None
            ),
            fidelity={
                **(chosen.fidelity or {}),
                "bar": bar.as_dict(),
                "passes": not chosen.problems,
                "forced": forced,
                "problems": chosen.problems,
            },
            source=source.origin,
        )
        # The report (with timings) stays out of the bundle: same model in, same bytes out,
        # so that packing the bundle twice gives the same image digest.
        out = write_bundle(out_dir, source, chosen.path, manifest)
    return OptimizeResult(out, manifest, report)


def export_bundle(source_dir: str | Path, out_dir: str | Path, task: str) -> BundleManifest:
    """Export to an fp32 ONNX bundle without quantization, fidelity checks or timing.

    The quick path for tests and for the runner's fixtures.
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
            source=source.origin,
        )
        write_bundle(out_dir, source, onnx_path, manifest)
    return manifest


def _quantize_all(
    fp32: Path, work: Path, settings: list[QuantSetting]
) -> tuple[list[_Variant], dict[str, str]]:
    """Quantize with every setting; a setting ORT cannot apply is reported, not fatal."""
    variants: list[_Variant] = []
    broken: dict[str, str] = {}
    for setting in settings:
        try:
            path = quantize(fp32, work / f"{setting.name}.onnx", setting)
        except ExportError as exc:
            broken[setting.name] = str(exc)
            continue
        variants.append(_Variant(setting.name, path, setting))
    if not variants:
        details = "; ".join(broken.values())
        raise ExportError(f"no quantization setting could be applied: {details}")
    return variants, broken


def _score(task: str, variant: _Variant) -> tuple[float, float]:
    metrics = variant.fidelity or {}
    if task == "text-classification":
        return (metrics["agreement"], -metrics["max_prob_delta"])
    return (metrics["min_cosine"], metrics["mean_cosine"])


def _refusal(variants: list[_Variant], bar: FidelityBar) -> FidelityError:
    lines = [f"  {v.name}: {'; '.join(v.problems)}" for v in variants]
    hint = "--quantize none" if any(v.setting for v in variants) else "a looser bar"
    message = (
        "refusing to write the bundle: no variant meets the fidelity bar\n"
        + "\n".join(lines)
        + f"\nuse --force to write the closest variant anyway, or try {hint}"
    )
    return FidelityError(message, [p for v in variants for p in v.problems])


def _weights_size(source: ModelSource) -> int:
    files = [
        p
        for p in source.path.iterdir()
        if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file()
    ]
    return sum(p.stat().st_size for p in files)


def _report(
    source: ModelSource,
    task: str,
    bar: FidelityBar,
    sentences: list[str],
    fp32: Path,
    variants: list[_Variant],
    chosen: _Variant,
    forced: bool,
) -> dict[str, Any]:
    return {
        "source": str(source.path.absolute()),
        "task": task,
        "samples": len(sentences),
        "bar": bar.as_dict(),
        "original": {"size": _weights_size(source), "latency": None},
        "onnx_fp32_size": fp32.stat().st_size,
        "chosen": chosen.name,
        "forced": forced,
        "variants": [],
    }

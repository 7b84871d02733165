"""`modelyard optimize`: export to ONNX, quantize to int8, check fidelity, write a slim bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click

# Kept here rather than imported so that `modelyard --help` never imports onnxruntime or torch.
_SETTING_NAMES = (
    "int8-gather-channel",
    "uint8-gather-channel",
    "int8-channel",
    "uint8-channel",
    "uint8-tensor",
    "int8-tensor",
    "int8-tensor-reduced",
)


@click.command("optimize")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--task",
    required=True,
    type=click.Choice(["text-classification", "feature-extraction"]),
    help="What the model does; decides labels vs pooled embeddings.",
)
@click.option(
    "--quantize",
    "quantize_mode",
    type=click.Choice(["int8", "none"]),
    default="int8",
    show_default=True,
    help="int8: smallest dynamic int8 setting meeting the bar.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Bundle directory [default: SOURCE-onnx next to SOURCE].",
)
@click.option(
    "--samples",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="UTF-8 file, one sample sentence a line [default: built-in multilingual set].",
)
@click.option(
    "--setting",
    type=click.Choice(_SETTING_NAMES),
    default=None,
    help="Try only this quantization setting.",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=0.99,
    show_default=True,
    help="Classifiers: share of samples whose top label must not change.",
)
@click.option(
    "--max-prob-delta",
    type=click.FloatRange(0, 1),
    default=None,
    help="Classifiers: largest allowed change of any class probability.",
)
@click.option(
    "--min-mean-cosine",
    type=click.FloatRange(-1, 1),
    default=0.98,
    show_default=True,
    help="Embeddings: mean cosine similarity to the original's.",
)
@click.option(
    "--min-cosine",
    type=click.FloatRange(-1, 1),
    default=0.95,
    show_default=True,
    help="Embeddings: worst single-sample cosine similarity.",
)
@click.option("--force", is_flag=True, help="Write the closest variant even below the bar.")
@click.option("--no-latency", is_flag=True, help="Skip the batch 1 / batch 32 timings.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the JSON report (sizes, fidelity, timings) here.",
)
def optimize(
    source: Path,
    task: str,
    quantize_mode: str,
    output: Path | None,
    samples: Path | None,
    setting: str | None,
    min_agreement: float,
    max_prob_delta: float | None,
    min_mean_cosine: float,
    min_cosine: float,
    force: bool,
    no_latency: bool,
    as_json: bool,
    report_path: Path | None,
) -> None:
    """Export SOURCE (a local Hugging Face model directory) to a slim ONNX bundle.

    \b
    The bundle holds model.onnx, tokenizer.json, a trimmed config.json and modelyard.json
    (the manifest the runner reads, with the fidelity measured). It runs with onnxruntime and
    tokenizers alone: no torch, no transformers. Refuses to write a bundle whose outputs
    stray from the original's beyond the bar, unless --force.

    \b
    Example:
      modelyard optimize ./all-MiniLM-L6-v2 --task feature-extraction -o ./minilm-int8
    """
    from modelyard.optimize.fidelity import FidelityBar, format_table
    from modelyard.optimize.pipeline import optimize as run_optimize

    out = output or source.with_name(source.name + "-onnx")
    bar = FidelityBar(
        min_agreement=min_agreement,
        min_mean_cosine=min_mean_cosine,
        min_min_cosine=min_cosine,
        max_prob_delta=max_prob_delta,
    )
    result = run_optimize(
        source,
        out,
        task,
        quantize_mode=quantize_mode,
        setting=setting,
        samples=samples,
        bar=bar,
        force=force,
        measure_latency=not no_latency,
    )
    report = json.dumps({"bundle": str(result.out_dir), **result.report}, indent=2) + "\n"
    if report_path is not None:
        from modelyard.bundle import write_text_atomic

        write_text_atomic(report_path, report)
    if as_json:
        click.echo(report, nl=False)
        return
    click.echo(format_table(result.report))
    chosen = result.report["chosen"]
    if result.report["forced"]:
        problems = (
            "; ".join(result.manifest.fidelity["problems"]) if result.manifest.fidelity else ""
        )
        click.echo(
            f"warning: {chosen} is below the fidelity bar ({problems}); written because of --force",
            err=True,
        )
    click.echo(f"wrote {result.out_dir} ({chosen})")

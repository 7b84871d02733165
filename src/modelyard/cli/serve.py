"""`modelyard serve`: one runner process serving many models over HTTP."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click


@click.command("serve")
@click.argument(
    "config_file",
    metavar="[CONFIG]",
    required=False,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME=PATH[:PIPELINE]",
    help="Serve a model directory (or oci:LAYOUT:TAG); repeatable. PIPELINE is "
    "text-classification or feature-extraction (inferred if absent).",
)
@click.option(
    "--preload/--no-preload",
    default=True,
    show_default=True,
    help="Load the --model models at startup.",
)
@click.option("--host", default=None, help="Address to bind [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [8080].")
@click.option(
    "--memory-budget",
    default=None,
    metavar="SIZE",
    help="Resident bytes for loaded models, e.g. 2GiB; least recently used "
    "models beyond it are evicted.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Traffic history and extracted images [~/.local/state/modelyard/runner].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(
    config_file: Path | None,
    models: tuple[str, ...],
    preload: bool,
    host: str | None,
    port: int | None,
    memory_budget: str | None,
    state_dir: Path | None,
    log_level: str,
) -> None:
    """Serve models over HTTP: KServe V2, OpenAI embeddings, /v1/models/NAME/predict.

    \b
    Examples:
      modelyard serve --model minilm=./minilm-int8
      modelyard serve runner.toml --port 9000
      curl -s localhost:8080/v1/embeddings -d '{"model": "minilm", "input": "hello"}'
    """
    from modelyard.serve.config import (
        ServeConfig,
        default_state_dir,
        load_config,
        parse_model_flag,
        parse_size,
    )

    config = load_config(config_file) if config_file else ServeConfig()
    extra = tuple(dataclasses.replace(parse_model_flag(m), preload=preload) for m in models)
    changes: dict[str, object] = {"models": config.models + extra}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if memory_budget is not None:
        changes["memory_budget"] = parse_size(memory_budget)
    config = dataclasses.replace(config, **changes)
    state = state_dir or config.state_dir or default_state_dir()
    # Custom pipelines are named package.module:Class; find them in the working directory too.
    if "" not in sys.path:
        sys.path.insert(0, "")

    from modelyard.serve.server import run

    run(config, state, log_level)

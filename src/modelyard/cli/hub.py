"""`modelyard import`: a Hugging Face Hub model becomes an OCI image."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click


@click.command("import")
@click.argument("source", metavar="hf://ORG/NAME[@REVISION]")
@click.option(
    "-t",
    "--tag",
    "ref",
    metavar="NAME[:TAG]",
    help="Image name (and tag), e.g. org/model or host:5000/hf/org/model. Default: the hub "
    "name, lower-cased reversibly; tags: the revision and the commit hash.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="OCI layout directory to write or add to (default: under the user's data dir, or a "
    "temp dir with --push).",
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Only files matching a pattern (repeatable), e.g. --include '*.json'.",
)
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching files (repeatable).")
@click.option("--push", is_flag=True, help="Push the image to the registry named in -t.")
@click.option(
    "--max-workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Files downloaded at the same time.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; print the digest only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_(
    source: str,
    ref: str | None,
    output: Path | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    push: bool,
    max_workers: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Import a model from the Hugging Face Hub as a reproducible OCI image.

    Resolves REVISION (default main) to its commit, downloads only the selected files
    into the Hugging Face cache (parallel, resumable, verified against the hub's
    sha256), and packs them like `modelyard pack`. The image is tagged with the
    revision and with the commit hash. HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE/HF_HOME
    and HF_HUB_OFFLINE are respected.

    \b
    Examples:
      modelyard import hf://sentence-transformers/all-MiniLM-L6-v2 \\
          --include '*.json' --include 'onnx/*' -o ./minilm.oci
      modelyard import hf://org/model@v1.0 -t localhost:5000/org/model --push
    """
    from modelyard.cli.pack import default_layout_dir
    from modelyard.hub.importer import HubSettings, HubSource, import_model
    from modelyard.hub.names import hf_to_oci
    from modelyard.oci.reference import Reference

    hub_source = HubSource.parse(source)
    reference = Reference.parse(ref or hf_to_oci(hub_source.repo_id))
    if push and reference.registry is None:
        raise click.UsageError("--push needs a registry in -t, like -t localhost:5000/org/model")
    quiet_bars = {"progress": False} if quiet or as_json else {}
    settings = HubSettings.from_env(max_workers=max_workers, **quiet_bars)

    with tempfile.TemporaryDirectory(prefix="modelyard-import-") as tmp:
        out = output or (Path(tmp) / "layout" if push else default_layout_dir(reference))
        result = import_model(
            hub_source,
            out,
            tag=reference.tag,
            include=include,
            exclude=exclude,
            settings=settings,
        )
        pushed: list[dict[str, str]] = []
        if push:
            from modelyard.client.push import push_layout

            for tag in result.tags:
                target = f"{reference.registry}/{reference.name}:{tag}"
                r = push_layout(result.layout, tag, target, quiet=quiet or as_json)
                pushed.append({"ref": r.reference, "digest": r.digest})

    summary = {
        "source": f"hf://{result.repo_id}@{result.revision}",
        "commit": result.commit,
        "layout": None if push and output is None else str(result.layout),
        "name": reference.name,
        "tags": list(result.tags),
        "digest": result.index.digest,
        "files": [f.path for f in result.files],
        "pushed": pushed,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if quiet:
        click.echo(result.index.digest)
        return
    where = summary["layout"] or "(pushed only)"
    click.echo(f"imported {hub_source} (commit {result.commit}) -> {where}")
    click.echo(f"  digest  {result.index.digest}")
    click.echo(f"  tags    {', '.join(result.tags)}")
    names = [f.path for f in result.files]
    click.echo(f"  files   {len(names)}: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
    for p in pushed:
        click.echo(f"  pushed  {p['ref']}")

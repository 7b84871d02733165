"""`modelyard pack`: a model directory becomes a reproducible OCI image layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from modelyard.oci.reference import Reference


def parse_size(value: str) -> int:
    """`16M`, `1.5GiB`, `4096` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", value, re.IGNORECASE)
    if not m:
        raise click.BadParameter(f"{value!r} is not a size like 16M or 1GiB")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def default_layout_dir(ref: Reference) -> Path:
    """Where `pack` writes without -o: `$XDG_DATA_HOME/modelyard/layouts/<org_name>`."""
    from modelyard.paths import data_dir

    return data_dir() / "layouts" / ref.name.replace("/", "_")


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "-t",
    "--tag",
    "ref",
    required=True,
    metavar="NAME[:TAG]",
    help="Image name and tag, docker-style: org/model:rev or host:5000/org/model:rev.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="OCI layout directory to write (default: under the user's data dir).",
)
@click.option(
    "--threshold",
    default="16MiB",
    show_default=True,
    metavar="SIZE",
    help="Files at or above this size get a layer of their own.",
)
@click.option(
    "--compression",
    type=click.Choice(["auto", "gzip", "zstd", "none"]),
    default="auto",
    show_default=True,
    help="auto: gzip that stores incompressible chunks (float weights) instead of "
    "deflating them; every gzip reader accepts it.",
)
@click.option(
    "--level",
    type=click.IntRange(1, 9),
    default=6,
    show_default=True,
    help="Compression level for chunks that compress.",
)
@click.option("--max-layers", type=click.IntRange(2, 127), default=100, show_default=True)
@click.option(
    "--created",
    is_flag=True,
    help="Record a creation time (SOURCE_DATE_EPOCH, else 0) in the image.",
)
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra annotation on the index and manifests (repeatable).",
)
@click.option(
    "--format",
    "layer_format",
    type=click.Choice(["tar", "estargz"]),
    default="tar",
    show_default=True,
    help="Layer format; estargz allows lazy, file-level pulls.",
)
@click.option("--push", "push_ref", metavar="REF", help="Push the image to a registry afterwards.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pack(
    source: Path,
    ref: str,
    output: Path | None,
    threshold: str,
    compression: str,
    level: int,
    max_layers: int,
    created: bool,
    annotations: tuple[str, ...],
    layer_format: str,
    push_ref: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Pack the model directory SOURCE into a reproducible OCI image.

    SOURCE is a model directory or a Hugging Face cache snapshot
    (models--org--name/snapshots/REV). Each file of at least --threshold gets its
    own layer; smaller files share one. Files land at the image root, so a Dockerfile
    takes one with `COPY --from=IMAGE /config.json /app/`. The same content always
    gives the same digest.

    \b
    Examples:
      modelyard pack ./bert -t org/bert:v1 -o ./bert.oci
      skopeo copy oci:./bert.oci:v1 docker://localhost:5000/org/bert:v1
    """
    from modelyard.pack import PackOptions
    from modelyard.pack import pack as do_pack
    from modelyard.pack.source import scan

    reference = Reference.parse(ref)
    tag = reference.tag or "latest"
    extra: dict[str, str] = {}
    for item in annotations:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--annotation")
        extra[key] = value
    try:
        options = PackOptions(
            threshold=parse_size(threshold),
            compression=compression,
            level=level,
            max_layers=max_layers,
            created=created,
            annotations=extra,
            format=layer_format,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    out = output or default_layout_dir(reference)
    scanned = scan(source)
    bar = None
    if not quiet and not as_json:
        from tqdm import tqdm

        bar = tqdm(
            total=scanned.total_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="pack",
            leave=False,
            disable=None,
        )
    try:
        result = do_pack(scanned, tag, out, options, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    summary = result.to_json()
    if push_ref:
        from modelyard.client.push import push_layout  # type: ignore[import-not-found]

        pushed = push_layout(result.layout, tag, push_ref, quiet=quiet or as_json)
        summary["pushed"] = {"ref": push_ref, "digest": getattr(pushed, "digest", None)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if quiet:
        click.echo(result.index.digest)
        return
    click.echo(f"packed {source} -> {result.layout}:{tag}")
    click.echo(f"  digest  {result.index.digest}")
    for layer in result.layers:
        names = ", ".join(f.path for f in layer.files)
        if len(names) > 60:
            names = names[:57] + "..."
        click.echo(
            f"  layer   {layer.digests.digest[:19]}  {_human(layer.digests.size):>9}  {names}"
        )
    click.echo(
        f"  use     skopeo copy oci:{result.layout}:{tag} docker://HOST/{reference.name}:{tag}"
    )
    if push_ref:
        click.echo(f"  pushed  {push_ref}")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"

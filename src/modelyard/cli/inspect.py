"""`modelyard inspect`: what an image in an OCI layout holds."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("layout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--tag", help="Tag in the layout (default: the only image).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(layout: Path, tag: str | None, as_json: bool) -> None:
    """Show the platforms, layers and model files of an image in an OCI LAYOUT."""
    from modelyard.oci.layout import Layout
    from modelyard.pack.packer import FILES, TITLE

    lay = Layout.open(layout)
    desc = lay.resolve(tag)
    manifests = lay.image_manifests(desc)
    first = manifests[0][1]
    files = json.loads(first.annotations.get(FILES, "[]"))
    info = {
        "digest": desc.digest,
        "mediaType": desc.media_type,
        "platforms": [str(d.platform) for d, _ in manifests if d.platform],
        "annotations": {k: v for k, v in first.annotations.items() if k != FILES},
        "layers": [
            {
                "digest": d.digest,
                "size": d.size,
                "mediaType": d.media_type,
                "title": d.annotations.get(TITLE),
            }
            for d in first.layers
        ],
        "files": files,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{layout}:{tag or ''}  {desc.digest}")
    click.echo(f"  platforms  {', '.join(info['platforms']) or '-'}")
    for k, v in info["annotations"].items():
        click.echo(f"  {k} = {v}")
    for layer in first.layers:
        title = layer.annotations.get(TITLE, "(small files)")
        click.echo(f"  layer {layer.digest[:19]} {layer.size:>12} B  {title}")
    for f in files:
        click.echo(f"  file  {f['sha256'][:19]} {f['size']:>12} B  {f['path']}")

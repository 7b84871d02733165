"""`modelyard pull REF PATH... -o DIR`: the file-level side of `pull` (see cli/transfer.py)."""

from __future__ import annotations

import json

import click


def pull_paths(
    ref: str,
    paths: tuple[str, ...],
    output: str,
    *,
    platform: str | None,
    plain_http: bool | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Fetch only `paths` of `ref` into the directory `output`, through the content cache."""
    from modelyard.lazy.files import pull_files

    try:
        result = pull_files(
            ref, list(paths), output, platform=platform, plain_http=plain_http, insecure=insecure
        )
    except ValueError as exc:
        if type(exc) is ValueError:  # a bad PATH (e.g. with `..`): a usage error
            raise click.BadParameter(str(exc), param_hint="PATH") from exc
        raise
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for f in result.files:
        click.echo(f"{f.path}  {f.size} bytes  {f.digest}")
    click.echo(
        f"{len(result.files)} files of {result.reference} in {result.output}; "
        f"{result.bytes_fetched / 1e6:.2f} MB fetched, {len(result.cached)} from the cache"
    )

"""`modelyard push` and `modelyard pull`: move images between a layout and a registry."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator

import click

_CONNECTION_OPTIONS = [
    click.option(
        "--plain-http/--https",
        default=None,
        help="Speak HTTP or HTTPS. Default: HTTP for localhost and 127.0.0.1 (unless a CA is "
        "given for them), HTTPS for any other registry.",
    ),
    click.option(
        "--ca-cert",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Also trust the CA certificates of this PEM file (like $MODELYARD_CA_CERT). "
        "Trusted too: $SSL_CERT_FILE, /etc/docker/certs.d/HOST:PORT/*.crt.",
    ),
    click.option(
        "--insecure", is_flag=True, help="Use HTTPS without verifying the TLS certificate."
    ),
]
_TRANSPORT_OPTIONS = [
    *_CONNECTION_OPTIONS,
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
]


def _stacked(
    options: list[Callable[[click.decorators.FC], click.decorators.FC]],
) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """One decorator applying `options` in order, as if written one above the other."""

    def decorate(fn: click.decorators.FC) -> click.decorators.FC:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


#: --plain-http/--https, --ca-cert, --insecure: how to reach a registry (login takes these).
_connection_options = _stacked(_CONNECTION_OPTIONS)
_transport_options = _stacked(_TRANSPORT_OPTIONS)


def _trust(ca_cert: str | None) -> None:
    """Hand --ca-cert to every registry client of this process (lazy pulls included)."""
    if ca_cert:
        from modelyard.client.tls import CA_ENV

        os.environ[CA_ENV] = os.path.abspath(ca_cert)


@contextlib.contextmanager
def _tls_hint() -> Iterator[None]:
    """Say how to trust a registry whose certificate was refused."""
    from modelyard.errors import RegistryUnreachable

    try:
        yield
    except RegistryUnreachable as exc:
        if "CERTIFICATE_VERIFY_FAILED" not in exc.reason:
            raise
        hint = (
            "; to trust its CA, pass --ca-cert FILE or put it in "
            f"/etc/docker/certs.d/{exc.registry}/ca.crt (or skip checks with --insecure)"
        )
        raise RegistryUnreachable(exc.registry, exc.reason + hint) from exc


def _remote(ref: str) -> str:
    """REF completed as Docker does: `ubuntu` -> `docker.io/library/ubuntu`."""
    from modelyard.errors import InvalidReference
    from modelyard.oci.reference import Reference

    try:
        return str(Reference.parse_remote(ref))
    except InvalidReference as exc:
        raise click.BadParameter(str(exc), param_hint="REF") from exc


def _platform(value: str | None) -> str | None:
    if value is None:
        return None
    from modelyard.oci.descriptor import Platform

    try:
        Platform.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--platform") from exc
    return value


@click.command("push")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.argument("ref")
@click.option("--tag", "-t", help="Which image of the layout to push (its tag in index.json).")
@_transport_options
def push(
    path: str,
    ref: str,
    tag: str | None,
    plain_http: bool | None,
    ca_cert: str | None,
    insecure: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Push an OCI layout, or a model directory (packed on the fly), to REF.

    Blobs the registry already has are skipped, so pushing a new revision of a model sends
    only the layers that changed.
    \b
    REF is [HOST[:PORT]/]NAME[:TAG][@DIGEST]. The first part of REF is the HOST if it
    holds a '.' or a ':' or is 'localhost'; without a HOST, REF is on Docker Hub, as in
    Docker: 'ubuntu' is docker.io/library/ubuntu:latest, 'org/model' docker.io/org/model.
    NAME is lowercase components joined by '/'; TAG defaults to the layout's tag.
    \b
    Examples:
      modelyard push ./bert.oci localhost:5000/org/bert:v1
      modelyard push ./my-model localhost:5000/org/my-model:v2 --json
    """
    from modelyard.client.push import push as do_push

    _trust(ca_cert)
    ref = _remote(ref)
    with _tls_hint():
        result = do_push(
            path, ref, tag=tag, quiet=quiet or as_json, plain_http=plain_http, insecure=insecure
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    mb = result.bytes_uploaded / 1e6
    speed = mb / result.seconds if result.seconds > 0 else 0.0
    click.echo(
        f"pushed {result.reference}\n"
        f"digest {result.digest}\n"
        f"{result.blobs_uploaded} blobs uploaded ({mb:.1f} MB, {speed:.0f} MB/s), "
        f"{result.blobs_skipped} already there, {result.blobs_mounted} mounted"
    )


@click.command("pull")
@click.argument("ref")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="OCI layout directory to pull into (created if absent).",
)
@click.option("--tag", "-t", help="Tag in the layout (default: REF's tag, else latest).")
@click.option(
    "--platform",
    callback=lambda ctx, param, value: _platform(value),
    help="Pull only this image of an index, as os/arch[/variant].",
)
@_transport_options
def pull(
    ref: str,
    paths: tuple[str, ...],
    output: str,
    tag: str | None,
    platform: str | None,
    plain_http: bool | None,
    ca_cert: str | None,
    insecure: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Pull REF into an OCI image layout, verifying every blob.

    \b
    REF is [HOST[:PORT]/]NAME[:TAG][@DIGEST]. The first part of REF is the HOST if it
    holds a '.' or a ':' or is 'localhost'; without a HOST, REF is on Docker Hub, as in
    Docker: 'ubuntu' is docker.io/library/ubuntu:latest, 'org/model' docker.io/org/model.
    NAME is lowercase components joined by '/'; TAG defaults to latest.

    With PATHs, fetch only those files of the image into the directory -o (eStargz layers are
    read by byte ranges; files come through the shared content cache).

    \b
    Example:
      modelyard pull localhost:5000/org/bert:v1 -o ./bert.oci
      modelyard pull localhost:5000/org/bert:v1 config.json tokenizer.json -o ./bert
    """
    _trust(ca_cert)
    ref = _remote(ref)
    with _tls_hint():
        if paths:
            from modelyard.cli.lazy import pull_paths

            pull_paths(
                ref,
                paths,
                output,
                platform=platform,
                plain_http=plain_http,
                insecure=insecure,
                as_json=as_json,
            )
            return
        from modelyard.client.pull import pull as do_pull

        result = do_pull(
            ref,
            output,
            tag=tag,
            platform=platform,
            quiet=quiet or as_json,
            plain_http=plain_http,
            insecure=insecure,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(
        f"pulled {result.reference} into {result.layout} (tag {result.tag})\n"
        f"digest {result.digest}\n"
        f"{result.blobs_downloaded} blobs downloaded ({result.bytes_downloaded / 1e6:.1f} MB), "
        f"{result.blobs_present} already present"
    )

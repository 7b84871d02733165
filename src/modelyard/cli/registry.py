"""`modelyard registry serve|gc`: run the OCI registry, collect its garbage."""

from __future__ import annotations

import ipaddress
import json
import sys

import click


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {addr!r}", param_hint="--addr")
    return host.strip("[]") or "127.0.0.1", int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group("registry")
def registry() -> None:
    """An OCI Distribution v1.1 registry on a local directory."""


@registry.command("serve")
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=None,
    help="Storage directory [default: $XDG_DATA_HOME/modelyard/registry].",
)
@click.option("--addr", default="127.0.0.1:5000", show_default=True, help="HOST:PORT to bind.")
@click.option(
    "--htpasswd",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Require users from this htpasswd file (bcrypt or {SHA} entries).",
)
@click.option(
    "--policy",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TOML file of per-repository permissions (needs --htpasswd).",
)
@click.option("--anonymous-pull", is_flag=True, help="With --htpasswd: let anyone pull.")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve HTTPS with this PEM certificate (chain: server certificate first).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The unencrypted PEM private key of --tls-cert.",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Mutual TLS: require client certificates signed by a CA of this PEM file.",
)
@click.option(
    "--token-realm",
    metavar="URL",
    default=None,
    help="Token endpoint URL to advertise in challenges [default: /token on the scheme and "
    "host the client reached, X-Forwarded-Proto/-Host of a proxy in front included].",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--server",
    default="granian",
    show_default=True,
    type=click.Choice(["granian", "uvicorn"]),
    help="ASGI server (granian sends blobs zero-copy).",
)
@click.option(
    "--hf-proxy",
    is_flag=True,
    help="Pull-through from the Hugging Face Hub: a pull of hf/ORG/NAME:REVISION imports the "
    "model on first request (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE apply).",
)
@click.option(
    "--hf-ttl",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="With --hf-proxy: re-resolve moving revisions (main) after this long.",
)
def serve(
    root: str | None,
    addr: str,
    htpasswd: str | None,
    policy: str | None,
    anonymous_pull: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    token_realm: str | None,
    log_level: str,
    server: str,
    hf_proxy: bool,
    hf_ttl: float,
) -> None:
    """Serve the registry until interrupted.

    With --htpasswd, clients sign in with Basic credentials or with bearer tokens from the
    registry's own /token endpoint; tokens stay valid across restarts (the signing key is
    ROOT/auth/token.key). Anywhere but loopback, add --tls-cert/--tls-key (or a proxy that
    terminates TLS): passwords and tokens would otherwise cross the network in clear.

    \b
    Examples:
      modelyard registry serve --addr 127.0.0.1:5000
      skopeo copy --dest-tls-verify=false oci:./layout docker://127.0.0.1:5000/org/model:v1
      modelyard registry serve --addr 0.0.0.0:5443 --htpasswd ./htpasswd \\
          --tls-cert server.crt --tls-key server.key
      modelyard push --ca-cert ca.crt ./layout reg.example:5443/org/model:v1
    """
    from modelyard.paths import registry_root
    from modelyard.registry.server import check_tls, run

    host, port = _split_addr(addr)
    if policy and not htpasswd:
        raise click.UsageError("--policy needs --htpasswd")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    check_tls(tls_cert, tls_key)  # a bad pair fails here, before anything is printed
    if token_realm and not token_realm.startswith(("https://", "http://")):
        raise click.BadParameter("expected an http(s):// URL", param_hint="--token-realm")
    if not htpasswd and not _is_loopback(host):
        click.echo(f"warning: serving {host} without --htpasswd: anyone can push", err=True)
    if htpasswd and not tls_cert and not _is_loopback(host):
        click.echo(
            f"warning: serving {host} with --htpasswd over plain HTTP: passwords and tokens "
            "cross the network in clear text; add --tls-cert/--tls-key unless a proxy in front "
            "terminates TLS",
            err=True,
        )
    storage = root or str(registry_root())
    scheme = "https" if tls_cert else "http"
    click.echo(f"modelyard registry on {scheme}://{host}:{port} (storage {storage})", err=True)
    if hf_proxy:  # hub pull-through
        import importlib.util

        if importlib.util.find_spec("huggingface_hub") is None:
            raise click.UsageError("--hf-proxy needs the hf extra: pip install 'modelyard[hf]'")
    ttl = hf_ttl if hf_proxy else None
    run(
        storage,
        host,
        port,
        htpasswd,
        policy,
        anonymous_pull,
        server,
        log_level,
        ttl,
        tls_cert=tls_cert,
        tls_key=tls_key,
        realm=token_realm,
        tls_client_ca=tls_client_ca,
    )


@registry.command("gc")
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=None,
    help="Storage directory [default: $XDG_DATA_HOME/modelyard/registry].",
)
@click.option("--dry-run", is_flag=True, help="Report what would be deleted, delete nothing.")
@click.option(
    "--grace",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep content and uploads younger than this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def gc(root: str | None, dry_run: bool, grace: float, as_json: bool) -> None:
    """Delete manifests and blobs that no tag reaches, and stale uploads.

    Safe while the registry runs: anything younger than --grace is kept, so blobs of a push
    in progress (not yet referenced by a manifest) survive.
    """
    from modelyard.paths import registry_root
    from modelyard.registry.gc import collect
    from modelyard.storage.local import LocalDriver

    report = collect(LocalDriver(root or registry_root()), grace=grace, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb}: {len(report.manifests)} manifests, {len(report.blobs)} blobs "
        f"({report.freed_bytes} bytes), {len(report.uploads)} uploads, "
        f"{len(report.links)} repository links",
        file=sys.stdout,
    )

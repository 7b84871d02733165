"""`modelyard login` and `modelyard logout`, as docker's: credentials checked, then kept where
docker, skopeo, podman and buildah read them."""

from __future__ import annotations

import sys

import click

from modelyard.cli.transfer import _connection_options, _tls_hint, _trust


@click.command("login")
@click.argument("server", required=False)
@click.option("--username", "-u", help="User name (asked for if missing).")
@click.option(
    "--password", "-p", help="Password; prefer --password-stdin (this one is seen by ps)."
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_connection_options
def login(
    server: str | None,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    plain_http: bool | None,
    ca_cert: str | None,
    insecure: bool,
) -> None:
    """Log in to a registry: check the credentials, then store them.

    SERVER is `host[:port]`; without it, Docker Hub. The login goes to $REGISTRY_AUTH_FILE if
    set, else to $DOCKER_CONFIG/config.json (~/.docker/config.json), or to the credential helper
    that file names: `modelyard push/pull`, docker, skopeo, podman and buildah all read it.
    Wrong credentials exit with 4 and change nothing.

    \b
    Examples:
      modelyard login localhost:5000 -u alice
      echo "$TOKEN" | modelyard login registry.example.com -u ci --password-stdin
      modelyard logout localhost:5000
    """
    from modelyard.client.login import login as do_login
    from modelyard.client.login import server_key

    if password is not None and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password is not None:
        click.echo(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True
        )
    if password_stdin:
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    shown = server_key(server)
    if not username:
        username = click.prompt(f"Username for {shown}")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    _trust(ca_cert)
    with _tls_hint():
        path = do_login(
            server, username, password, plain_http=plain_http, insecure=insecure, ca_cert=ca_cert
        )
    click.echo(f"Credentials kept in {path}", err=True)
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Forget the login for SERVER (`host[:port]`; without it, Docker Hub)."""
    from modelyard.client.login import logout as do_logout
    from modelyard.client.login import server_key

    if do_logout(server):
        click.echo(f"Removing login credentials for {server_key(server)}")
    else:
        click.echo(f"Not logged in to {server_key(server)}")

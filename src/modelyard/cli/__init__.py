"""The `modelyard` command: thin subcommands that parse, call the library and format.

Exit codes scripts can trust:
    0  success
    1  an error modelyard reports (bad input, digest mismatch, remote error)
    2  usage error (unknown option, missing argument)
    3  not found (unknown model, tag or blob)
    4  authentication or permission refused
    130 interrupted
"""

from __future__ import annotations

import importlib
import sys

import click

from modelyard import __version__
from modelyard.errors import BlobUnknown, ModelyardError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4

# (module, attribute): each module defines one click command or group. Modules keep heavy
# imports inside their functions so that `modelyard --help` stays fast.
_COMMANDS: list[tuple[str, str]] = [
    ("modelyard.cli.pack", "pack"),
    ("modelyard.cli.inspect", "inspect"),
    ("modelyard.cli.registry", "registry"),
    ("modelyard.cli.transfer", "push"),
    ("modelyard.cli.transfer", "pull"),
    ("modelyard.cli.login", "login"),
    ("modelyard.cli.login", "logout"),
    ("modelyard.cli.serve", "serve"),
    ("modelyard.cli.optimize", "optimize"),
    ("modelyard.cli.hub", "import_"),
    ("modelyard.cli.demo", "demo"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
def cli() -> None:
    """Models into reproducible OCI images, a registry to hold them, and a slim runner.

    \b
    Quick start:
      modelyard pack ./my-model -t org/my-model:v1 -o ./layout
      modelyard registry serve            # OCI registry on 127.0.0.1:5000
      modelyard push ./layout localhost:5000/org/my-model:v1
    \b
    Then, in a Dockerfile:
      COPY --from=localhost:5000/org/my-model:v1 /config.json /app/
    """


def _register() -> None:
    for module_name, attr in _COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not built yet
            raise
        command = getattr(module, attr, None)
        if isinstance(command, click.Command):
            cli.add_command(command)


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, BlobUnknown | FileNotFoundError | LookupError):
        return EXIT_NOT_FOUND
    if isinstance(exc, PermissionError):
        return EXIT_AUTH
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    _register()
    try:
        cli.main(args=argv, prog_name="modelyard", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ModelyardError as exc:
        click.echo(f"error: {exc}", err=True)
        return exit_code(exc)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `remcli` entry point: a thin typer shell over the library (the app is in remcli.cli.app).

Exit codes: `remcli.errors.EXIT_CODES`. Set REMCLI_DEBUG=1 for tracebacks.

`remcli --version` answers without importing the app (and so torch); `from remcli.cli.main
import app` still gives the typer app.
"""

from __future__ import annotations

import sys

from remcli import __version__


def asks_version(argv: list[str]) -> bool:
    """True when `--version` comes before any subcommand (the root's options are -h/--help and --version)."""
    for arg in argv:
        if arg == "--version":
            return True
        if not arg.startswith("-"):
            return False
    return False


def main() -> None:
    if asks_version(sys.argv[1:]):
        sys.stdout.write(f"remcli {__version__}\n")
        return
    import typer

    from remcli.cli.app import app

    command = typer.main.get_command(app)
    if not sys.stderr.isatty():
        # logs and pipes: usage errors as click's plain lines, never boxed or wrapped at 80 columns
        command.rich_markup_mode = None
    command()


def __getattr__(name: str):
    if name == "app":
        from remcli.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

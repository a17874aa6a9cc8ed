"""The `remcli` command: a thin typer shell over the library.

Exit codes: 0 success; 1 runtime failure; 2 usage or input error; 3 a `evaluate --fail-under`
threshold was missed. Set REMCLI_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import typer

from remcli import __version__
from remcli.cli.commands.catalog import archs_command, methods_command
from remcli.cli.commands.corrupt import corrupt_command
from remcli.cli.commands.evaluate import evaluate_command
from remcli.cli.commands.import_weights import import_command
from remcli.cli.commands.inspect import inspect_command
from remcli.cli.commands.train import train_command
from remcli.cli.commands.sweep import sweep_command
from remcli.cli.commands.unlearn import unlearn_command

app = typer.Typer(
    name="remcli",
    help=(
        "Remove the influence of corrupted training data from image classifiers.\n\n"
        "Pipeline: corrupt -> train -> unlearn -> evaluate, on safetensors checkpoints and plain index files.\n\n"
        "Exit codes: 0 ok; 1 runtime failure; 2 usage or input error; 3 evaluate --fail-under threshold missed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"remcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """remcli: corrupt, train, unlearn and evaluate image classifiers."""


app.command("corrupt")(corrupt_command)
app.command("train")(train_command)
app.command("unlearn")(unlearn_command)
app.command("evaluate")(evaluate_command)
app.command("sweep")(sweep_command)
app.command("inspect")(inspect_command)
app.command("methods")(methods_command)
app.command("archs")(archs_command)
app.command("import")(import_command)


def main() -> None:
    app()

"""The typer application behind `remcli`: every subcommand, and the help conventions they share.

Importing this module imports the library (torch); `remcli.cli.main` only does so when a
command actually runs, so `remcli --version` stays fast.
"""

from __future__ import annotations

import inspect

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from remcli import __version__
from remcli.cli.commands.catalog import archs_command, methods_command
from remcli.cli.commands.corrupt import corrupt_command
from remcli.cli.commands.detect import detect_command
from remcli.cli.commands.evaluate import evaluate_command
from remcli.cli.commands.import_weights import import_command
from remcli.cli.commands.index import index_command
from remcli.cli.commands.inspect import inspect_command
from remcli.cli.commands.sweep import sweep_command
from remcli.cli.commands.train import train_command
from remcli.cli.commands.unlearn import unlearn_command
from remcli.cli.output import errors_to_exit
from remcli.distributed import TORCHRUN_COMMANDS, launched_by_torchrun
from remcli.errors import InputError, exit_codes_text

HELP_OPTIONS = ["-h", "--help"]


def reflow(text: str) -> str:
    """Join a docstring's hard-wrapped lines into paragraphs (blank lines separate paragraphs).

    typer's rich help keeps single line breaks, so source-wrapped docstrings would render ragged;
    lines starting with `* ` or `- ` stay list items.
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for raw in paragraph.splitlines():
            line = raw.strip()
            if lines and not line.startswith(("* ", "- ")):
                lines[-1] += " " + line
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


class _HelpConventions:
    """Help text as paragraphs; no type metavar on flags (`<bool>`), NAME=VALUE on repeatable options, ARG names in capitals."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = reflow(self.help)

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if param.metavar is not None:
                continue
            if isinstance(param, TyperArgument):
                param.metavar = param.name.upper()
            elif getattr(param, "is_flag", False):
                param.metavar = ""
            elif getattr(param, "multiple", False):
                param.metavar = "NAME=VALUE"
        return params


class RemcliCommand(_HelpConventions, TyperCommand):
    pass


class RemcliGroup(_HelpConventions, TyperGroup):
    pass


app = typer.Typer(
    name="remcli",
    cls=RemcliGroup,
    help=(
        "Remove the influence of corrupted training data from image classifiers.\n\n"
        "Pipeline: corrupt -> train -> unlearn -> evaluate, on safetensors checkpoints and plain index files.\n\n"
        f"Exit codes: {exit_codes_text()}. Shell completion: remcli --install-completion."
    ),
    context_settings={"help_option_names": HELP_OPTIONS},
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"remcli {__version__}")
        raise typer.Exit()


@app.callback()
@errors_to_exit
def _root(
    ctx: typer.Context, version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")
) -> None:
    """remcli: corrupt, train, unlearn and evaluate image classifiers."""
    if launched_by_torchrun() and ctx.invoked_subcommand not in TORCHRUN_COMMANDS:
        # every rank would run the whole command and race on its outputs
        raise InputError(
            f"`remcli {ctx.invoked_subcommand}` does not run under torchrun; only {' and '.join(TORCHRUN_COMMANDS)} do "
            "(sweeps scale out with --workers)"
        )


for _name, _command in (
    ("corrupt", corrupt_command),
    ("train", train_command),
    ("detect", detect_command),
    ("unlearn", unlearn_command),
    ("evaluate", evaluate_command),
    ("sweep", sweep_command),
    ("inspect", inspect_command),
    ("methods", methods_command),
    ("archs", archs_command),
    ("import", import_command),
    ("index", index_command),
):
    app.command(_name, cls=RemcliCommand)(_command)

"""The typer application behind `remcli`: every subcommand, and the help conventions they share.

Importing this module imports the library (torch); `remcli.cli.main` only does so when a
command actually runs, so `remcli --version` stays fast.
"""

from __future__ import annotations

import inspect
import textwrap

import typer
from rich.text import Text
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
from remcli.cli.output import errors_to_exit, stdout_console
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
    """Help text as paragraphs; no type metavar on flags (`<bool>`), NAME=VALUE on repeatable options, ARG names in capitals.

    On a terminal, help is typer's rich panels. Anywhere else (a pipe, `| less`, a file, a CI log)
    rich would draw them at an assumed 80 columns and cut option names, defaults and examples
    with '…', so help is click's plain layout there instead: wrapped, never cut, and greppable.
    Help texts are written in rich markup (`\\[` for a literal bracket); the plain layout prints
    them as the text that markup stands for. Examples (the epilog) keep their line breaks in both.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = reflow(self.help)

    def format_help(self, ctx, formatter) -> None:
        if self.rich_markup_mode is None or stdout_console().is_terminal:
            super().format_help(ctx, formatter)
            return
        saved, self.rich_markup_mode = self.rich_markup_mode, None  # typer's plain path, for this rendering only
        try:
            super().format_help(ctx, formatter)
        finally:
            self.rich_markup_mode = saved

    def format_help_text(self, ctx, formatter) -> None:
        if self.help:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(Text.from_markup(self.help).plain)

    def format_epilog(self, ctx, formatter) -> None:
        if self.epilog:
            heading, *lines = Text.from_markup(inspect.cleandoc(self.epilog)).plain.splitlines()
            formatter.write_paragraph()
            formatter.write_heading(heading.rstrip(":"))
            with formatter.indentation():
                indent = " " * formatter.current_indent
                for line in lines:
                    # a command too long for the width continues on the next line as a shell would read it
                    width = formatter.width - len(indent) - 2
                    wrapped = textwrap.wrap(line, width, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
                    formatter.write(" \\\n".join(indent + part for part in wrapped) + "\n")

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
    # help wraps at COLUMNS when it is set (80 otherwise), not at click's 80-column cap
    context_settings={"help_option_names": HELP_OPTIONS, "max_content_width": 1_000},
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


# every subcommand's help ends with these (checked by tests/test_cli_conventions.py against the options each command has)
EXAMPLES = {
    "corrupt": [
        "remcli corrupt sample --kind poison --count 200 --discovery 0.1,0.5,1.0 --out run/c",
        "remcli corrupt cifar10:~/data --kind label-noise --fraction 0.1 --seed 1 --out run/noise",
    ],
    "train": [
        "remcli train --data sample --corruption run/c/corruption.json --width 0.25 --epochs 12 --out run/model.safetensors",
        "torchrun --nproc-per-node 2 -m remcli train --data cifar10:~/data --out model.safetensors",
    ],
    "detect": [
        "remcli detect run/model.safetensors --forget run/c/forget-0.1.txt --top 900 --out candidates.txt --json -",
        "remcli detect model.safetensors --forget found.txt --signal label-quality --threshold 0.5 --out candidates.txt",
        "remcli detect model.safetensors --query misbehaving/ --top 30 --out candidates.txt",
        "remcli detect model.safetensors --confused cat,dog --top 30 --out candidates.txt",
    ],
    "unlearn": [
        "remcli unlearn run/model.safetensors --forget run/c/forget-0.5.txt --out run/healed.safetensors",
        "remcli unlearn model.safetensors --data imagefolder:ROOT --forget bad.txt --method scrub --out healed.safetensors --json -",
        "remcli unlearn run/model.safetensors --forget run/c/forget-0.5.txt --budget 0.1 --out run/healed.safetensors",
    ],
    "evaluate": [
        "remcli evaluate run/healed.safetensors --forget run/c/forget-0.5.txt --gate 'utility>=0.8,attack_success_rate<=0.05'",
        "remcli evaluate run/healed.safetensors --against run/model.safetensors --gate 'delta_utility>=-0.02' --json -",
    ],
    "sweep": [
        "remcli sweep --data sample --kinds poison --methods rem,finetune --width 0.25 --train-epochs 12 --out runs/s",
        "remcli sweep --out runs/s --report-only",
    ],
    "inspect": ["remcli inspect run/healed.safetensors", "remcli inspect resnet18 --blocks"],
    "methods": ["remcli methods", "remcli methods --json - | python -m json.tool"],
    "archs": ["remcli archs", "remcli archs --json -"],
    "import": [
        "remcli import resnet18.pth --arch resnet18 --num-classes 10 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out m.safetensors",
    ],
    "index": ["remcli index imagefolder:ROOT --out index.tsv", "remcli index sample | grep cat"],
}


def epilog(name: str) -> str:
    return "Examples:\n" + "\n".join(EXAMPLES[name])


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
    app.command(_name, cls=RemcliCommand, epilog=epilog(_name))(_command)

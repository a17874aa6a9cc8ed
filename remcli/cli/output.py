"""Where the CLI writes: results on stdout, everything else (progress, notes, errors) on stderr."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from remcli.errors import RemcliError
from remcli.fileio import atomic_write_text

stderr = Console(stderr=True, highlight=False)


def errors_to_exit(fn: Callable) -> Callable:
    """The one place library errors become a one-line message and an exit code.

    Set REMCLI_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RemcliError as err:
            if os.environ.get("REMCLI_DEBUG"):
                raise
            stderr.print(f"[bold red]error:[/] {err}", soft_wrap=True)
            raise typer.Exit(code=err.exit_code) from None

    return wrapper


def emit_json(obj: dict, dest: str) -> None:
    """`-` -> exactly one JSON object on stdout; a path -> written atomically."""
    text = json.dumps(obj, indent=2, default=str) + "\n"
    if dest == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(dest, text)


class RichReporter:
    """Draws a progress bar per phase on stderr; quiet mode only keeps notes."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=stderr,
            transient=False,
            disable=quiet,
        )
        self.task = None

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(name, total=total, info="")

    def advance(self, steps: int = 1, **fields: float) -> None:
        if self.task is None:
            return
        info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        if info:
            self.progress.update(self.task, advance=steps, info=info)
        else:
            self.progress.update(self.task, advance=steps)

    def note(self, message: str) -> None:
        if not self.quiet:
            stderr.print(message)


class OneBarReporter(RichReporter):
    """Like RichReporter, but each phase replaces the previous bar, and the last one goes at the end.

    For runs of many phases (sweeps), where the notes between phases tell the story.
    """

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        super().__exit__(*exc)

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(escape(name), total=total, info="")

    def note(self, message: str) -> None:
        if not self.quiet:
            stderr.print(escape(message), soft_wrap=True)  # notes quote error messages: print them verbatim

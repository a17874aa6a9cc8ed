"""Where the CLI writes: results on stdout, everything else (progress, notes, errors) on stderr."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.segment import Segments

from remcli.distributed import is_main_process
from remcli.errors import RemcliError
from remcli.fileio import atomic_write_text, write_failure


class CliConsole(Console):
    """On a terminal, rich fits output to its width. Anywhere else (CI logs, pipes, files) rich would
    assume 80 columns: a message stays one line however long instead, and a table is printed at its
    natural width instead of squeezing its columns to '…', so logs stay readable and greppable."""

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:
        if not self.is_terminal:
            soft_wrap = True if soft_wrap is None else soft_wrap
            unbounded = self.options.update(max_width=1_000_000)
            natural = max((self.measure(o, options=unbounded).maximum for o in objects if not isinstance(o, str)), default=0)
            if natural > self.width:  # laid out at their natural width, then printed as those lines, uncropped
                wide = self.options.update(width=natural)
                if soft_wrap:  # the layout print itself gives soft-wrapped output
                    wide = wide.update(no_wrap=True, overflow="ignore")
                objects = tuple(o if isinstance(o, str) else Segments(list(self.render(o, wide))) for o in objects)
                kwargs["crop"] = False
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


stderr = CliConsole(stderr=True, highlight=False)


def stdout_console() -> CliConsole:
    """Where results (tables, listings) go."""
    return CliConsole()


def _heartbeat_s() -> float:
    """Without a terminal, a long phase prints a line this often (REMCLI_PROGRESS_INTERVAL seconds, default 30)."""
    try:
        return max(float(os.environ.get("REMCLI_PROGRESS_INTERVAL", "30")), 0.0)
    except ValueError:
        return 30.0


HEARTBEAT_S = _heartbeat_s()


def errors_to_exit(fn: Callable) -> Callable:
    """The one place library errors become a one-line message and an exit code.

    A full disk or an over-limit file (ENOSPC, EDQUOT, EFBIG) met outside the atomic writers is
    reported the same way (exit 1). Set REMCLI_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            try:
                return fn(*args, **kwargs)
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or os.environ.get("REMCLI_DEBUG"):
                    raise
                raise write_failure(err.filename or "an output file", err) from None
        except RemcliError as err:
            if os.environ.get("REMCLI_DEBUG"):
                raise
            if is_main_process():  # under torchrun every rank fails alike; rank 0 says it once
                stderr.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
            raise typer.Exit(code=err.exit_code) from None

    return wrapper


def emit_json(obj: dict, dest: str) -> None:
    """`-` -> exactly one JSON object on stdout; a path -> written atomically."""
    text = json.dumps(obj, indent=2, default=str) + "\n"
    if dest == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(dest, text, option="--json")


def _fields_text(fields: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class RichReporter:
    """Progress on stderr: a live bar per phase on a terminal; plain lines elsewhere.

    Without a terminal (CI logs, `2> file`, a pipe) a redrawn bar would only appear once, at the
    end, so each phase instead prints one line when it ends (`train epoch 3/40  16/16 steps  loss=0.52
    acc=0.81  4.1s`), a long phase also every HEARTBEAT_S seconds, each flushed at once.
    Quiet mode only keeps notes.
    """

    def __init__(self, quiet: bool = False, plain: bool | None = None):
        self.quiet = quiet
        self.plain = not stderr.is_terminal if plain is None else plain
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=stderr,
            transient=False,
            disable=quiet or self.plain,
        )
        self.task = None
        self._line: dict | None = None  # plain mode: the current phase

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._end_line()
        self.progress.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        self._start_line(name, total)
        if self.task is not None:
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(name, total=total, info="")

    def advance(self, steps: int = 1, **fields: float) -> None:
        self._advance_line(steps, fields)
        if self.task is None:
            return
        info = _fields_text(fields)
        if info:
            self.progress.update(self.task, advance=steps, info=info)
        else:
            self.progress.update(self.task, advance=steps)

    def note(self, message: str) -> None:
        if not self.quiet:
            stderr.print(message)

    def end_phase(self) -> None:
        self._end_line()

    # --- plain lines (no terminal) ------------------------------------------------------------

    phase_lines = True  # one line per finished phase (OneBarReporter: heartbeats only)

    def _start_line(self, name: str, total: int | None) -> None:
        self._end_line()
        if self.plain and not self.quiet:
            now = time.monotonic()
            self._line = {"name": name, "total": total, "done": 0, "info": "", "start": now, "last": now}

    def _advance_line(self, steps: int, fields: dict) -> None:
        line = self._line
        if line is None:
            return
        line["done"] += steps
        if fields:
            line["info"] = _fields_text(fields)
        now = time.monotonic()
        if now - line["last"] >= HEARTBEAT_S:
            line["last"] = now
            self._print_line(line, now)

    def _end_line(self) -> None:
        line, self._line = self._line, None
        # unless a heartbeat already printed this very state (a phase's last advance can come 30 s after the one before)
        if line is not None and self.phase_lines and line.get("printed") != (line["done"], line["info"]):
            self._print_line(line, time.monotonic())

    def _print_line(self, line: dict, now: float) -> None:
        line["printed"] = (line["done"], line["info"])
        count = f"{line['done']}/{line['total']} steps" if line["total"] is not None else f"{line['done']} steps"
        parts = [escape(line["name"]), count, escape(line["info"]), f"{now - line['start']:.1f}s"]
        stderr.print("  ".join(p for p in parts if p), soft_wrap=True, highlight=False)
        stderr.file.flush()


class OneBarReporter(RichReporter):
    """Like RichReporter, but each phase replaces the previous bar, and the last one goes at the end.

    For runs of many phases (sweeps), where the notes between phases tell the story: without a
    terminal only the notes and the heartbeat lines of long phases are printed.
    """

    phase_lines = False

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        super().__exit__(*exc)

    def phase(self, name: str, total: int | None = None) -> None:
        self._start_line(name, total)
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(escape(name), total=total, info="")

    def note(self, message: str) -> None:
        if not self.quiet:
            stderr.print(escape(message), soft_wrap=True)  # notes quote error messages: print them verbatim

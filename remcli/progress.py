"""How long-running library code reports progress without printing.

Library functions take a `Reporter`; the CLI passes a rich one that draws on stderr, tests and
Python users get `NullReporter` by default. Keeping this an object (not print calls) is what
lets `--json -` keep stdout clean.
"""

from __future__ import annotations


class NullReporter:
    """Does nothing; the default for library calls."""

    def phase(self, name: str, total: int | None = None) -> None:
        """A new phase begins (e.g. 'train epoch 3', 'flush'); `total` is its number of steps."""

    def advance(self, steps: int = 1, **fields: float) -> None:
        """`steps` more done; `fields` are live values to show (loss, forget_acc, proxy...)."""

    def note(self, message: str) -> None:
        """A one-line human message (stderr in the CLI)."""

    def end_phase(self) -> None:
        """The current phase is over: a line printed when a phase ends comes now, before what follows
        (a sweep cell's result), not when the next phase begins."""


class PrefixedReporter:
    """Prefixes every phase (and, with `notes`, every note) so a line says where it comes from:
    the running sweep cell, or which of several workers printed it."""

    def __init__(self, inner, prefix: str, notes: bool = True):
        self.inner, self.prefix, self.notes = inner, prefix, notes

    def phase(self, name: str, total: int | None = None) -> None:
        self.inner.phase(f"{self.prefix} {name}", total)

    def advance(self, steps: int = 1, **fields: float) -> None:
        self.inner.advance(steps, **fields)

    def note(self, message: str) -> None:
        self.inner.note(f"{self.prefix} {message}" if self.notes else message)

    def end_phase(self) -> None:
        self.inner.end_phase()

"""Trigger geometry for the poison corruption: where the square patch sits and what colour it has.

A `Trigger` checks itself when made, so a bad position, size or colour fails with a one-line
`InputError` naming the valid values instead of silently stamping somewhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

from remcli.errors import InputError

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
COLOURS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


@dataclass(frozen=True)
class Trigger:
    """A square patch in pixel space ([0, 1]); written after augmentation, before normalisation.

    `colour` is one value per channel (1 or 3 values in [0, 1]), or a name / "R,G,B" text as
    `parse_colour` reads it.
    """

    size: int = 3
    position: str = "bottom-right"
    colour: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise InputError(f"trigger position {self.position!r} is not valid (--position); use one of {', '.join(POSITIONS)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InputError(f"trigger size {self.size!r} is not valid (--patch-size); use a whole number of pixels, 1 or more")
        object.__setattr__(self, "colour", _checked_colour(self.colour))

    def top_left(self, height: int, width: int) -> tuple[int, int]:
        vertical, _, horizontal = self.position.partition("-")
        if self.position == "center":
            return (height - self.size) // 2, (width - self.size) // 2
        top = 0 if vertical == "top" else height - self.size
        left = 0 if horizontal == "left" else width - self.size
        return top, left

    def colour_for(self, channels: int) -> tuple[float, ...]:
        """Per-channel value; a grayscale image gets the colour's mean intensity."""
        if channels == len(self.colour):
            return self.colour
        return (sum(self.colour) / len(self.colour),) * channels


def parse_colour(text: str) -> tuple[float, float, float]:
    """A colour name (see COLOURS) or "R,G,B" with each value in [0, 1]."""
    if text in COLOURS:
        return COLOURS[text]
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise InputError(f"trigger colour {text!r} is not valid; use a name ({', '.join(COLOURS)}) or R,G,B in [0,1] such as 1,1,0")
    return values  # type: ignore[return-value]


def _checked_colour(colour: str | Sequence[float]) -> tuple[float, ...]:
    """The colour as a tuple (text parsed); values are kept as given so manifests keep their bytes."""
    if isinstance(colour, str):
        return parse_colour(colour)
    values = tuple(colour) if isinstance(colour, Sequence) else ()
    if len(values) not in (1, 3) or not all(isinstance(v, Real) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values):
        raise InputError(f"trigger colour {colour!r} is not valid; use 1 or 3 values in [0,1], a name ({', '.join(COLOURS)}) or R,G,B such as 1,1,0")
    return values

"""Validation inside the settings dataclasses, so the CLI and the Python API refuse the same values
with the same one-line messages.

A settings class inherits `Settings`; its `__post_init__` checks every field against

* its annotation (`int`, `float | None`, `tuple[str, ...]`...): `epochs="3"` is refused;
* `RANGES`, one table of ranges by setting name (every `epochs` is >= 1, every `lr` > 0...);
* the class's `CHOICES`, the closed set of each enumerated setting (`optimizer`: sgd or adam).

`None` passes wherever the annotation allows it (it means "the recipe's default").

Variant defaults follow one pattern: a table `{variant: {setting: value}}`. A variant chosen by a
`variant` setting (scrub, salun) leaves its settings None in the config, so the recorded settings
say what the user chose, and `with_variant_defaults()` fills them in for the run; a variant
registered as a method of its own (`rem-full`) is `with_defaults(Base, table)`, a config class
whose defaults are the table's, so `remcli methods` shows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from remcli.errors import InputError

Rule = tuple[Callable[[Any], bool], str]


def _at_least(low: float) -> Rule:
    return (lambda v: v >= low), f">= {low:g}"


def _above(low: float) -> Rule:
    return (lambda v: v > low), f"> {low:g}"


def _between(low: float, high: float, open_low: bool = False, open_high: bool = False) -> Rule:
    def ok(v) -> bool:
        return (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    return ok, f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


RANGES: dict[str, Rule] = {
    # budgets
    "epochs": _at_least(1),
    "batch_size": _at_least(1),
    "forget_batch_size": _at_least(1),
    "max_epochs": _at_least(1),
    "flush_max_epochs": _at_least(0),
    "max_steps": _at_least(0),
    "max_tries": _at_least(1),
    "diagnostic_samples": _at_least(0),
    "patience": _at_least(0),
    "bn_recalibration": _at_least(0),
    "budget": _above(0),
    # optimisation
    "lr": _above(0),
    "momentum": _between(0, 1, open_high=True),
    "weight_decay": _at_least(0),
    "new_units_lr_scale": _above(0),
    # losses
    "beta": _above(0),
    "temperature": _above(0),
    "lam": _above(0),
    "alpha": _above(0),
    "kd_weight": _at_least(0),
    "ce_weight": _at_least(0),
    "retain_weight": _between(0, 1),
    # thresholds and fractions
    "gamma": _between(0, 1),
    "rho": _between(0, 1),
    "mask_density": _between(0, 1, open_low=True),
    "mask_fraction": _between(0, 1, open_low=True),
    "retain_fraction": _between(0, 1),
    "repair_fraction": _between(0, 1, open_low=True),
    "val_fraction": _between(0, 1, open_high=True),
    "capacity": _above(0),
    "step_mult": _above(1),
    "start_divisor": _above(0),
    "kernel_size": ((lambda v: v >= 1 and v % 2 == 1), "a positive odd number"),
    "k": ((lambda v: v == -1 or v >= 1), ">= 1, or -1 for all blocks"),
}

CHOICE_NOTES = {"select_on": " (never test: the test split measures the result)"}

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),), "dict": (dict,)}


def check_type(name: str, annotation: str, value: Any) -> None:
    """Refuse a value of the wrong kind (`lr='fast'`, `epochs=2.5`, `redirect='false'`)."""
    allowed: tuple = ()
    for part in (p.strip() for p in annotation.split("|")):
        allowed += _TYPES.get(part, (tuple, list) if part.startswith("tuple") else (object,))
    if isinstance(value, bool) and bool not in allowed:
        allowed = ()
    if not isinstance(value, allowed):
        raise InputError(f"setting {name}={value!r} must be {annotation}")


def _choices_text(choices: tuple) -> str:
    names = [str(c) for c in choices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_settings(settings: Any) -> None:
    """Check every field of a settings dataclass; raises the first problem as one InputError."""
    choices = getattr(type(settings), "CHOICES", {})
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        check_type(field.name, str(field.type), value)
        if value is None:
            continue
        if field.name in choices and value not in choices[field.name]:
            raise InputError(f"{field.name} {value!r} is not valid; use {_choices_text(choices[field.name])}{CHOICE_NOTES.get(field.name, '')}")
        rule = RANGES.get(field.name)
        if rule is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
            raise InputError(f"{field.name} must be {rule[1]} (got {value})")


class Settings:
    """Mixin for settings dataclasses: validated on construction (see the module docstring)."""

    CHOICES: ClassVar[dict[str, tuple]] = {}
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {}  # the `variant` setting's values -> their defaults

    def __post_init__(self) -> None:
        check_settings(self)

    def with_variant_defaults(self):
        """A copy with each None setting that the chosen `variant` defines set to the variant's value."""
        names = {field.name for field in dataclasses.fields(self)}
        chosen = self.VARIANTS[self.variant]  # type: ignore[attr-defined]  (a class with VARIANTS has a variant setting)
        return dataclasses.replace(self, **{name: value for name, value in chosen.items() if name in names and getattr(self, name) is None})


def with_defaults(base: type, name: str, defaults: dict[str, Any]) -> type:
    """Settings class `base` with other defaults (same fields, same order): a variant registered
    as a method of its own."""
    fields = {field.name: field for field in dataclasses.fields(base)}
    variant = dataclasses.make_dataclass(
        name, [(key, fields[key].type, dataclasses.field(default=value)) for key, value in defaults.items()], bases=(base,)
    )
    variant.__module__ = base.__module__
    return variant

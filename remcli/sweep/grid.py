"""What a sweep covers: its configuration, the cells it enumerates, and when two configs may share a folder.

A sweep crosses corruption kinds x discovery rates x unlearning methods x seeds. Per (kind,
seed) one corrupted dataset is made and one model is trained; every (rate, method) cell reuses
that model. Each (kind, seed) also gets one `original` cell: the trained model itself, evaluated
without unlearning (the paper's discovery-rate-0 column).

Cell ids are file names: `poison-s0-rem-r0.5`, `poison-s0-original`.

A folder's `sweep.json` records the configuration. Settings that define the trained models
(data, arch, count, training recipe, the init they are fine-tuned from, by sha256) must stay the
same for the folder's life, and so must a method's `--set` settings once it has a finished cell;
kinds, rates, methods and seeds may grow (new cells are added, finished ones are reused). Device
and precision may change.

A grid's methods are sweep entries (`remcli.sweep.entries`): a registered method, a labelled variant
of one (`METHOD@LABEL`) or one that detects first (`detect+METHOD`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from remcli.data.corruption import (
    kind_names,
    kinds_by_regularity,
    parse_rates,
    rate_label,
)
from remcli.errors import InputError
from remcli.fileio import sha256_file
from remcli.settings import parse_setting
from remcli.sweep.entries import applies, base_method, method_overrides, resolved_settings, split_detect_settings
from remcli.unlearning import get_method
from remcli.unlearning.base import build_config

SCHEMA_VERSION = 1
ORIGINAL = "original"  # the trained model, not unlearned: one cell per (kind, seed), rate 0.0
KIND_ORDER = kinds_by_regularity()  # the default kinds, high -> low regularity (paper's Fig. 1 rows)
PAPER_RATES = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"

# settings that define the trained models: fixed for a sweep folder's life; name -> option
MODEL_KEYS = {
    "data": "--data",
    "arch": "--arch",
    "arch_kwargs": "--arch-arg/--width",
    "count": "--count",
    "train_epochs": "--train-epochs",
    "train_batch_size": "--train-batch-size",
    "train_lr": "--train-lr",
    "init_sha256": "--init",  # the init's content, not its path: a moved init trains the same models
}


@dataclass(frozen=True)
class Cell:
    kind: str
    seed: int
    method: str  # a registered method, or ORIGINAL
    rate: float  # 0.0 for ORIGINAL

    @property
    def id(self) -> str:
        if self.method == ORIGINAL:
            return f"{model_id(self.kind, self.seed)}-{ORIGINAL}"
        return f"{model_id(self.kind, self.seed)}-{self.method}-r{rate_label(self.rate)}"

    def label(self) -> str:
        """Human form for progress lines."""
        if self.method == ORIGINAL:
            return f"{self.kind} seed {self.seed}: original (no unlearning)"
        return f"{self.kind} seed {self.seed}: {self.method} at discovery {rate_label(self.rate)}"


def model_id(kind: str, seed: int) -> str:
    return f"{kind}-s{seed}"


def kind_rank(kind: str) -> int:
    """Position in high -> low regularity order; kinds not registered (e.g. from older results) last."""
    order = kinds_by_regularity()
    return order.index(kind) if kind in order else len(order)


@dataclass
class SweepConfig:
    """A sweep's grid (kinds x rates x methods x seeds) and the recipe of its models (`remcli sweep`'s options)."""

    data: str
    kinds: tuple[str, ...] = KIND_ORDER
    rates: tuple[float, ...] = (0.1, 0.5, 1.0)
    methods: tuple[str, ...] = ("rem",)
    seeds: tuple[int, ...] = (0,)
    arch: str = "resnet9"
    arch_kwargs: dict = field(default_factory=dict)
    count: int = 1000  # corrupted training samples per kind
    train_epochs: int = 40
    train_batch_size: int = 512
    train_lr: float | None = None  # None: the training recipe's default
    init: str | None = None  # a checkpoint every model is fine-tuned from (`train --init`); None: fresh initialisations
    init_sha256: str | None = None  # the init's sha256, taken when the config is made
    overrides: dict[str, dict] = field(default_factory=dict)  # method -> {setting: value}
    device: str = "auto"  # not part of the folder's identity: a sweep may continue elsewhere
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Pin `init` by its sha256 as the config is made, so every cell records which weights its model started from."""
        if self.init is not None and self.init_sha256 is None:
            path = Path(self.init)
            if not path.is_file():
                raise InputError(f"--init {path} not found; check the path")
            self.init, self.init_sha256 = str(path.resolve()), sha256_file(path)

    # --- validation ---------------------------------------------------------------------------
    def validate(self) -> "SweepConfig":
        """Check every name and number before anything is loaded or written."""
        if not self.kinds or not self.rates or not self.methods or not self.seeds:
            raise InputError("--kinds, --discovery, --methods and --seeds each need at least one value")
        check_kinds(self.kinds)
        for rate in self.rates:
            if not 0.0 < rate <= 1.0:
                raise InputError(f"discovery rate {rate} must be in (0, 1]; fix --discovery")
        for seed in self.seeds:
            if seed < 0:
                raise InputError(f"seed {seed} must be >= 0; fix --seeds")
        if self.count < 1:
            raise InputError(f"--count {self.count} must be at least 1")
        if self.train_epochs < 1 or self.train_batch_size < 1:
            raise InputError("--train-epochs and --train-batch-size must be at least 1")
        if self.train_lr is not None and not self.train_lr > 0:
            raise InputError(f"--train-lr {self.train_lr} must be positive")
        for method in self.methods:
            get_method(base_method(method))  # unknown names list the registered ones
        for method, settings in self.overrides.items():
            if method not in self.methods:
                raise InputError(f"--set names method {method!r}, which is not in --methods ({', '.join(self.methods)}); add it or drop the --set")
            own = split_detect_settings(method, settings)[1]
            build_config(get_method(base_method(method)), method_overrides(own))  # unknown setting names list the valid ones
        return self

    # --- enumeration --------------------------------------------------------------------------
    def models(self) -> list[tuple[str, int]]:
        """(kind, seed) pairs, seeds outermost so a first seed completes before the next."""
        return [(kind, seed) for seed in self.seeds for kind in self.kinds]

    def cells(self) -> list[Cell]:
        """Every cell, in run order: per model the original, then rates x methods."""
        out = []
        for kind, seed in self.models():
            out.append(Cell(kind, seed, ORIGINAL, 0.0))
            out.extend(Cell(kind, seed, method, rate) for rate in self.rates for method in self.methods if applies(method, kind))
        return out

    # --- identities ---------------------------------------------------------------------------
    def model_config(self, kind: str, seed: int) -> dict:
        """What determines a trained model (and so every cell built on it). Without an init the key is left
        out, so folders made before `--init` existed keep their models and cells."""
        keys = [key for key in MODEL_KEYS if key != "init_sha256" or self.init_sha256 is not None]
        return normalised({**{key: getattr(self, key) for key in keys}, "kind": kind, "seed": seed})

    def cell_config(self, cell: Cell) -> dict:
        """What determines a cell's result; a finished cell is reused only if this matches.

        `settings` is every setting the method runs with, defaults resolved: when a new remcli
        changes a default, cells computed under the old one no longer match and are rerun, never
        silently reused."""
        overrides = {} if cell.method == ORIGINAL else self.overrides.get(cell.method, {})
        body = {"model": self.model_config(cell.kind, cell.seed), "method": cell.method, "rate": cell.rate, "overrides": overrides}
        if cell.method != ORIGINAL:
            body["settings"] = resolved_settings(cell.method, overrides)
        return normalised(body)

    # --- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return normalised(asdict(self))

    @classmethod
    def from_dict(cls, body: dict) -> "SweepConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in body.items() if k in known}
        for key in ("kinds", "rates", "methods", "seeds"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def normalised(obj):
    """JSON round trip: tuples become lists, so stored and fresh configs compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True))


def merge_configs(stored: SweepConfig, new: SweepConfig, where: str, finished_methods: set[str] | None = None) -> SweepConfig:
    """The folder's config after this run: the union of grids; refuses changed model or method settings.

    A method's settings may change only while it has no finished cell in the folder (so a bad
    value that made every cell of a method fail can be fixed in place).
    """
    for key, option in MODEL_KEYS.items():
        before, now = normalised(getattr(stored, key)), normalised(getattr(new, key))
        if before != now:
            raise InputError(
                f"{where} was made with {option} {_show(before)}, not {_show(now)}; use another --out, or the same "
                "settings (only kinds, rates, methods and seeds may be added to a sweep)"
            )
    settled = set(stored.methods) if finished_methods is None else set(finished_methods)
    for method in sorted(settled & set(new.methods)):
        before, now = normalised(stored.overrides.get(method, {})), normalised(new.overrides.get(method, {}))
        if before != now:
            raise InputError(
                f"{where} ran {method} with settings {_show(before)}, not {_show(now)}; use another --out, or the same --set "
                f"{method}.NAME=VALUE options"
            )
    return replace(
        new,
        kinds=_union(stored.kinds, new.kinds, key=kind_rank),
        rates=tuple(sorted(set(stored.rates) | set(new.rates))),
        methods=_union(stored.methods, new.methods),
        seeds=tuple(sorted(set(stored.seeds) | set(new.seeds))),
        overrides={**{m: v for m, v in stored.overrides.items() if m not in new.methods}, **new.overrides},
    )


def _union(first, second, key=None) -> tuple:
    out = list(dict.fromkeys([*first, *second]))
    return tuple(sorted(out, key=key) if key else out)


def _show(value) -> str:
    if value is None:
        return "(default)"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "(none)"
    return str(value)


# --- parsing list-valued options -----------------------------------------------------------------


def split_list(text: str, option: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not items:
        raise InputError(f"{option} {text!r} lists nothing; give comma-separated values")
    return items


def check_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """`kinds`, once every one is registered; otherwise a one-line error listing the registered ones."""
    for kind in kinds:
        if kind not in kind_names():
            raise InputError(f"unknown corruption kind {kind!r} in --kinds; use some of: {', '.join(kind_names())}")
    return kinds


def parse_kinds(text: str) -> tuple[str, ...]:
    return check_kinds(split_list(text, "--kinds"))


def parse_discovery(text: str) -> tuple[float, ...]:
    return tuple(parse_rates(text))


def parse_methods(text: str) -> tuple[str, ...]:
    """Method names; `original` is always evaluated, so it may be listed or not."""
    methods = tuple(m for m in split_list(text, "--methods") if m != ORIGINAL)
    if not methods:
        raise InputError("--methods lists no unlearning method; name at least one (see `remcli methods`)")
    for method in methods:
        if method.count("@") > 1 or method.endswith("@") or not base_method(method):
            raise InputError(f"--methods entry {method!r} must be METHOD, METHOD@LABEL or detect+METHOD, e.g. rem-redirect@bottleneck, detect+rem")
        get_method(base_method(method))
    return methods


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(v) for v in split_list(text, "--seeds"))
    except ValueError:
        raise InputError(f"--seeds {text!r} must be comma-separated integers such as 0,1,2") from None
    if any(s < 0 for s in seeds):
        raise InputError(f"--seeds {text!r} must be non-negative integers")
    return tuple(dict.fromkeys(seeds))


def parse_method_settings(pairs: list[str]) -> dict[str, dict]:
    """`--set METHOD.name=value` pairs -> {method: {name: value}} (values as `remcli.settings` parses them)."""
    out: dict[str, dict] = {}
    for pair in pairs:
        key, parsed = parse_setting(pair, "--set", "METHOD.name=value, e.g. rem.epochs=3")
        method, dot, name = key.rpartition(".")
        if not dot or not method or not name:
            raise InputError(f"--set {pair!r} must look like METHOD.name=value, e.g. rem.epochs=3")
        out.setdefault(method, {})[name] = list(parsed) if isinstance(parsed, tuple) else parsed
    return out

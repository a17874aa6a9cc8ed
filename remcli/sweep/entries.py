"""A sweep's method entries: what a name in `--methods` stands for, and its settings.

An entry is a registered method (`rem`), a labelled variant of one (`METHOD@LABEL`, e.g.
`rem-redirect@bottleneck`, with its own `--set rem-redirect@bottleneck.NAME=VALUE` settings: that
is how ablations and tuned variants of one method sit side by side in one map), or a method that
runs `remcli detect` first (`detect+METHOD`, with the detection settings below; `query-detect+METHOD`
and `confused-detect+METHOD` detect from triggered test images or the swapped pair instead).
"""

from __future__ import annotations

from dataclasses import asdict

from remcli.detection import CONFUSED_SIGNALS, QUERY_SIGNALS, signal_choices
from remcli.errors import InputError
from remcli.unlearning import get_method
from remcli.unlearning.base import build_config

DETECT_PREFIX = "detect+"
# `detect+METHOD` cells: which signal ranks (remcli.detection) and how many candidates to add; the
# threshold is on the signal's own scale, so the default signal stays the one 0.3 was chosen for;
# detect_features=init scores on the model's recorded init (`detect --features-from init`)
DETECT_DEFAULTS = {"detect_top": None, "detect_threshold": 0.3, "detect_signal": "similarity", "detect_features": "model"}
DETECT_FEATURES = ("model", "init")
# Entries that detect from what a user saw instead (remcli.detection.symptoms; signal `auto` unless
# set, threshold 0.3 as measured in docs/detection.md), and the one kind each symptom exists for:
# a trigger makes test images misbehave, a swap confuses its two classes.
SYMPTOM_PREFIXES = {"query-detect+": "poison", "confused-detect+": "interclass"}
SWEEP_QUERIES = 8  # triggered test images a query-detect cell starts from


def detect_prefix(name: str) -> str | None:
    """The detection prefix of a sweep entry (`detect+`, `query-detect+`, `confused-detect+`), or None."""
    name = name.split("@", 1)[0]
    return next((prefix for prefix in (DETECT_PREFIX, *SYMPTOM_PREFIXES) if name.startswith(prefix)), None)


def base_method(name: str) -> str:
    """`rem-redirect@bottleneck` -> `rem-redirect`, `detect+rem` -> `rem`: the registered method behind a sweep entry."""
    prefix = detect_prefix(name)
    name = name.split("@", 1)[0]
    return name[len(prefix) :] if prefix else name


def detects(name: str) -> bool:
    """`detect+METHOD[@LABEL]` (and `query-detect+`, `confused-detect+`): the cell runs `remcli
    detect` first and hands METHOD the identified samples plus the detected candidates."""
    return detect_prefix(name) is not None


def applies(name: str, kind: str) -> bool:
    """Whether a sweep entry has cells for `kind`: a symptom entry only for the kind that shows it."""
    return SYMPTOM_PREFIXES.get(detect_prefix(name) or "", kind) == kind


def resolved_settings(method: str, overrides: dict) -> dict:
    """Every setting of a sweep entry's method, defaults filled in (and detection's, for detect+).

    detect_features is left out at its default: cells recorded before the setting existed read the
    model's own features, and their configs must still match to be reused."""
    detection, own = split_detect_settings(method, overrides)
    settings = asdict(build_config(get_method(base_method(method)), method_overrides(own)))
    if detection["detect_features"] == DETECT_DEFAULTS["detect_features"]:
        del detection["detect_features"]
    return {**settings, **(detection if detects(method) else {})}


def split_detect_settings(method: str, settings: dict) -> tuple[dict, dict]:
    """(detect settings with defaults, the method's own settings) from one entry's `--set` values."""
    own = {k: v for k, v in settings.items() if k not in DETECT_DEFAULTS}
    given = {k: v for k, v in settings.items() if k in DETECT_DEFAULTS}
    if given and not detects(method):
        raise InputError(f"--set {method}.{next(iter(given))} is a detection setting; use it with a detect+METHOD entry, e.g. detect+{method}")
    symptom = detect_prefix(method) in SYMPTOM_PREFIXES
    chosen = {**DETECT_DEFAULTS, **({"detect_signal": "auto"} if symptom else {}), **given}
    if "detect_top" in given and given["detect_top"] is not None and "detect_threshold" not in given:
        chosen["detect_threshold"] = None  # a given top replaces the default threshold
    top, threshold = chosen["detect_top"], chosen["detect_threshold"]
    if (top is None) == (threshold is None):
        raise InputError(f"{method}: give one of detect_top (an integer >= 0) or detect_threshold (a score in [-1, 1]), not both")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
        raise InputError(f"{method}: detect_top={top!r} must be an integer >= 0")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1):
        raise InputError(f"{method}: detect_threshold={threshold!r} must be a number in [-1, 1]")
    signals = ("auto", *(QUERY_SIGNALS if detect_prefix(method) == "query-detect+" else CONFUSED_SIGNALS).names()) if symptom else signal_choices()
    if chosen["detect_signal"] not in signals:
        raise InputError(f"{method}: detect_signal={chosen['detect_signal']!r} must be one of: {', '.join(signals)}")
    if chosen["detect_features"] not in DETECT_FEATURES:
        raise InputError(f"{method}: detect_features={chosen['detect_features']!r} must be one of: {', '.join(DETECT_FEATURES)}")
    if chosen["detect_features"] != "model" and detect_prefix(method) == "query-detect+":
        raise InputError(
            f"{method}: detect_features goes with detect+ and confused-detect+ entries (queries are read by the model they misbehave on)"
        )
    return chosen, own


def method_overrides(settings: dict) -> dict:
    """Stored settings (JSON: lists) -> what a method's config takes (tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}

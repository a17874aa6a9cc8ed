"""Corruptions, their manifest, discovery subsets and index files.

Three kinds span the regularity axis of the REM paper (rem-method.md §1.2), built without the
research code's quirks (§8):

* `label-noise` (low regularity): each chosen sample gets a uniformly random label that differs
  from its true one (the research code's label can equal the true label ~10% of the time).
* `interclass` (medium): swap the labels of two classes; the first N/2 samples of each.
* `poison` (high): a square trigger patch stamped in pixel space after augmentation, and the
  label set to a target class (BadNets-style backdoor).

A `Manifest` records everything needed to re-apply the corruption (indices, true and new labels,
the trigger) plus the dataset fingerprint, so it is a portable artifact. Discovery subsets are
nested by construction: one seeded permutation of the corrupted indices, rate r takes its first
round(r * n) entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from remcli import __version__
from remcli.errors import InputError
from remcli.fileio import atomic_write_text, check_writable_output
from remcli.seeding import generator

SCHEMA_VERSION = 1

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
COLOURS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


@dataclass(frozen=True)
class Trigger:
    """A square patch in pixel space ([0, 1]); written after augmentation, before normalisation."""

    size: int = 3
    position: str = "bottom-right"
    colour: tuple[float, ...] = (1.0, 1.0, 1.0)

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
    if text in COLOURS:
        return COLOURS[text]
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise InputError(f"trigger colour {text!r} is not valid; use a name ({', '.join(COLOURS)}) or R,G,B in [0,1] such as 1,1,0")
    return values  # type: ignore[return-value]


@dataclass
class Manifest:
    """The versioned record of one corruption (written as DIR/corruption.json)."""

    dataset: str
    fingerprint: str
    num_train: int
    num_classes: int
    kind: str
    params: dict
    seed: int
    indices: list[int]
    true_labels: list[int]
    new_labels: list[int]
    trigger: dict | None = None
    schema_version: int = SCHEMA_VERSION
    remcli_version: str = __version__
    discovery: dict = field(default_factory=dict)
    content_sha256: str | None = None  # of the decoded training images; absent in older manifests

    # --- derived views -----------------------------------------------------------------------
    @property
    def index_tensor(self) -> torch.Tensor:
        return torch.tensor(self.indices, dtype=torch.int64)

    @property
    def trigger_spec(self) -> Trigger | None:
        if self.trigger is None:
            return None
        return Trigger(size=self.trigger["size"], position=self.trigger["position"], colour=tuple(self.trigger["colour"]))

    def corrupted_labels(self, true_labels: torch.Tensor) -> torch.Tensor:
        labels = true_labels.clone()
        labels[self.index_tensor.to(labels.device)] = torch.tensor(self.new_labels, dtype=torch.int64, device=labels.device)
        return labels

    def triggered_mask(self, num_train: int) -> torch.Tensor:
        mask = torch.zeros(num_train, dtype=torch.bool)
        if self.trigger is not None:
            mask[self.index_tensor] = True
        return mask

    def to_json(self) -> str:
        body = asdict(self)
        content = body.pop("content_sha256")
        ordered = {"schema_version": body.pop("schema_version"), "remcli_version": body.pop("remcli_version"), **body}
        if content:  # written (after the fingerprint) only when known, so manifests made without it keep their exact bytes
            with_content = {}
            for key, value in ordered.items():
                with_content[key] = value
                if key == "fingerprint":
                    with_content["content_sha256"] = content
            ordered = with_content
        return json.dumps(ordered, indent=1) + "\n"


# ---------------------------------------------------------------------------------------------
# Corruption kinds, registered by name. Each returns (indices, new_labels, trigger | None).

KindFn = Callable[..., tuple[torch.Tensor, torch.Tensor, Trigger | None]]
_KINDS: dict[str, KindFn] = {}


def register_kind(name: str):
    def wrap(fn: KindFn) -> KindFn:
        if name in _KINDS:
            raise ValueError(f"corruption kind {name!r} registered twice")
        _KINDS[name] = fn
        return fn

    return wrap


def kind_names() -> list[str]:
    return sorted(_KINDS)


@register_kind("poison")
def _poison(labels: torch.Tensor, count: int, num_classes: int, seed: int, target: int = 0, trigger: Trigger = Trigger(), **_):
    if not 0 <= target < num_classes:
        raise InputError(f"poison target class {target} is outside 0..{num_classes - 1}; pick a valid --target")
    chosen = torch.randperm(len(labels), generator=generator(seed, "corrupt/poison/select"))[:count]
    return chosen, torch.full((count,), target, dtype=torch.int64), trigger


@register_kind("interclass")
def _interclass(labels: torch.Tensor, count: int, num_classes: int, seed: int, classes: tuple[int, int] = (3, 5), **_):
    first, second = classes
    if first == second or not all(0 <= c < num_classes for c in classes):
        raise InputError(f"interclass classes {classes} must be two different classes in 0..{num_classes - 1}; fix --classes")
    if count % 2:
        raise InputError(f"interclass needs an even --count (half from each class), got {count}")
    half = count // 2
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    for c, m in zip(classes, members):
        if len(m) < half:
            raise InputError(f"class {c} has only {len(m)} training samples, fewer than {half}; lower --count")
    chosen = torch.cat([members[0][:half], members[1][:half]])
    new = torch.cat([torch.full((half,), second), torch.full((half,), first)]).to(torch.int64)
    return chosen, new, None


@register_kind("label-noise")
def _label_noise(labels: torch.Tensor, count: int, num_classes: int, seed: int, **_):
    if num_classes < 2:
        raise InputError("label-noise needs at least two classes")
    chosen = torch.randperm(len(labels), generator=generator(seed, "corrupt/label-noise/select"))[:count]
    offset = torch.randint(1, num_classes, (count,), generator=generator(seed, "corrupt/label-noise/labels"))
    return chosen, (labels[chosen] + offset) % num_classes, None


def resolve_count(num_train: int, count: int | None, fraction: float | None) -> int:
    if (count is None) == (fraction is None):
        raise InputError("give exactly one of --count N or --fraction F")
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise InputError(f"--fraction {fraction} must be in (0, 1]")
        count = round(fraction * num_train)
    assert count is not None
    if not 0 < count <= num_train:
        raise InputError(f"--count {count} must be between 1 and the training set size {num_train}")
    return count


def corrupt(
    labels: torch.Tensor,
    *,
    dataset: str,
    fingerprint: str,
    num_classes: int,
    kind: str,
    count: int,
    seed: int = 0,
    content_sha256: str | None = None,
    **params,
) -> Manifest:
    """Choose the corrupted samples and their new labels. Pure: same inputs, same manifest."""
    if kind not in _KINDS:
        raise InputError(f"unknown corruption kind {kind!r}; use one of: {', '.join(kind_names())}")
    chosen, new, trigger = _KINDS[kind](labels, count, num_classes, seed, **params)
    order = torch.argsort(chosen)
    chosen, new = chosen[order], new[order]
    recorded = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if k != "trigger"}
    return Manifest(
        dataset=dataset,
        fingerprint=fingerprint,
        num_train=len(labels),
        num_classes=num_classes,
        kind=kind,
        params={"count": count, **recorded},
        seed=seed,
        indices=chosen.tolist(),
        true_labels=labels[chosen].tolist(),
        new_labels=new.tolist(),
        trigger=None if trigger is None else {**asdict(trigger), "colour": list(trigger.colour), "space": "pixel [0,1], after augmentation, before normalisation"},
        content_sha256=content_sha256,
    )


# ---------------------------------------------------------------------------------------------
# Discovery: which corrupted samples the user has identified.

def discovery_order(manifest: Manifest) -> torch.Tensor:
    """One seeded permutation of the corrupted indices; every rate takes a prefix, so sets nest."""
    perm = torch.randperm(len(manifest.indices), generator=generator(manifest.seed, "corrupt/discovery"))
    return manifest.index_tensor[perm]


def identified_at(manifest: Manifest, rate: float) -> torch.Tensor:
    if not 0.0 < rate <= 1.0:
        raise InputError(f"discovery rate {rate} must be in (0, 1]")
    count = max(1, round(rate * len(manifest.indices)))
    return torch.sort(discovery_order(manifest)[:count]).values


def rate_label(rate: float) -> str:
    return repr(float(rate))


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--discovery {text!r} must be comma-separated rates such as 0.1,0.5,1.0") from None
    for rate in rates:
        if not 0.0 < rate <= 1.0:
            raise InputError(f"discovery rate {rate} must be in (0, 1]")
    return sorted(set(rates))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_corruption(manifest: Manifest, out_dir: str | Path, rates: list[float], force: bool = False) -> dict[str, Path]:
    """Write DIR/corruption.json and DIR/forget-<rate>.txt; all-or-nothing per file, no partials."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    manifest.discovery = {rate_label(r): len(identified_at(manifest, r)) for r in rates}
    targets = {"manifest": out / "corruption.json", **{rate_label(r): out / f"forget-{rate_label(r)}.txt" for r in rates}}
    if out.is_dir():
        for path in targets.values():
            check_writable_output(path, force)
    out.mkdir(parents=True, exist_ok=True)
    text = manifest.to_json()
    digest = sha256_text(text)
    for rate in rates:
        ids = identified_at(manifest, rate)
        header = [
            "# remcli identified samples: one training-split position per line",
            f"# dataset: {manifest.dataset}",
            f"# fingerprint: {manifest.fingerprint}",
            *([f"# content-sha256: {manifest.content_sha256}"] if manifest.content_sha256 else []),
            f"# corruption: {manifest.kind}, manifest sha256 {digest}",
            f"# discovery-rate: {rate_label(rate)} ({len(ids)} of {len(manifest.indices)} corrupted, seed {manifest.seed})",
        ]
        atomic_write_text(targets[rate_label(rate)], "\n".join(header + [str(i) for i in ids.tolist()]) + "\n")
    atomic_write_text(targets["manifest"], text)
    return targets


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"corruption manifest {p} not found; pass the corruption.json written by `remcli corrupt`")
    try:
        body = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{p} is not a valid corruption manifest ({err.__class__.__name__}); regenerate it with `remcli corrupt`") from None
    if not isinstance(body, dict) or body.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{p} has schema_version {body.get('schema_version') if isinstance(body, dict) else None}, expected {SCHEMA_VERSION}; regenerate it with `remcli corrupt`")
    try:
        manifest = Manifest(**body)
    except TypeError as err:
        raise InputError(f"{p} is missing manifest fields ({err}); regenerate it with `remcli corrupt`") from None
    if not (len(manifest.indices) == len(manifest.true_labels) == len(manifest.new_labels)):
        raise InputError(f"{p} lists different numbers of indices and labels; regenerate it with `remcli corrupt`")
    index = torch.tensor(manifest.indices, dtype=torch.int64)
    labels = torch.tensor(manifest.true_labels + manifest.new_labels, dtype=torch.int64)
    if len(index) and (index.min() < 0 or index.max() >= manifest.num_train or len(torch.unique(index)) != len(index)):
        raise InputError(f"{p} lists indices outside 0..{manifest.num_train - 1} or repeats one; regenerate it with `remcli corrupt`")
    if len(labels) and (labels.min() < 0 or labels.max() >= manifest.num_classes):
        raise InputError(f"{p} lists labels outside 0..{manifest.num_classes - 1}; regenerate it with `remcli corrupt`")
    return manifest


def check_manifest_matches(manifest: Manifest, fingerprint: str, spec: str, where: str, content_sha256: str | None = None) -> None:
    """Labels and shape always; the training images' content when both the manifest and the caller know it."""
    if manifest.fingerprint != fingerprint:
        raise InputError(
            f"{where} was made for dataset {manifest.dataset} ({manifest.fingerprint}) but the data is {spec} ({fingerprint}); use the matching --data"
        )
    if manifest.content_sha256 and content_sha256 and manifest.content_sha256 != content_sha256:
        raise InputError(
            f"{where} was made for other images than {spec} holds (same labels, different pixels or image order: content {manifest.content_sha256} vs "
            f"{content_sha256}), so its positions would point at other images; restore the image files as they were or rerun `remcli corrupt` on this data"
        )


# ---------------------------------------------------------------------------------------------
# Index files: one training-split position per line, '#' comments allowed.

_FINGERPRINT_LINE = re.compile(r"^#\s*fingerprint:\s*(\S+)")
_CONTENT_LINE = re.compile(r"^#\s*content-sha256:\s*(\S+)")


STDIN = "-"


def read_index_file(
    path: str | Path,
    num_train: int,
    fingerprint: str | None = None,
    paths: Sequence[str] | None = None,
    root: str | Path | None = None,
    content_sha256: str | None = None,
) -> torch.Tensor:
    """Parse and validate an index file; returns sorted int64 positions.

    Each line is a training-split position, or, when `paths` (the training split's file paths
    relative to the dataset root, in position order, as imagefolder data has them) is given, one
    of those paths (`train/cat/0001.jpg`; `./`, backslashes and absolute paths under `root` are
    accepted). `path` "-" reads the lines from stdin. A `# content-sha256:` header line (written
    by `remcli corrupt`) is checked against `content_sha256` when both are known.
    """
    if str(path) == STDIN:
        name, text = "stdin", sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"index file {p} not found; pass a file written by `remcli corrupt` or one index per line")
        name, text = str(p), p.read_text(encoding="utf-8", errors="replace")
    lookup = _path_lookup(paths, root)
    values: list[int] = []
    unknown: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        match = _FINGERPRINT_LINE.match(line)
        if match and fingerprint is not None and match.group(1) != fingerprint:
            raise InputError(f"index file {name} was written for data {match.group(1)}, not this dataset ({fingerprint}); use the matching --data")
        content = _CONTENT_LINE.match(line)
        if content and content_sha256 and content.group(1) != content_sha256:
            raise InputError(f"index file {name} was written for other images ({content.group(1)}) than this data holds ({content_sha256}; same labels, "
                             "different pixels or image order), so its positions would point at other images; restore the image files or rerun `remcli corrupt`")
        if not line or line.startswith("#"):
            continue
        if not re.fullmatch(r"-?\d+", line):
            position = lookup(line) if lookup else None
            if position is None:
                if lookup is None:
                    raise InputError(f"{name}:{number}: {line!r} is not an integer; write one sample index per line")
                unknown.append((number, line))
            else:
                values.append(position)
            continue
        value = int(line)
        if value < 0:
            raise InputError(f"{name}:{number}: index {value} is negative; indices are positions 0..{num_train - 1} in the training split")
        if value >= num_train:
            raise InputError(f"{name}:{number}: index {value} is outside the training split (0..{num_train - 1}); check that the file matches --data")
        values.append(value)
    if unknown:
        number, line = unknown[0]
        more = ", ".join(f"line {n} {bad!r}" for n, bad in unknown[1:4])
        rest = f" (also {more}{f' and {len(unknown) - 4} more' if len(unknown) > 4 else ''})" if more else ""
        raise InputError(f"{name}:{number}: {line!r} is not an integer or a training image path{rest}; write a position 0..{num_train - 1} "
                         f"or an image path relative to the dataset root, e.g. {paths[0]}")
    if not values:
        raise InputError(f"index file {name} lists no samples; give at least one identified sample index")
    ids = torch.tensor(values, dtype=torch.int64)
    unique, counts = torch.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        dup = unique[counts > 1][:3].tolist()
        raise InputError(f"index file {name} repeats indices {dup}; list each sample once")
    return unique


def _path_lookup(paths: Sequence[str] | None, root: str | Path | None) -> Callable[[str], int | None] | None:
    """line -> training position for a root-relative (or absolute, under `root`) image path; None if unknown."""
    if not paths:
        return None
    positions = {posixpath.normpath(p): i for i, p in enumerate(paths)}
    bases = [] if root is None else list(dict.fromkeys((Path(os.path.abspath(root)), Path(root).resolve())))

    def lookup(line: str) -> int | None:
        candidate = Path(line)
        if candidate.is_absolute():
            for base, target in ((b, t) for b in bases for t in (candidate, candidate.resolve())):
                if target.is_relative_to(base):
                    found = positions.get(target.relative_to(base).as_posix())
                    if found is not None:
                        return found
            return None
        return positions.get(posixpath.normpath(line.replace("\\", "/")))

    return lookup

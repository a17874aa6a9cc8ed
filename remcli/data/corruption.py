"""Corruption kinds, `corrupt()`, and the nested discovery subsets written as index files.

Three kinds span the regularity axis of the REM paper (how much the corrupted samples share a
learnable pattern, from one shared trigger to independent random labels), built without the
research code's quirks (docs/rem.md, "Data and evaluation"); each kind is registered with its
regularity:

* `label-noise` (low regularity): each chosen sample gets a uniformly random label that differs
  from its true one (the research code's label can equal the true label ~10% of the time).
* `interclass` (medium): swap the labels of two classes; the first N/2 samples of each.
* `poison` (high): a square trigger patch stamped in pixel space after augmentation, and the
  label set to a target class (BadNets-style backdoor).

`corrupt()` returns a `Manifest` (remcli.data.manifest). Discovery subsets are nested by
construction: one seeded permutation of the corrupted indices, rate r takes its first
round(r * n) entries.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from remcli.data.index_files import write_index_file
from remcli.data.manifest import Manifest
from remcli.data.triggers import Trigger
from remcli.errors import InputError
from remcli.fileio import atomic_write_text, check_writable_output
from remcli.registry import Registry
from remcli.seeding import generator

if TYPE_CHECKING:
    from remcli.data.datasets import Dataset

# ---------------------------------------------------------------------------------------------
# Corruption kinds, registered by name. Each returns (indices, new_labels, trigger | None); the
# keyword parameters after `seed` are the kind's own (recorded in the manifest, except `trigger`).

KindFn = Callable[..., tuple[torch.Tensor, torch.Tensor, Trigger | None]]
REGULARITIES = ("high", "medium", "low")  # how regular a kind's corrupted samples are, high first
KINDS = Registry[KindFn]("corruption kind")
_COMMON_PARAMETERS = ("labels", "count", "num_classes", "seed")


def register_kind(name: str, *, regularity: str, summary: str):
    """Decorator registering a corruption kind, its regularity (one of REGULARITIES) and a
    one-line summary (the `corrupt --kind` help)."""
    if regularity not in REGULARITIES:
        raise ValueError(f"corruption kind {name!r} has regularity {regularity!r}; use one of {', '.join(REGULARITIES)}")
    return KINDS.register(name, regularity=regularity, summary=summary)


def kind_names() -> tuple[str, ...]:
    return KINDS.names()


def kind_regularity(name: str) -> str:
    """The regularity ("high", "medium" or "low") of a registered kind."""
    return KINDS.meta(name)["regularity"]


def kind_parameters(name: str) -> tuple[str, ...]:
    """The kind's own keyword parameters (`target`, `trigger` for poison), in signature order."""
    parameters = inspect.signature(KINDS.get(name)).parameters.values()
    return tuple(p.name for p in parameters if p.name not in _COMMON_PARAMETERS and p.kind is not inspect.Parameter.VAR_KEYWORD)


def kinds_by_regularity() -> tuple[str, ...]:
    """Registered kinds from high to low regularity (the paper's Fig. 1 rows); registration order within a level."""
    return tuple(sorted(KINDS.names(), key=lambda name: REGULARITIES.index(kind_regularity(name))))


@register_kind("poison", regularity="high", summary="trigger patch + target label")
def _poison(labels: torch.Tensor, count: int, num_classes: int, seed: int, target: int = 0, trigger: Trigger = Trigger(), **_):
    if not 0 <= target < num_classes:
        raise InputError(f"poison target class {target} is outside 0..{num_classes - 1}; pick a valid --target")
    chosen = torch.randperm(len(labels), generator=generator(seed, "corrupt/poison/select"))[:count]
    return chosen, torch.full((count,), target, dtype=torch.int64), trigger


@register_kind("interclass", regularity="medium", summary="swap two classes")
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


@register_kind("label-noise", regularity="low", summary="random wrong labels")
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
    chosen, new, trigger = KINDS.get(kind)(labels, count, num_classes, seed, **params)
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
        trigger=None
        if trigger is None
        else {**asdict(trigger), "colour": list(trigger.colour), "space": "pixel [0,1], after augmentation, before normalisation"},
        content_sha256=content_sha256,
    )


def corrupt_dataset(
    dataset: Dataset,
    kind: str,
    count: int,
    seed: int = 0,
    *,
    target: int = 0,
    trigger: Trigger = Trigger(),
    classes: tuple[int, int] = (3, 5),
) -> Manifest:
    """The `remcli corrupt` step on a loaded dataset, shared by the CLI and sweeps so that both write
    the same manifest: the kind's parameters checked against the data and recorded (only the chosen
    kind's), and the dataset's spec, label fingerprint and content hash recorded, which later steps
    check positions against."""
    offered = {"target": target, "trigger": trigger, "classes": classes}
    params = {name: offered[name] for name in kind_parameters(kind)}
    side = min(dataset.input_shape[1:])
    if "trigger" in params and trigger.size > side:
        raise InputError(f"--patch-size {trigger.size} must be between 1 and the image side {side}")
    return corrupt(
        dataset.train.labels,
        dataset=dataset.spec,
        fingerprint=dataset.fingerprint,
        num_classes=dataset.num_classes,
        kind=kind,
        count=count,
        seed=seed,
        content_sha256=dataset.content_sha256,
        **params,
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


def forget_file_name(rate: float) -> str:
    """'forget-0.1.txt': the one spelling of a discovery rate's index file, in `corrupt --out` and sweep folders alike."""
    return f"forget-{rate_label(rate)}.txt"


def write_forget_file(path: str | Path, manifest: Manifest, rate: float, manifest_sha256: str) -> Path:
    """DIR/forget-<rate>.txt: the samples identified at `rate`, as an index file naming its manifest."""
    ids = identified_at(manifest, rate)
    comments = [
        f"corruption: {manifest.kind}, manifest sha256 {manifest_sha256}",
        f"discovery-rate: {rate_label(rate)} ({len(ids)} of {len(manifest.indices)} corrupted, seed {manifest.seed})",
    ]
    return write_index_file(
        path, ids, dataset=manifest.dataset, fingerprint=manifest.fingerprint, content_sha256=manifest.content_sha256, comments=comments
    )


def write_corruption(manifest: Manifest, out_dir: str | Path, rates: list[float], force: bool = False) -> dict[str, Path]:
    """Write DIR/corruption.json and DIR/forget-<rate>.txt; all-or-nothing per file, no partials."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    manifest.discovery = {rate_label(r): len(identified_at(manifest, r)) for r in rates}
    targets = {"manifest": out / "corruption.json", **{rate_label(r): out / forget_file_name(r) for r in rates}}
    if out.is_dir():
        for path in targets.values():
            check_writable_output(path, force)
    out.mkdir(parents=True, exist_ok=True)
    text = manifest.to_json()
    digest = sha256_text(text)
    for rate in rates:
        write_forget_file(targets[rate_label(rate)], manifest, rate, digest)
    atomic_write_text(targets["manifest"], text)
    return targets

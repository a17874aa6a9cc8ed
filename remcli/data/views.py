"""The views of a dataset that training, unlearning and evaluation loops iterate over.

* the training view: what the model trains on, corrupted labels and triggers applied,
  validation samples held out;
* clean views: any positions with their true labels, optionally all triggered (for attack
  success and healed-under-trigger metrics).
"""

from __future__ import annotations

import torch

from remcli.data.datasets import Dataset, Split
from remcli.data.manifest import Manifest
from remcli.data.pipeline import SampleView
from remcli.data.triggers import Trigger
from remcli.seeding import generator


def validation_split(dataset: Dataset, manifest: Manifest | None, fraction: float, seed: int) -> torch.Tensor:
    """Seeded held-out positions. Corrupted samples are never held out, so every corrupted
    sample is trained on, as in the paper's protocol."""
    if fraction <= 0:
        return torch.empty(0, dtype=torch.int64)
    eligible = torch.ones(len(dataset.train), dtype=torch.bool)
    if manifest is not None:
        eligible[manifest.index_tensor] = False
    candidates = torch.nonzero(eligible).flatten()
    count = int(round(fraction * len(dataset.train)))
    perm = torch.randperm(len(candidates), generator=generator(seed, "train/validation"))
    return torch.sort(candidates[perm[:count]]).values


def as_trained_view(dataset: Dataset, manifest: Manifest | None, positions: torch.Tensor, device: torch.device) -> SampleView:
    """Training samples exactly as the model saw them: corrupted labels and triggers applied."""
    num_train = len(dataset.train)
    labels = dataset.train.labels if manifest is None else manifest.corrupted_labels(dataset.train.labels)
    triggered = torch.zeros(num_train, dtype=torch.bool) if manifest is None else manifest.triggered_mask(num_train)
    trigger = None if manifest is None else manifest.trigger_spec
    return SampleView(dataset.train.images[positions], labels[positions], triggered[positions], positions, trigger).to(device)


def training_view(dataset: Dataset, manifest: Manifest | None, held_out: torch.Tensor, device: torch.device) -> SampleView:
    """The whole training set as the model saw it, held-out validation samples removed."""
    keep = torch.ones(len(dataset.train), dtype=torch.bool)
    keep[held_out] = False
    return as_trained_view(dataset, manifest, torch.nonzero(keep).flatten(), device)


def clean_view(split: Split, positions: torch.Tensor | None, device: torch.device, trigger: Trigger | None = None) -> SampleView:
    """Samples with their true labels; with a `trigger`, every one of them is triggered."""
    if positions is None:
        positions = torch.arange(len(split))
    count = len(positions)
    triggered = torch.full((count,), trigger is not None, dtype=torch.bool)
    return SampleView(split.images[positions], split.labels[positions], triggered, positions, trigger).to(device)

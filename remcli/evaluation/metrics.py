"""Corrective-unlearning metrics as small pure functions on prediction tensors.

All values are fractions in [0, 1]; an empty selection gives None rather than a made-up number.
Definitions follow the REM paper's evaluation (Healed, Utility, Utility x Healed), with an attack
success rate added for poisons: ASR counts only test images whose true class is not the target
(a triggered image of the target class would count as a hit whatever the model learned).
"""

from __future__ import annotations

import torch


def accuracy(preds: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> float | None:
    if keep is not None:
        preds, labels = preds[keep], labels[keep]
    if labels.numel() == 0:
        return None
    return float((preds == labels).float().mean())


def utility_mask(test_labels: torch.Tensor, excluded_classes: tuple[int, ...]) -> torch.Tensor:
    """Test samples that count for utility: all, minus the swapped classes for interclass."""
    keep = torch.ones_like(test_labels, dtype=torch.bool)
    for cls in excluded_classes:
        keep &= test_labels != cls
    return keep


def attack_success_rate(triggered_preds: torch.Tensor, true_labels: torch.Tensor, target: int) -> float | None:
    """Fraction of triggered non-target-class test images predicted as the target."""
    non_target = true_labels != target
    return accuracy(triggered_preds, torch.full_like(true_labels, target), non_target)


def product(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a * b

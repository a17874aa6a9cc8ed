"""Per-parameter importance and dampening, shared by SSD, Potion and SalUn's mask (pure-ish tensor code).

Importance is a mean over batches of a per-parameter function of the batch-mean gradient:
squared (SSD's diagonal Fisher) or absolute (Potion, SalUn). Dampening multiplies the selected
parameters by min(lambda * I_ref / I_forget, 1), so it can only shrink weights, never grow them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from remcli.data.pipeline import Batch

Importance = dict[str, torch.Tensor]


def parameter_importance(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    power: int = 2,
) -> Importance:
    """mean over batches of |d loss / d theta| ** power, per parameter (model in eval mode, fp32)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    totals = [torch.zeros_like(p, dtype=torch.float32) for _, p in named]
    count = 0
    was_training = model.training
    model.eval()
    for batch in batches:
        loss = loss_fn(model, batch)
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        for total, grad in zip(totals, grads):
            if grad is not None:
                total.add_(grad.float().abs() if power == 1 else grad.float().pow(power))
        count += 1
    model.train(was_training)
    return {n: t / max(count, 1) for (n, _), t in zip(named, totals)}


def cross_entropy_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(model(batch.inputs), batch.labels)


def logit_norm_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Potion's label-free loss: batch mean of the L2 norm of the logits (not squared)."""
    return model(batch.inputs).float().norm(dim=1).mean()


def dampening_factors(forget: Importance, reference: Importance, alpha: float, lam: float) -> dict[str, torch.Tensor]:
    """SSD: where I_forget > alpha * I_ref multiply by min(lam * I_ref / I_forget, 1), else by 1."""
    factors = {}
    for name, imp_f in forget.items():
        imp_r = reference[name]
        selected = imp_f > alpha * imp_r
        scale = (lam * imp_r / imp_f.clamp_min(torch.finfo(imp_f.dtype).tiny)).clamp(max=1.0)
        factors[name] = torch.where(selected, scale, torch.ones_like(scale))
    return factors


@torch.no_grad()
def apply_factors(model: nn.Module, originals: dict[str, torch.Tensor], factors: dict[str, torch.Tensor]) -> int:
    """Set each parameter to original * factor; returns how many entries were changed."""
    changed = 0
    for name, p in model.named_parameters():
        if name in factors:
            p.copy_(originals[name] * factors[name].to(p.dtype))
            changed += int((factors[name] < 1).sum())
    return changed


def importance_ratios(forget: Importance, reference: Importance) -> torch.Tensor:
    """All finite I_forget / I_ref ratios, flattened and sorted ascending (Potion's percentiles)."""
    ratios = torch.cat([(forget[n] / reference[n]).flatten() for n in forget])
    return torch.sort(ratios[torch.isfinite(ratios)].float().cpu()).values


def percentile(sorted_values: torch.Tensor, q: float) -> float:
    """The q-th percentile (0..100) of an ascending 1-D tensor, by order statistic (nearest rank).

    Taking sorted input lets Potion's search sort the ratios once and read hundreds of
    percentiles for free (torch.quantile also refuses tensors over 16M entries).
    """
    if sorted_values.numel() == 0:
        return float("inf")
    rank = min(max(int(round(q / 100.0 * (sorted_values.numel() - 1))), 0), sorted_values.numel() - 1)
    return float(sorted_values[rank])


def top_fraction_mask(scores: Importance, fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the `fraction` of entries with the largest scores, over all tensors at once."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = int(round(fraction * flat.numel()))
    if keep <= 0:
        return {n: torch.zeros_like(s, dtype=torch.bool) for n, s in scores.items()}
    threshold = torch.topk(flat.float().cpu(), keep, sorted=True).values[-1].to(flat.device)
    masks = {n: s >= threshold for n, s in scores.items()}
    excess = sum(int(m.sum()) for m in masks.values()) - keep
    if excess > 0:  # ties at the threshold: drop the surplus, first tensors first, deterministically
        for n, s in scores.items():
            tied = torch.nonzero((s == threshold).flatten()).flatten()
            drop = tied[: min(excess, len(tied))]
            masks[n].view(-1)[drop] = False
            excess -= len(drop)
            if excess == 0:
                break
    return masks

"""Per-sample losses and the selection proxy shared by unlearning methods (pure functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def npo_term(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-sample l(s) = (2/beta) log sigmoid(beta (CE(s) - CE_ref(s))).

    CE - CE_ref = -log(pi/pi_ref), so this is the NPO/DPO form (rem-method.md §3.2). Minimising
    -l pushes CE up (removal) with the self-limiting weight 2 sigmoid(CE_ref - CE); minimising
    +l pulls CE down relative to the reference (REM's redirect term).
    """
    return (2.0 / beta) * F.logsigmoid(beta * (ce - ce_ref))


def npo_weight(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-sample weight 2 sigmoid(beta (CE_ref - CE)) that NPO puts on a sample's CE gradient.

    It is 1 where the model agrees with the reference and falls to 0 as CE grows past CE_ref: a
    sample whose weight is ~0 no longer takes part in any NPO term (removal or redirect).
    """
    return 2.0 * torch.sigmoid(beta * (ce_ref - ce))


def npo_loss(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Standard NPO on the forget set: -mean l(s)."""
    return -npo_term(ce, ce_ref, beta).mean()


def rem_repair_loss(
    ce_fit: torch.Tensor,
    ce_drop: torch.Tensor | None,
    ce_ref: torch.Tensor,
    identified: torch.Tensor,
    beta: float = 1.0,
    fit_identified: bool = True,
    removing: torch.Tensor | None = None,
) -> torch.Tensor:
    """REM step 3 (code form): mean over the batch of l_fit(s) - 1[s removing] l_drop(s).

    `ce_fit` is the redirect view's CE (old + masked new units). The removal term is averaged
    over the whole mixed batch, as in the paper's code (§8.4). `ce_drop=None` switches continued
    removal off (`--no-continued-removal`); `fit_identified=False` zeroes the identified samples'
    fit term (the `--no-redirect` ablation, where the fit runs in the drop view). `removing` (default:
    `identified`) are the rows whose removal term counts; `removal="while-preferred"` passes the
    identified rows the drop view still predicts with their corrupted label.
    """
    removing = identified if removing is None else removing
    loss = npo_term(ce_fit, ce_ref, beta)
    if not fit_identified:
        loss = loss * (~identified).to(loss.dtype)
    if ce_drop is not None:
        loss = loss - removing.to(loss.dtype) * npo_term(ce_drop, ce_ref, beta)
    return loss.mean()


def selection_proxy(retain_acc: float, forget_acc: float, gamma: float) -> float:
    """retain-acc x (1 - max(forget-acc, gamma)): higher is better; forget-acc below gamma earns nothing more."""
    return retain_acc * (1.0 - max(forget_acc, gamma))

"""Per-sample losses and the selection proxy shared by unlearning methods (pure functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def npo_term(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-sample l(s) = (2/beta) log sigmoid(beta (CE(s) - CE_ref(s))).

    CE - CE_ref = -log(pi/pi_ref), so this is the NPO/DPO form, as REM's research code computes it. Minimising
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


def per_sample_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per row, in fp32 whatever precision produced the logits."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


RETAIN_LOSSES = ("npo", "ce")
REMOVALS = ("npo", "while-preferred")


def rem_repair_loss(
    fit_logits: torch.Tensor,
    labels: torch.Tensor,
    identified: torch.Tensor,
    ref_ce: torch.Tensor,
    drop_logits: torch.Tensor | None = None,
    beta: float = 1.0,
    retain_loss: str = "npo",
    fit_identified: bool = True,
    removal: str = "npo",
    identified_weight: float = 1.0,
) -> torch.Tensor:
    """REM's repair loss for one batch, from the views' logits: the mean over the batch of
    fit(s) - 1[s removed] l_drop(s).

    * `fit_logits` (B, K): the redirect view (old + masked new units) on every row; with the
      `--no-redirect` ablation, the drop view.
    * fit(s): NPO's l(s) = (2/beta) log sigmoid(beta (CE - CE_ref)) pulls CE down relative to the
      reference. Identified rows always fit this way (they are fitted *into the new units*), unless
      `fit_identified=False` (the no-redirect ablation), which zeroes their fit term. Retain rows
      use the same NPO term (`retain_loss="npo"`, the research code) or plain cross-entropy
      (`"ce"`), which needs no reference CE for them.
    * `drop_logits` (n_identified, K): the drop view (the model that is kept) on the identified rows
      alone, in batch order; `None` switches continued removal off. Only these rows carry a removal
      term, so nothing else of the drop view is needed.
    * `removal="while-preferred"`: the removal term counts only for identified rows the drop view
      still predicts with their (corrupted) label; `"npo"` (research code): every identified row.
    * `identified_weight` scales the identified rows' terms (fit and removal): REM's repair on a
      fraction f of the retain rows passes f, so the identified rows weigh in each batch as they
      would in a full epoch's batch.
    * `ref_ce` (B,): the frozen input model's CE. Rows read: all with `retain_loss="npo"`, only the
      identified ones with `"ce"` (the others may hold anything).

    The removal term is averaged over the whole mixed batch, as in the research code.
    """
    if retain_loss not in RETAIN_LOSSES:
        raise ValueError(f"retain_loss {retain_loss!r}; use {' or '.join(RETAIN_LOSSES)}")
    if removal not in REMOVALS:
        raise ValueError(f"removal {removal!r}; use {' or '.join(REMOVALS)}")
    ce_fit = per_sample_ce(fit_logits, labels)
    rows = torch.nonzero(identified).flatten()
    retain = ~identified
    if retain_loss == "npo":
        fit_retain = npo_term(ce_fit[retain], ref_ce[retain], beta).sum()
    else:
        fit_retain = ce_fit[retain].sum()
    total = fit_retain
    if fit_identified and len(rows):
        total = total + identified_weight * npo_term(ce_fit[rows], ref_ce[rows], beta).sum()
    if drop_logits is not None and len(rows):
        if drop_logits.shape[0] != len(rows):
            raise ValueError(f"drop_logits has {drop_logits.shape[0]} rows for {len(rows)} identified rows")
        labels_id = labels[rows]
        removed = npo_term(per_sample_ce(drop_logits, labels_id), ref_ce[rows], beta)
        if removal == "while-preferred":
            removed = removed * (drop_logits.argmax(1) == labels_id).to(removed.dtype)
        total = total - identified_weight * removed.sum()
    return total / labels.shape[0]


def selection_proxy(retain_acc: float, forget_acc: float, gamma: float) -> float:
    """retain-acc x (1 - max(forget-acc, gamma)): higher is better; forget-acc below gamma earns nothing more."""
    return retain_acc * (1.0 - max(forget_acc, gamma))

"""SSD, Selective Synaptic Dampening (Foster, Schoepf, Brintrup, AAAI 2024). No training.

Importance = mean over batches of the squared CE gradient (a diagonal Fisher), on the identified
set and on a reference set. Parameters with I_forget > alpha * I_ref are multiplied by
min(lam * I_ref / I_forget, 1), so weights only shrink. The reference is the whole training set
as in the original (`reference=retain` gives the corrective benches' choice). SSD is sensitive to
alpha; the defaults are the paper's ResNet/CIFAR values (alpha 10, lambda 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from remcli.config import Settings
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.importance import (
    apply_factors,
    cross_entropy_loss,
    dampening_factors,
    parameter_importance,
)


@dataclass
class SSDConfig(Settings):
    CHOICES = {"reference": ("train", "retain")}

    alpha: float = 10.0  # selection weighting
    lam: float = 1.0  # dampening constant (lambda)
    batch_size: int = 128
    reference: str = "train"  # train (original: retain + identified) | retain (benches)


@register_method(
    "ssd",
    SSDConfig,
    "Dampen weights far more important to the identified set than to the data (Fisher ratio)",
    data="identified set + training set (importance only)",
    budget="2 gradient passes, no optimiser",
    cost="~2.5%",
    gradient_steps=False,
)
def ssd(task: UnlearnTask, cfg: SSDConfig) -> MethodResult:
    model = task.model
    reference_view = task.train_view if cfg.reference == "train" else task.retain_view
    task.reporter.phase("ssd: importance", None)
    forget = parameter_importance(model, task.forget_view.batches(task.spec, cfg.batch_size), cross_entropy_loss, power=2)
    reference = parameter_importance(model, reference_view.batches(task.spec, cfg.batch_size), cross_entropy_loss, power=2)
    originals = {n: p.detach().clone() for n, p in model.named_parameters()}
    changed = apply_factors(model, originals, dampening_factors(forget, reference, cfg.alpha, cfg.lam))
    total = sum(p.numel() for p in originals.values())
    model.eval()
    return MethodResult(model=model, steps=0, log={"dampened": changed, "dampened_fraction": round(changed / total, 6), "reference": cfg.reference})

"""Potion (Schoepf, Foster, Brintrup 2024): label-free SSD with Poison Trigger Neutralisation search.

Importance = mean over batches of |d mean ||f(x)||_2 / d theta| (absolute gradient of the logit
norm, no labels), on the retain set and on the identified set, computed once. A try with size
s dampens a fresh copy of the input model, selecting parameters whose ratio I_forget / I_retain
exceeds its (100 - ln(1 + 100 s))-th percentile (lambda = 1). The search starts at
s0 = |identified| / |train| / 25 and multiplies s by 1.1 until the identified samples' accuracy
on their corrupted labels is <= rho x the input model's (the relative rule of the Potion code;
rho = 0.2 as in the REM paper's runs), at most 500 tries. No test data is used; weights only shrink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from remcli.config import Settings
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.importance import (
    apply_factors,
    dampening_factors,
    importance_ratios,
    logit_norm_loss,
    parameter_importance,
    percentile,
)


@dataclass
class PotionConfig(Settings):
    rho: float = 0.2  # accept when identified acc <= rho x the input model's (p_cut)
    step_mult: float = 1.1  # s grows by this factor after each rejected try
    start_divisor: float = 25.0  # s0 = |identified| / |train| / start_divisor
    max_tries: int = 500
    lam: float = 1.0
    batch_size: int = 128


def selection_percentile(s: float) -> float:
    """Potion's adaptive percentile P = 100 - ln(1 + 100 s)."""
    return 100.0 - math.log(1.0 + 100.0 * s)


@register_method(
    "potion",
    PotionConfig,
    "Label-free SSD whose dampening grows until the identified samples' corrupted labels fail",
    data="identified set + retain set",
    budget="1 importance pass, <= {max_tries} dampening tries",
    cost="~3-5%",
    gradient_steps=False,
)
def potion(task: UnlearnTask, cfg: PotionConfig) -> MethodResult:
    model = task.model
    task.reporter.phase("potion: importance", None)
    forget = parameter_importance(model, task.forget_view.batches(task.spec, cfg.batch_size), logit_norm_loss, power=1)
    retain = parameter_importance(model, task.retain_view.batches(task.spec, cfg.batch_size), logit_norm_loss, power=1)
    ratios = importance_ratios(forget, retain)
    originals = {n: p.detach().clone() for n, p in model.named_parameters()}
    start_acc = task.accuracy(model, task.forget_view)
    target = cfg.rho * start_acc
    s = len(task.identified) / len(task.train_view) / cfg.start_divisor
    trace, accepted = [], False
    task.reporter.phase(f"potion: search (target identified acc <= {target:.3f})", cfg.max_tries)
    for attempt in range(1, cfg.max_tries + 1):
        p = selection_percentile(s)
        alpha = percentile(ratios, max(p, 0.0))
        changed = apply_factors(model, originals, dampening_factors(forget, retain, alpha, cfg.lam))
        acc = task.accuracy(model, task.forget_view)
        trace.append({"try": attempt, "s": round(s, 8), "percentile": round(p, 5), "alpha": alpha, "dampened": changed, "forget_acc": round(acc, 5)})
        task.reporter.advance(1, forget_acc=acc)
        if acc <= target:
            accepted = True
            break
        if p <= 0:
            break
        s *= cfg.step_mult
    model.eval()
    log = {
        "start_forget_acc": round(start_acc, 5),
        "target_forget_acc": round(target, 5),
        "accepted": accepted,
        "tries": len(trace),
        "final": trace[-1],
        "trace": trace,
    }
    return MethodResult(model=model, steps=0, log=log)

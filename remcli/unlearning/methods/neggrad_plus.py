"""NegGrad+ (Kurmanji et al. 2023): descend on retain batches and ascend on identified batches at once.

loss = retain_weight * CE(retain batch) - (1 - retain_weight) * CE(identified batch), identified
batches cycled. There is no canonical default for the weight (it is tuned in the literature);
0.9 over 5 retain epochs is a middle setting. Keeps the last iterate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch.nn.functional as F

from remcli.data.pipeline import Batch
from remcli.seeding import generator
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.training import FitConfig, fit


@dataclass
class NegGradPlusConfig(FitConfig):
    epochs: int = 5
    lr: float = 0.01
    retain_weight: float = 0.9  # beta in the paper: weight of the retain CE; 1 - beta on the ascent term
    forget_batch_size: int = 128


def cycle(task: UnlearnTask, batch_size: int, purpose: str) -> Iterator[Batch]:
    """Endless shuffled, augmented batches of the identified set."""
    order = generator(task.seed, purpose, task.device)
    while True:
        yield from task.forget_view.batches(task.spec, batch_size, order, augment=True)


@register_method(
    "neggrad+",
    NegGradPlusConfig,
    "Joint descent on the retain set and ascent on the identified set",
    data="retain set + identified set",
    budget="{epochs} epochs, lr {lr:g}, retain weight {retain_weight:g}",
    cost="~12%",
)
def neggrad_plus(task: UnlearnTask, cfg: NegGradPlusConfig) -> MethodResult:
    model = task.model
    forget_batches = cycle(task, cfg.forget_batch_size, "unlearn/neggrad+/forget-batches")

    def loss(batch):
        forget = next(forget_batches)
        retain_ce = F.cross_entropy(model(batch.inputs), batch.labels)
        forget_ce = F.cross_entropy(model(forget.inputs), forget.labels)
        return cfg.retain_weight * retain_ce - (1 - cfg.retain_weight) * forget_ce

    result = fit(task, model, task.retain_view, loss, cfg, "neggrad+")
    return MethodResult(model=model, steps=result.steps, log={"epochs": result.epochs})

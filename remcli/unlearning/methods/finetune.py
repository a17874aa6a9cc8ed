"""Finetune: continue training the input model on the retain set with a fresh optimiser.

Relies on catastrophic forgetting of the identified samples. Defaults are the
corrective bench's (1000 steps at lr 0.025 ~ 10 epochs of CIFAR-10 at batch 512, 1% warm-up then
linear decay). Keeps the last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.training import FitConfig, fit


@dataclass
class FinetuneConfig(FitConfig):
    epochs: int = 10
    lr: float = 0.025


@register_method(
    "finetune",
    FinetuneConfig,
    "Continue training on the retain set; forgetting by interference",
    data="retain set",
    budget="{epochs} epochs, lr {lr:g} (bench)",
    cost="~25%",
    data_parallel=True,
)
def finetune(task: UnlearnTask, cfg: FinetuneConfig) -> MethodResult:
    model = task.model
    result = fit(task, model, task.retain_view, lambda b: F.cross_entropy(model(b.inputs), b.labels), cfg, "finetune")
    return MethodResult(model=model, steps=result.steps, log={"epochs": result.epochs})

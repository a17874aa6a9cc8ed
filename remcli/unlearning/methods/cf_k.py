"""CF-k (Goel et al. 2022): fine-tune only the last k blocks on the retain set.

"Block" is generic (`remcli inspect --blocks`), so k works on any torchvision model; for resnet9
the blocks are the bench's module list (conv1 ... conv4, fc, with residual branches split).
Everything before the head is frozen and kept in eval mode, so its weights and BatchNorm
statistics come out bit-identical. Keeps the last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.training import (
    FitConfig,
    fit,
    freeze_outside,
    head_blocks,
    reinitialise,
)


@dataclass
class CFKConfig(FitConfig):
    k: int = 2  # how many trailing blocks train (-1: all of them)
    epochs: int = 10
    lr: float = 0.025


def train_last_blocks(task: UnlearnTask, cfg: CFKConfig, name: str, reinit: bool) -> MethodResult:
    model = task.model
    blocks = head_blocks(model, cfg.k, name)
    if reinit:
        reinitialise([m for n, m in model.named_modules() if n in blocks], task.seed, f"unlearn/{name}/init")
    params, set_mode = freeze_outside(model, blocks)
    result = fit(task, model, task.retain_view, lambda b: F.cross_entropy(model(b.inputs), b.labels), cfg, name, params=params, set_mode=set_mode)
    for p in model.parameters():
        p.requires_grad_(True)
    return MethodResult(model=model, steps=result.steps, log={"blocks": blocks, "reinitialised": reinit, "epochs": result.epochs})


@register_method(
    "cf-k",
    CFKConfig,
    "Fine-tune only the last k blocks on the retain set (rest frozen)",
    data="retain set",
    budget="{epochs} epochs, lr {lr:g}, k={k}",
    cost="~10-20%",
)
def cf_k(task: UnlearnTask, cfg: CFKConfig) -> MethodResult:
    return train_last_blocks(task, cfg, "cf-k", reinit=False)

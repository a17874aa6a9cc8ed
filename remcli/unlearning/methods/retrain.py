"""Retrain: the checkpoint's starting point trained on the retain set with the checkpoint's own recipe.

The starting point is a fresh initialisation, or, for a checkpoint fine-tuned with `train --init`, the
same init (checked by sha256): the retraining a practitioner who fine-tunes would do.

The retain set still holds the undiscovered corrupted samples, which is why retraining fails at
low discovery rates: they teach the corruption again. Budget, lr, batch size and optimiser default to what the
checkpoint's `train` history records, so "cost 100%" means the cost of the original training.
Keeps the last iterate, like `remcli train`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from remcli.models.recipes import train_lr
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.training import BudgetSettings, FitConfig, OptimiserSettings, fit


@dataclass
class RetrainConfig(BudgetSettings, OptimiserSettings):
    """Every budget and optimiser setting defaults to the checkpoint's recorded training (None)."""

    epochs: int | None = None  # None: the recorded training epochs (else 40)
    lr: float | None = None  # None: the recorded training lr (else 0.025 SGD / 1e-4 Adam)
    batch_size: int | None = None  # None: the recorded training batch size (else 512)
    optimizer: str | None = None  # None: the recorded optimiser (else sgd)
    weight_decay: float | None = None  # None: the recorded weight decay (else 5e-4)


def resolve_budget(cfg: RetrainConfig, recorded: dict) -> FitConfig:
    optimizer = cfg.optimizer or recorded.get("optimizer") or "sgd"
    default_lr = recorded.get("lr") if recorded.get("optimizer", optimizer) == optimizer and recorded.get("lr") else train_lr(optimizer)
    return FitConfig(
        epochs=cfg.epochs if cfg.epochs is not None else int(recorded.get("epochs", 40)),
        lr=cfg.lr if cfg.lr is not None else float(default_lr),
        batch_size=cfg.batch_size if cfg.batch_size is not None else int(recorded.get("batch_size", 512)),
        optimizer=optimizer,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay if cfg.weight_decay is not None else float(recorded.get("weight_decay", 5e-4)),
        schedule="warmup-linear" if optimizer == "sgd" else "constant",
    )


@register_method(
    "retrain",
    RetrainConfig,
    "Re-initialise (or restart from the recorded --init) and train on the retain set (the checkpoint's recipe)",
    data="retain set",
    budget="the checkpoint's training run (epochs, lr, batch)",
    cost="100%",
    data_parallel=True,
)
def retrain(task: UnlearnTask, cfg: RetrainConfig) -> MethodResult:
    budget = resolve_budget(cfg, task.train_params)
    model = task.initial_model("unlearn/retrain/init")
    result = fit(task, model, task.retain_view, lambda b: F.cross_entropy(model(b.inputs), b.labels), budget, "retrain")
    log = {
        "budget": vars(budget),
        "from_recorded_training": bool(task.train_params),
        "trained_samples": len(task.retain_view),
        "epochs": result.epochs,
        "init": {"path": task.init["path"], "sha256": task.init["sha256"]} if task.init else None,
    }
    return MethodResult(model=model, steps=result.steps, log=log)

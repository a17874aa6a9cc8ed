"""Shared machinery of the gradient-based baselines: budgets, the fitting loop, heads, re-init.

Written once so every baseline goes through the same `Engine` (autocast, step counting, progress)
and the same seeded batch order. A method module only says which data, which loss and which
parameters train; everything else is here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from remcli.config import Settings
from remcli.data.pipeline import Batch, SampleView, training_batch_bounds
from remcli.engine import (
    OPTIMIZERS,
    Engine,
    OptimConfig,
    make_optimizer,
    warmup_linear_decay,
)
from remcli.errors import InputError
from remcli.models.blocks import list_blocks
from remcli.seeding import generator, seeded_global_rng
from remcli.unlearning.base import UnlearnTask

SCHEDULES = ("warmup-linear", "constant")


@dataclass
class OptimiserSettings(Settings):
    """The optimiser part of a method's settings, defined once: `--lr`, `--optimizer` and the
    `momentum` / `weight_decay` settings mean the same in every method that has them. A method
    whose default comes from its recipe, variant or recorded training redeclares the field as
    `| None` (None: that default), and resolves it before `optim()`."""

    CHOICES = {"optimizer": OPTIMIZERS}

    lr: float = 0.025
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def optim(self) -> OptimConfig:
        """The Engine's optimiser (every field resolved)."""
        return OptimConfig(name=self.optimizer, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


@dataclass
class BudgetSettings(Settings):
    """The budget part: passes over the method's main data (~980 steps on CIFAR-10 at batch 512),
    and the samples per step."""

    epochs: int = 10
    batch_size: int = 512


@dataclass
class FitConfig(BudgetSettings, OptimiserSettings):
    """The budget every gradient-based baseline shares; methods subclass it with their defaults."""

    CHOICES = {**OptimiserSettings.CHOICES, "schedule": SCHEDULES}

    schedule: str = "warmup-linear"  # the benches' 1% warm-up + linear decay, or constant

    def lr_schedule(self, total_steps: int) -> Callable[[int], float] | None:
        return warmup_linear_decay(total_steps) if self.schedule == "warmup-linear" else None


def make_engine(
    task: UnlearnTask,
    params: Iterable[nn.Parameter],
    optim: OptimConfig,
    schedule: Callable[[int], float] | None = None,
    synced_modules: Iterable[nn.Module] = (),
) -> Engine:
    """The method's Engine; `synced_modules` hold the BatchNorm statistics kept equal across torchrun ranks."""
    return Engine(make_optimizer(params, optim), task.device, task.precision, schedule, task.reporter, task.group, synced_modules)


@dataclass
class FitResult:
    steps: int
    epochs: list[dict] = field(default_factory=list)


def steps_per_epoch(view: SampleView, batch_size: int) -> int:
    return len(training_batch_bounds(len(view), batch_size))


def fit(
    task: UnlearnTask,
    model: nn.Module,
    view: SampleView,
    loss_fn: Callable[[Batch], torch.Tensor],
    cfg: FitConfig,
    name: str,
    params: Iterable[nn.Parameter] | None = None,
    set_mode: Callable[[nn.Module], None] | None = None,
    engine: Engine | None = None,
) -> FitResult:
    """`cfg.epochs` augmented, shuffled passes over `view` minimising `loss_fn`; keeps the last iterate.

    `params` defaults to every trainable parameter; `set_mode` (default `model.train()`) lets
    cf-k keep its frozen prefix in eval mode. Validation accuracy is logged per epoch when the
    checkpoint recorded a validation split; it is reported, not used to select.
    """
    if len(view) == 0:
        raise InputError(f"{name}: no training samples to fit on (the retain set is empty)")
    per_epoch = steps_per_epoch(view, cfg.batch_size)
    trained = params if params is not None else model.parameters()
    engine = engine or make_engine(task, trained, cfg.optim(), cfg.lr_schedule(per_epoch * cfg.epochs), (model,))
    order = generator(task.seed, f"unlearn/{name}/batches", task.device)

    def validation_accuracy() -> dict:
        return {"val_acc": round(task.accuracy(model, task.validation_view), 5)}

    log, _ = engine.fit(
        model,
        lambda: view.batches(task.spec, cfg.batch_size, order, augment=True),
        loss_fn,
        cfg.epochs,
        name,
        per_epoch,
        validation_accuracy if task.validation_view is not None else None,
        set_mode,
    )
    return FitResult(steps=engine.steps, epochs=log)


# --- heads: the last k blocks ---------------------------------------------------------------


def head_blocks(model: nn.Module, k: int, method: str) -> list[str]:
    """The last k generic blocks (`remcli inspect --blocks`); k = -1 means every block."""
    blocks = list_blocks(model)
    if k == -1:
        return blocks
    if not 1 <= k <= len(blocks):
        raise InputError(
            f"{method}: k={k} is out of range; this model has {len(blocks)} blocks (use 1..{len(blocks)} or -1 for all; see `remcli inspect "
            "--blocks`)"
        )
    return blocks[-k:]


def _under(name: str, blocks: list[str]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in blocks)


def freeze_outside(model: nn.Module, blocks: list[str]) -> tuple[list[nn.Parameter], Callable[[nn.Module], None]]:
    """Freeze every parameter outside `blocks`; returns the trainable ones and a mode setter
    that keeps the frozen prefix in eval mode (its BatchNorm statistics stay untouched)."""
    trainable = []
    for name, p in model.named_parameters():
        inside = _under(name, blocks)
        p.requires_grad_(inside)
        if inside:
            trainable.append(p)
    head = [m for n, m in model.named_modules() if n in blocks]

    def set_mode(net: nn.Module) -> None:
        net.eval()
        for m in head:
            m.train()

    return trainable, set_mode


def reinitialise(modules: Iterable[nn.Module], seed: int, purpose: str) -> None:
    """Re-run each submodule's own initialiser (`reset_parameters`), seeded by (seed, purpose).

    BatchNorm layers also reset their running statistics, as in the benches' EU-k.
    """
    with seeded_global_rng(seed, purpose), torch.no_grad():
        for module in modules:
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
                if callable(reset):
                    reset()

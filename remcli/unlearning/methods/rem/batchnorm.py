"""REM's BatchNorm handling: which statistics each view runs on, and the recalibration that
re-estimates the kept model's running statistics.

With `drop_view="identified"` (the default) the drop view runs on the identified rows alone, on
running statistics, so no gradient pass updates the kept model's running statistics; `Recalibration`
re-estimates them from `bn_recalibration` retain samples after every flush and repair, so eval mode
(selection, the checkpoint) sees the kept model's own statistics (docs/rem.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from remcli.engine import autocast
from remcli.seeding import generator
from remcli.unlearning.base import UnlearnTask, eval_mode
from remcli.unlearning.methods.rem.config import REMConfig


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def set_train_mode(model: nn.Module, bn: str) -> None:
    """Train mode, with BatchNorm layers in eval mode (running statistics) when bn is frozen."""
    model.train()
    if bn == "frozen":
        for m in model.modules():
            if is_norm(m):
                m.eval()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch statistics are used but running statistics are not updated (momentum 0)."""
    norms = [m for m in model.modules() if is_norm(m) and m.training]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@contextlib.contextmanager
def norms_in_eval(model: nn.Module) -> Iterator[None]:
    """BatchNorm on its running statistics (rows independent, nothing updated) inside."""
    norms = [m for m in model.modules() if is_norm(m) and m.training]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, precision: str, device: torch.device) -> int:
    """Re-estimate every BatchNorm's running statistics as the plain average of the batch statistics
    of `batches` (the rest of the model in eval mode); returns the images passed."""
    norms = [m for m in model.modules() if is_norm(m)]
    if not norms:
        return 0
    saved = [m.momentum for m in norms]
    seen = 0
    with eval_mode(model):  # every submodule gets its own mode back afterwards
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
            m.train()
        try:
            for batch in batches:
                with autocast(device, precision):
                    model(batch.inputs)
                seen += int(batch.labels.shape[0])
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum
    return seen


class Recalibration:
    """The seeded retain samples a run recalibrates from, or none where the gradient passes keep the
    running statistics (`drop_view="batch"`, frozen BatchNorm, `bn_recalibration=0`)."""

    def __init__(self, task: UnlearnTask, cfg: REMConfig):
        self.task, self.cfg = task, cfg
        self.augment = generator(task.seed, "unlearn/rem/bn-recalibration-augment", task.device)
        count = min(cfg.bn_recalibration, len(task.retain_view))
        self.view = None
        if cfg.drop_view == "identified" and cfg.bn == "batch" and count > 0:
            order = torch.randperm(len(task.retain_view), generator=generator(task.seed, "unlearn/rem/bn-recalibration"))[:count]
            self.view = task.retain_view.subset(torch.sort(order).values)

    def __len__(self) -> int:
        return len(self.view) if self.view is not None else 0

    def __call__(self, model: nn.Module) -> int:
        """Recalibrate `model` from the samples, augmented as in training: the statistics training left
        were gathered on augmented batches, and on the memorising profile's untouched models
        non-augmented statistics cost about a point of test accuracy (docs/rem.md). Returns the
        images passed."""
        if self.view is None:
            return 0
        augment = self.cfg.bn_recalibration_augment
        batches = self.view.batches(self.task.spec, self.cfg.batch_size, self.augment if augment else None, augment=augment)
        return recalibrate_batchnorm(model, batches, self.task.precision, self.task.device)

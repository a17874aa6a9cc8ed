"""SCRUB (Kurmanji et al., NeurIPS 2023): a student moves away from a frozen teacher on the
identified samples (max steps) and stays close to it on the retain set (min steps).

Teacher = a frozen copy of the input model; student = the input model. KL is the temperature-
scaled distillation loss KL(softmax(t/T) || softmax(s/T)) * T^2 (sum over classes, mean over the
batch). Settings use one naming convention: `kd_weight` is the KL weight (the notebooks' alpha),
`ce_weight` the CE weight (gamma).

* variant `original` (meghdadk/SCRUB notebooks): per epoch, while epoch <= max_steps a max pass
  over the identified set (loss -KL), then a min pass over the retain set (ce_weight CE +
  kd_weight KL); lr 5e-4 decayed x0.1 after epochs 3, 5, 9; 3 epochs; batches 128 / 32.
* variant `bench` (the corrective benches' port): one loss CE + kd_weight KL, negated on the
  identified set (so the max pass also ascends CE on the corrupted labels); max passes only while
  fewer than `max_steps` = 100 optimiser steps were taken; lr 0.0025, ~1000 steps (10 retain
  epochs at batch 512) with warm-up + linear decay.
Both keep the last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from remcli.config import Settings
from remcli.engine import Engine
from remcli.seeding import generator
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.training import (
    FitConfig,
    make_engine,
    steps_per_epoch,
)

VARIANTS = {  # the settings left None take the variant's value; `schedule` is fixed per variant
    "original": dict(epochs=3, lr=5e-4, batch_size=128, forget_batch_size=32, max_steps=2, schedule="constant"),
    "bench": dict(epochs=10, lr=0.0025, batch_size=512, forget_batch_size=512, max_steps=100, schedule="warmup-linear"),
}


@dataclass
class SCRUBConfig(Settings):
    """SCRUB's optimiser is SGD in both variants, as in its reference code: no `optimizer` setting."""

    CHOICES = {"variant": tuple(VARIANTS)}
    VARIANTS = VARIANTS

    variant: str = "original"  # original | bench
    epochs: int | None = None  # retain passes; None: 3 (original) / 10 (bench)
    lr: float | None = None  # None: 5e-4 (original) / 0.0025 (bench)
    batch_size: int | None = None  # retain batch; None: 128 / 512
    forget_batch_size: int | None = None  # None: 32 / 512
    max_steps: int | None = None  # msteps: epochs with a max pass (original, 2) / optimiser steps (bench, 100)
    temperature: float = 4.0
    kd_weight: float = 0.001  # alpha: KL weight of the min (and, in bench, max) loss
    ce_weight: float = 0.99  # gamma: CE weight of the original min loss
    lr_decay_epochs: tuple[int, ...] = (3, 5, 9)  # original: lr x0.1 for each milestone passed
    momentum: float = 0.9
    weight_decay: float = 5e-4


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, summed over classes and averaged over the batch."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature**2


def resolve(cfg: SCRUBConfig) -> tuple[FitConfig, int, int]:
    """The retain budget the run uses, its forget batch size and its max-step limit."""
    run = cfg.with_variant_defaults()
    budget = FitConfig(
        epochs=run.epochs,
        lr=run.lr,
        batch_size=run.batch_size,
        optimizer="sgd",
        momentum=run.momentum,
        weight_decay=run.weight_decay,
        schedule=VARIANTS[cfg.variant]["schedule"],
    )
    return budget, run.forget_batch_size, run.max_steps


def run_scrub(task: UnlearnTask, cfg: SCRUBConfig, teacher: nn.Module) -> MethodResult:
    """SCRUB with an explicit teacher (frozen by the caller; never updated here)."""
    budget, forget_batch, max_steps = resolve(cfg)
    student = task.model
    retain_steps = steps_per_epoch(task.retain_view, budget.batch_size)
    engine: Engine = make_engine(task, student.parameters(), budget.optim(), budget.lr_schedule(budget.epochs * retain_steps))
    order = generator(task.seed, "unlearn/scrub/batches", task.device)

    def kl(batch):
        with torch.no_grad():
            teacher_logits = teacher(batch.inputs)
        logits = student(batch.inputs)
        return logits, distill_kl(logits, teacher_logits, cfg.temperature)

    def max_loss(batch):
        logits, divergence = kl(batch)
        if cfg.variant == "original":
            return -divergence
        return -(F.cross_entropy(logits.float(), batch.labels) + cfg.kd_weight * divergence)

    def min_loss(batch):
        logits, divergence = kl(batch)
        ce = F.cross_entropy(logits.float(), batch.labels)
        weight = cfg.ce_weight if cfg.variant == "original" else 1.0
        return weight * ce + cfg.kd_weight * divergence

    epochs = []
    for epoch in range(1, budget.epochs + 1):
        if cfg.variant == "original":
            decay = sum(epoch > m for m in cfg.lr_decay_epochs)
            for group in engine.optimizer.param_groups:
                group["lr"] = budget.lr * 0.1**decay
            do_max = epoch <= max_steps
        else:
            do_max = engine.steps < max_steps
        student.train()
        entry = {"epoch": epoch}
        if do_max:
            task.reporter.phase(f"scrub max {epoch}/{budget.epochs}", steps_per_epoch(task.forget_view, forget_batch))
            stats = engine.run_epoch(task.forget_view.batches(task.spec, forget_batch, order, augment=True), max_loss)
            entry["max_loss"] = round(stats.mean_loss, 5)
        task.reporter.phase(f"scrub min {epoch}/{budget.epochs}", retain_steps)
        stats = engine.run_epoch(task.retain_view.batches(task.spec, budget.batch_size, order, augment=True), min_loss)
        entry["min_loss"] = round(stats.mean_loss, 5)
        entry["lr"] = engine.optimizer.param_groups[0]["lr"]
        if task.validation_view is not None:
            entry["val_acc"] = round(task.accuracy(student, task.validation_view), 5)
        task.reporter.advance(0, **{k: v for k, v in entry.items() if k != "epoch"})
        epochs.append(entry)
    student.eval()
    log = {"variant": cfg.variant, "budget": vars(budget), "forget_batch_size": forget_batch, "max_steps": max_steps, "epochs": epochs}
    return MethodResult(model=student, steps=engine.steps, log=log)


@register_method(
    "scrub",
    SCRUBConfig,
    "Student diverges from a frozen teacher on identified samples, matches it on retain",
    data="identified set (max) + retain set (min)",
    budget=f"original: {VARIANTS['original']['epochs']} epochs lr {VARIANTS['original']['lr']:g}; bench: ~1000 steps lr {VARIANTS['bench']['lr']:g}",
    cost="~7% (original) / ~30% (bench)",
)
def scrub(task: UnlearnTask, cfg: SCRUBConfig) -> MethodResult:
    return run_scrub(task, cfg, task.frozen_copy())

"""Model selection without the test set, and the forget-set ascent loop built on it.

The research code picks the best iterate by test accuracy. Here the iterative removal methods
(REM, GA, NPO) keep the iterate with the best proxy

    acc(selection data) x (1 - max(acc(identified, corrupted labels), gamma))

where the selection data is the checkpoint's held-out validation split (true labels) when it has
one, else the retain set with its training labels (the paper's proxy).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from remcli.data.pipeline import Batch, SampleView
from remcli.errors import InputError
from remcli.seeding import generator
from remcli.unlearning.base import UnlearnTask
from remcli.unlearning.losses import selection_proxy
from remcli.unlearning.training import FitConfig, check_fit_config, make_engine

SELECT_ON = ("auto", "validation", "retain")


def selection_view(task: UnlearnTask, select_on: str) -> tuple[str, SampleView]:
    if select_on not in SELECT_ON:
        raise InputError(f"select_on {select_on!r} is not valid; use auto, validation or retain (never test)")
    resolved = select_on if select_on != "auto" else ("validation" if task.validation_view is not None else "retain")
    if resolved == "validation" and task.validation_view is None:
        raise InputError("select_on=validation needs a checkpoint with a validation split; use select_on=retain")
    return resolved, task.validation_view if resolved == "validation" else task.retain_view


class ProxySelection:
    """Scores iterates and keeps a copy of the best one's weights."""

    def __init__(self, task: UnlearnTask, model: nn.Module, gamma: float, select_on: str = "auto"):
        self.task, self.model, self.gamma = task, model, gamma
        self.select_on, self.view = selection_view(task, select_on)
        self.best_proxy = float("-inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_iteration = -1
        self.last_forget_acc = float("nan")

    def consider(self, iteration: int, forget_acc: float | None = None) -> dict:
        """Score the model as it is now. `forget_acc`: its identified-set accuracy if the caller
        has just measured it (eval mode, drop view), so it is not measured twice."""
        if forget_acc is None:
            forget_acc = self.task.accuracy(self.model, self.task.forget_view)
        self.last_forget_acc = forget_acc
        keep_acc = self.task.accuracy(self.model, self.view)
        value = selection_proxy(keep_acc, forget_acc, self.gamma)
        selected = value > self.best_proxy
        if selected:
            self.best_proxy, self.best_iteration = value, iteration
            self.best_state = copy.deepcopy(self.model.state_dict())
        return {"forget_acc": round(forget_acc, 5), f"{self.select_on}_acc": round(keep_acc, 5), "proxy": round(value, 5), "selected": selected}

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


@dataclass
class AscentConfig:
    """The REM paper's Ascent / NPO protocol: one identified-set epoch at a time until gamma."""

    lr: float = 0.005
    batch_size: int = 512
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.2  # stop once identified-set accuracy (corrupted labels) <= gamma
    max_epochs: int = 100  # hard cap (the research code had none: its step counter did not advance)
    select_on: str = "auto"


def ascend_until(task: UnlearnTask, cfg: AscentConfig, loss_fn: Callable[[Batch], torch.Tensor], name: str) -> tuple[int, dict]:
    """Epochs of `loss_fn` over the identified set until its accuracy <= gamma or `max_epochs`;
    keeps the best iterate by the proxy (the input model itself is a candidate)."""
    budget = FitConfig(epochs=max(cfg.max_epochs, 1), lr=cfg.lr, batch_size=cfg.batch_size, optimizer=cfg.optimizer, momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule="constant")
    check_fit_config(budget, name)
    if cfg.max_epochs < 1:
        raise InputError(f"{name}: max_epochs must be >= 1 (got {cfg.max_epochs})")
    model = task.model
    selection = ProxySelection(task, model, cfg.gamma, cfg.select_on)
    engine = make_engine(task, model.parameters(), budget, 0)
    order = generator(task.seed, f"unlearn/{name}/batches", task.device)
    epochs = [{"epoch": 0, **selection.consider(0)}]
    task.reporter.phase(f"{name}: ascend until forget acc <= {cfg.gamma}", None)
    epoch = 0
    while epochs[-1]["forget_acc"] > cfg.gamma and epoch < cfg.max_epochs:
        epoch += 1
        model.train()
        stats = engine.run_epoch(task.forget_view.batches(task.spec, cfg.batch_size, order, augment=True), loss_fn)
        entry = {"epoch": epoch, "loss": round(stats.mean_loss, 5), **selection.consider(epoch)}
        task.reporter.advance(0, forget_acc=entry["forget_acc"], proxy=entry["proxy"])
        epochs.append(entry)
    selection.restore_best()
    model.eval()
    log = {"select_on": selection.select_on, "best_epoch": selection.best_iteration, "best_proxy": round(selection.best_proxy, 5),
           "stopped": "gamma reached" if epochs[-1]["forget_acc"] <= cfg.gamma else "max_epochs", "epochs": epochs}
    return engine.steps, log

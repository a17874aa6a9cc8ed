"""Model selection without the test set (the forget-set ascent loop built on it is in ascent.py).

The research code picks the best iterate by test accuracy. Here the iterative removal methods
(REM, GA, NPO) keep the iterate with the best proxy

    acc(selection data) x (1 - max(acc(identified, corrupted labels), gamma))

where the selection data is the checkpoint's held-out validation split (true labels) when it has
one, else the retain set with its training labels (the paper's proxy).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from remcli.data.pipeline import SampleView
from remcli.errors import InputError
from remcli.unlearning.base import UnlearnTask
from remcli.unlearning.losses import selection_proxy

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

"""Model selection without the test set (the forget-set ascent loop built on it is in ascent.py).

The research code picks the best iterate by test accuracy. Here the iterative removal methods
(REM, GA, NPO) keep the iterate with the best proxy

    acc(selection data) x (1 - max(acc(identified, corrupted labels), gamma))

where the selection data is the checkpoint's held-out validation split (true labels) when it has
one, else the retain set with its training labels (the paper's proxy).

Which iterate is kept (`KEEP_RULES`): `best`, the highest proxy (the paper's), `latest-tied`,
the latest iterate whose proxy is within one standard error of the best, or `last`. On a small selection set
the proxy's sampling noise is as large as the differences between iterates, so `best` is often an
early iterate that won by noise, before the repair has done its work; among iterates the data
cannot tell apart, the later one has repaired longer (the one-standard-error rule of model
selection, here leaning towards more repair rather than a simpler model). With thousands of
selection samples the standard error is small and both rules keep the same iterate.
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
KEEP_RULES = ("best", "latest-tied", "last")


def proxy_standard_error(keep_acc: float, forget_acc: float, gamma: float, samples: int) -> float:
    """Sampling standard error of `selection_proxy` from `samples` selection samples: the binomial
    error of the accuracy, scaled as the proxy scales it (the identified term is held fixed)."""
    if samples <= 0:
        return 0.0
    return (keep_acc * (1.0 - keep_acc) / samples) ** 0.5 * (1.0 - max(forget_acc, gamma))


def best_index(proxies: list[float]) -> int:
    """The highest proxy, the earliest of equals (-1 for none)."""
    return max(range(len(proxies)), key=lambda i: (proxies[i], -i), default=-1)


def kept_by_rule(proxies: list[float], errors: list[float], keep: str) -> int:
    """The index of the iterate `keep` chooses from the proxies so far (and their standard errors);
    `ProxySelection` asks it after every iterate, so a run keeps what this says of the whole run."""
    if keep == "last":
        return len(proxies) - 1
    best = best_index(proxies)
    if keep == "best":
        return best
    return max(i for i in range(best, len(proxies)) if proxies[i] >= proxies[best] - errors[best])


def selection_view(task: UnlearnTask, select_on: str) -> tuple[str, SampleView]:
    if select_on not in SELECT_ON:
        raise InputError(f"select_on {select_on!r} is not valid; use auto, validation or retain (never test)")
    resolved = select_on if select_on != "auto" else ("validation" if task.validation_view is not None else "retain")
    if resolved == "validation" and task.validation_view is None:
        raise InputError("select_on=validation needs a checkpoint with a validation split; use select_on=retain")
    return resolved, task.validation_view if resolved == "validation" else task.retain_view


class ProxySelection:
    """Scores iterates and keeps a copy of the weights of the one `keep` chooses (`kept_by_rule`,
    decided as the iterates come: one copy, never the whole run; none for `last`, whose iterate is
    the model as it ends)."""

    def __init__(self, task: UnlearnTask, model: nn.Module, gamma: float, select_on: str = "auto", keep: str = "best"):
        if keep not in KEEP_RULES:
            raise InputError(f"keep {keep!r} is not a selection rule; use one of: {', '.join(KEEP_RULES)}")
        self.task, self.model, self.gamma, self.keep = task, model, gamma, keep
        self.select_on, self.view = selection_view(task, select_on)
        self.iterations: list[int] = []
        self.proxies: list[float] = []
        self.errors: list[float] = []  # each proxy's standard error (`proxy_standard_error`)
        self.kept_state: dict[str, torch.Tensor] | None = None
        self.kept_iteration = -1
        self.last_forget_acc = float("nan")

    @property
    def best_iteration(self) -> int:
        best = best_index(self.proxies)
        return self.iterations[best] if best >= 0 else -1

    @property
    def best_proxy(self) -> float:
        return max(self.proxies, default=float("-inf"))

    def consider(self, iteration: int, forget_acc: float | None = None) -> dict:
        """Score the model as it is now. `forget_acc`: its identified-set accuracy if the caller
        has just measured it (eval mode, drop view), so it is not measured twice."""
        if forget_acc is None:
            forget_acc = self.task.accuracy(self.model, self.task.forget_view)
        self.last_forget_acc = forget_acc
        keep_acc = self.task.accuracy(self.model, self.view)
        value = selection_proxy(keep_acc, forget_acc, self.gamma)
        self.iterations.append(iteration)
        self.proxies.append(value)
        self.errors.append(proxy_standard_error(keep_acc, forget_acc, self.gamma, len(self.view)))
        selected = kept_by_rule(self.proxies, self.errors, self.keep) == len(self.proxies) - 1
        if selected:
            self.kept_iteration = iteration
            if self.keep != "last":
                self.kept_state = copy.deepcopy(self.model.state_dict())
        return {"forget_acc": round(forget_acc, 5), f"{self.select_on}_acc": round(keep_acc, 5), "proxy": round(value, 5), "selected": selected}

    def restore_kept(self) -> None:
        if self.kept_state is not None:
            self.model.load_state_dict(self.kept_state)

"""The one protocol every unlearning method follows, and the registry of methods by name.

A method is a function `(task: UnlearnTask, cfg: <its config dataclass>) -> UnlearnResult`,
registered with `@register_method(name, config_cls, ...)`. Adding a method means adding one
module under `remcli/unlearning/methods/` with one decorator; the CLI's `--method` choices,
`remcli methods` and the contract tests all come from this registry.

`UnlearnTask` carries the model and every data view a method may touch, built once:
* `forget_view`: the identified samples as trained on (corrupted labels, triggers);
* `train_view`: the whole training split as trained on (validation held out);
* `retain_view`: train minus identified (still holds the undiscovered corrupted samples);
* `validation_view`: the held-out split with true labels (never the test set).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from remcli.data.corruption import Manifest
from remcli.data.datasets import Dataset
from remcli.data.pipeline import InputSpec, SampleView
from remcli.data.views import as_trained_view, clean_view
from remcli.engine import predict
from remcli.errors import InputError
from remcli.progress import NullReporter


@dataclass
class UnlearnTask:
    model: nn.Module  # the input model, on `device`; methods may modify it in place
    arch: str
    dataset: Dataset
    manifest: Manifest | None
    identified: torch.Tensor  # training-split positions of D_f
    validation: torch.Tensor  # held-out positions (from the checkpoint)
    spec: InputSpec
    device: torch.device
    precision: str
    seed: int = 0  # drives every random choice of the method (batch order, masks, new units)
    reporter: NullReporter = field(default_factory=NullReporter)

    def __post_init__(self) -> None:
        keep = torch.ones(len(self.dataset.train), dtype=torch.bool)
        keep[self.validation] = False
        self.train_positions = torch.nonzero(keep).flatten()
        retain = keep.clone()
        retain[self.identified] = False
        self.retain_positions = torch.nonzero(retain).flatten()
        self.forget_view = as_trained_view(self.dataset, self.manifest, self.identified, self.device)
        self.train_view = as_trained_view(self.dataset, self.manifest, self.train_positions, self.device)
        self.retain_view = as_trained_view(self.dataset, self.manifest, self.retain_positions, self.device)
        self.validation_view = clean_view(self.dataset.train, self.validation, self.device) if len(self.validation) else None
        self.identified_mask = torch.zeros(len(self.dataset.train), dtype=torch.bool, device=self.device)
        self.identified_mask[self.identified.to(self.device)] = True

    def accuracy(self, model: nn.Module, view: SampleView, batch_size: int = 1024) -> float:
        """Eval-mode accuracy of `model` on `view` against the view's labels."""
        was_training = model.training
        model.eval()
        preds = predict(model, view.batches(self.spec, batch_size), self.precision)
        model.train(was_training)
        return float((preds == view.labels).float().mean()) if len(view) else 0.0

    def frozen_copy(self, model: nn.Module | None = None) -> nn.Module:
        """A frozen, eval-mode copy (reference model / teacher)."""
        ref = copy.deepcopy(model if model is not None else self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref


@dataclass
class UnlearnResult:
    model: nn.Module  # same tensor names and shapes as the input
    steps: int  # gradient (optimiser) steps taken
    log: dict = field(default_factory=dict)  # method-specific trace (per-iteration values...)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    fn: Callable[[UnlearnTask, object], UnlearnResult]
    config_cls: type
    summary: str  # what it does, one line
    data: str  # which data it touches
    budget: str  # default budget
    cost: str  # rough cost relative to retrain


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, config_cls: type, summary: str, data: str, budget: str, cost: str):
    def wrap(fn):
        if name in _METHODS:
            raise ValueError(f"unlearning method {name!r} registered twice")
        _METHODS[name] = MethodInfo(name, fn, config_cls, summary, data, budget, cost)
        return fn

    return wrap


def get_method(name: str) -> MethodInfo:
    if name not in _METHODS:
        raise InputError(f"unknown method {name!r}; use one of: {', '.join(sorted(_METHODS))} (see `remcli methods`)")
    return _METHODS[name]


def list_methods() -> list[MethodInfo]:
    return [_METHODS[k] for k in sorted(_METHODS)]


def build_config(info: MethodInfo, overrides: dict):
    """The method's config with user overrides; unknown names list the valid ones."""
    fields = {f.name for f in dataclasses.fields(info.config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"method {info.name} has no setting {unknown}; valid: {', '.join(sorted(fields))}")
    return info.config_cls(**overrides)

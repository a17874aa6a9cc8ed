"""The one protocol every unlearning method follows, and the registry of methods by name.

A method is a function `(task: UnlearnTask, cfg: <its config dataclass>) -> MethodResult`,
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

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from remcli.checkpoints import load_init_weights, load_recorded_init
from remcli.data.datasets import Dataset
from remcli.data.manifest import Manifest
from remcli.data.pipeline import InputSpec, SampleView
from remcli.data.views import as_trained_view, clean_view
from remcli.distributed import DataParallel
from remcli.engine import inference_batch_size, predict
from remcli.errors import InputError
from remcli.progress import NullReporter
from remcli.registry import Registry
from remcli.seeding import seeded_global_rng


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside; afterwards every submodule gets back its own mode (a model trained with
    frozen BatchNorm keeps it frozen, which `model.train(was_training)` would undo)."""
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


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
    build_untrained: Callable[[], nn.Module] | None = None  # the arch, freshly initialised (global RNG)
    train_params: dict = field(default_factory=dict)  # the recorded `train` settings (epochs, lr...)
    init: dict | None = None  # the checkpoint training started from (`train --init`: path, sha256), None for a fresh initialisation
    group: DataParallel | None = None  # under torchrun: this rank's place in the data-parallel group

    def __post_init__(self) -> None:
        keep = torch.ones(len(self.dataset.train), dtype=torch.bool)
        keep[self.validation] = False
        self.train_positions = torch.nonzero(keep).flatten()
        retain = keep.clone()
        retain[self.identified] = False
        self.retain_positions = torch.nonzero(retain).flatten()
        self.forget_view = self.trained_view(self.identified)
        self.train_view = self.trained_view(self.train_positions)
        self.retain_view = self.trained_view(self.retain_positions)
        self.validation_view = clean_view(self.dataset.train, self.validation, self.device) if len(self.validation) else None
        self.identified_mask = torch.zeros(len(self.dataset.train), dtype=torch.bool, device=self.device)
        self.identified_mask[self.identified.to(self.device)] = True

    def trained_view(self, positions: torch.Tensor) -> SampleView:
        """Training samples as the model was trained on them (corrupted labels, triggers), on the task's device."""
        return as_trained_view(self.dataset, self.manifest, positions, self.device)

    def accuracy(self, model: nn.Module, view: SampleView) -> float:
        """Eval-mode accuracy of `model` on `view` against the view's labels."""
        with eval_mode(model):
            preds = predict(model, view.batches(self.spec, inference_batch_size(self.device)), self.precision)
        return float((preds == view.labels).float().mean()) if len(view) else 0.0

    def fresh_model(self, purpose: str) -> nn.Module:
        """A newly initialised model of the same architecture, seeded by (task seed, purpose)."""
        if self.build_untrained is None:
            raise InputError("this method needs to build a fresh model, but the task has no architecture builder")
        with seeded_global_rng(self.seed, purpose):
            model = self.build_untrained()
        return model.to(self.device).to(memory_format=torch.channels_last)

    def initial_model(self, purpose: str) -> nn.Module:
        """The model as its training began: a fresh one (`fresh_model`) with, for a fine-tuned checkpoint,
        the recorded init's weights loaded (refused unless the file's sha256 still matches); a classifier
        the init could not supply stays freshly initialised, as in `train --init`."""
        model = self.fresh_model(purpose)
        if self.init is not None:
            load_init_weights(model, load_recorded_init(self.init), self.arch)
        return model

    def frozen_copy(self, model: nn.Module | None = None) -> nn.Module:
        """A frozen, eval-mode copy (reference model / teacher)."""
        ref = copy.deepcopy(model if model is not None else self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref


@dataclass
class MethodResult:
    """What one method returns to `unlearn()`, which turns it into an `UnlearnOutcome` (the
    checkpoint to write: state dict, metadata with history, summary)."""

    model: nn.Module  # same tensor names and shapes as the input
    steps: int  # gradient (optimiser) steps taken
    log: dict = field(default_factory=dict)  # method-specific trace (per-iteration values...)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    fn: Callable[[UnlearnTask, object], MethodResult]
    config_cls: type
    summary: str  # what it does, one line
    data: str  # which data it touches
    budget: str  # default budget
    cost: str  # rough cost relative to retrain
    data_parallel: bool = False  # runs under torchrun (every gradient step goes through the Engine)
    gradient_steps: bool = True  # False: it edits the weights without a gradient step (dampening), so it reports 0 steps


METHODS = Registry[MethodInfo]("method", hint="see `remcli methods`")


def register_method(
    name: str, config_cls: type, summary: str, data: str, budget: str, cost: str, data_parallel: bool = False, gradient_steps: bool = True
):
    """Register `fn(task, cfg) -> MethodResult` as NAME. `budget` may name the config's fields,
    `"{epochs} epochs, lr {lr:g}"`: it is filled in from the defaults, so it never goes stale.
    `data_parallel`: the method's every update goes through the Engine, so it runs under torchrun.
    `gradient_steps=False`: it changes the model without a gradient step (SSD and Potion dampen
    weights), so 0 steps is its normal report rather than a run that did nothing."""
    budget = budget.format(**{f.name: f.default for f in dataclasses.fields(config_cls) if f.default is not dataclasses.MISSING})

    def wrap(fn):
        METHODS.add(name, MethodInfo(name, fn, config_cls, summary, data, budget, cost, data_parallel, gradient_steps))
        return fn

    return wrap


def get_method(name: str) -> MethodInfo:
    return METHODS.get(name)


def list_methods() -> list[MethodInfo]:
    """Every registered method, by name (the order of `remcli methods` and of `--method`'s help)."""
    return [METHODS.get(name) for name in sorted(METHODS.names())]


def build_config(info: MethodInfo, overrides: dict):
    """The method's config with user overrides; unknown names list the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(info.config_cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InputError(f"method {info.name} has no setting {unknown}; valid: {', '.join(sorted(fields))}")
    try:
        return info.config_cls(**overrides)  # every config validates itself (remcli/config.py)
    except InputError as err:
        raise InputError(f"method {info.name}: {err}") from None

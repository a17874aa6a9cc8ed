"""REM: Redirection for Erasing Memory (Schoepf et al., arXiv 2505.17730), post hoc.

The loop is the research code's (rem-method.md §3.3): per outer iteration, an NPO flush of the
identified set until its accuracy on the corrupted labels is <= gamma, then one repair epoch over
the training set with loss = redirect-NPO - continued removal, then best-proxy selection.

Four mechanism fixes make the redirect real (rem-audit.md, "Where they differ"); each is a
setting whose old value reproduces the earlier behaviour:

* `bn="frozen"`: every pass uses the input model's BatchNorm running statistics and none updates
  them. Identified-only flush batches (all triggered, or all cats and dogs) can no longer
  overwrite them, the NPO ratio compares like with like (eval-mode model against eval-mode
  reference), and the function optimised is the one deployed. It also lets the repair's removal
  term run the drop view on the identified rows alone, which is exactly the same loss at a
  fraction of the cost. `bn="batch"`: batch statistics, running statistics updated by the flush
  and by a whole-batch drop pass (the research code).
* `fresh_optimizer=True`: optimiser state (momentum) is cleared at every flush/repair switch, so
  the flush's momentum cannot keep pushing the identified samples away during the repair.
* `flush_stop="step"`: the flush checks gamma after every step, not once per epoch, so it stops
  near gamma instead of overshooting to CE of several nats (where every NPO weight is ~0).
* `units="conv"`: chained k x k new channels with their own BatchNorm, large enough to hold the
  corruption (`expansion.py`); `units="bottleneck"` is the earlier 1x1 side branch.

Diagnostics, per outer iteration: CE, mean NPO weight
and accuracy on the training labels in the drop and the redirect view, for the identified set
and a fixed retain sample, before the new units are dropped; `redirecting` says whether the
redirect view still holds the identified set (>= 0.8) while the drop view is at or below gamma.

Other differences from the research code, each documented in the README: real expansion instead
of a capacity-0.5 network; pi_ref = the input model in the drop view; hashed masks; selection on
the validation split; flush accuracy on non-augmented images.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from remcli.data.pipeline import SampleView
from remcli.engine import Engine, OptimConfig, autocast, make_optimizer
from remcli.errors import InputError
from remcli.models.recipes import default_optimizer, unlearn_lr
from remcli.seeding import generator
from remcli.unlearning.base import (
    UnlearnResult,
    UnlearnTask,
    eval_mode,
    register_method,
)
from remcli.unlearning.expansion import UNIT_KINDS, Expansion, default_targets
from remcli.unlearning.losses import npo_loss, npo_weight, rem_repair_loss
from remcli.unlearning.masks import unit_masks
from remcli.unlearning.selection import SELECT_ON, ProxySelection

BN_POLICIES = ("frozen", "batch")
FLUSH_STOPS = ("step", "epoch")
REDIRECTING_FIT = 0.8  # the redirect view must still fit this much of the identified set


@dataclass
class REMConfig:
    epochs: int = 10  # outer iterations; each = flush-until-gamma + one repair epoch over D_tr
    lr: float | None = None  # None: 0.005 (SGD, CNNs) or 2e-5 (Adam, ViTs), the paper's values
    optimizer: str | None = None  # None: sgd for CNNs, adam for ViTs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 512
    beta: float = 1.0  # NPO inverse temperature
    gamma: float = 0.2  # flush until identified-set accuracy (corrupted labels) <= gamma
    flush_max_epochs: int = 100  # cap per outer iteration
    flush_stop: str = "step"  # step: check gamma after every flush step; epoch: once per flush epoch (research code)
    bn: str = "frozen"  # frozen: running statistics used and never updated; batch: the research code's
    fresh_optimizer: bool = True  # clear optimiser state (momentum) at each flush/repair switch
    units: str = "conv"  # conv: chained kxk channels + BatchNorm; bottleneck: 1x1 side branch (earlier design)
    capacity: float = 1.0  # new units per target, as a multiple of its width (paper: 1.0)
    kernel_size: int = 3  # conv units' spatial kernel
    chain: bool = True  # conv units also read the previous target's new channels
    silent_write: bool = True  # new units' writes start at zero (the redirect view starts as the input model)
    new_units_lr_scale: float = 10.0  # the new units learn from scratch: their lr is this multiple of lr
    mask_density: float = 0.2  # Bernoulli rate of each sample's mask over the new units
    targets: tuple[str, ...] | None = None  # module names; None = the arch's defaults
    redirect: bool = True  # False: --no-redirect ablation (fit in the drop view, no new units used)
    continued_removal: bool = True  # False: --no-continued-removal ablation
    flush: str = "npo"  # "ga": gradient-ascent flush (the rem-ga ablation)
    select_on: str = "auto"  # auto (validation if recorded, else retain), validation, retain
    keep: str = "best"  # best: the best-proxy iterate (the input model included, as in the paper); last: the final iterate
    diagnostic_samples: int = 256  # retain samples (fixed, seeded) in the per-iteration diagnostics

    def __post_init__(self) -> None:
        """One-line InputErrors for settings no run could use (the CLI and the API share them)."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})"),
            (self.lr is None or self.lr > 0, f"lr must be > 0 (got {self.lr})"),
            (self.optimizer in (None, "sgd", "adam"), f"optimizer {self.optimizer!r} is not valid; use sgd or adam"),
            (self.beta > 0, f"beta must be > 0 (got {self.beta})"),
            (0 <= self.gamma <= 1, f"gamma must be in [0, 1] (got {self.gamma})"),
            (self.flush_max_epochs >= 0, f"flush_max_epochs must be >= 0 (got {self.flush_max_epochs})"),
            (self.flush_stop in FLUSH_STOPS, f"flush_stop {self.flush_stop!r} is not valid; use step or epoch"),
            (self.bn in BN_POLICIES, f"bn {self.bn!r} is not valid; use frozen or batch"),
            (self.units in UNIT_KINDS, f"units {self.units!r} is not valid; use {' or '.join(UNIT_KINDS)}"),
            (self.capacity > 0, f"capacity must be > 0 (got {self.capacity})"),
            (self.kernel_size >= 1 and self.kernel_size % 2 == 1, f"kernel_size must be a positive odd number (got {self.kernel_size})"),
            (self.new_units_lr_scale > 0, f"new_units_lr_scale must be > 0 (got {self.new_units_lr_scale})"),
            (0 < self.mask_density <= 1, f"mask_density must be in (0, 1] (got {self.mask_density})"),
            (self.flush in ("npo", "ga"), f"flush {self.flush!r} is not valid; use npo or ga"),
            (self.select_on in SELECT_ON, f"select_on {self.select_on!r} is not valid; use auto, validation or retain (never test)"),
            (self.keep in ("best", "last"), f"keep {self.keep!r} is not valid; use best or last"),
            (self.diagnostic_samples >= 0, f"diagnostic_samples must be >= 0 (got {self.diagnostic_samples})"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"rem: {message}")


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


def per_sample_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _optim(task: UnlearnTask, cfg: REMConfig) -> OptimConfig:
    name = cfg.optimizer or default_optimizer(task.arch)
    lr = cfg.lr if cfg.lr is not None else unlearn_lr(name)
    return OptimConfig(name=name, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def diagnostic_views(task: UnlearnTask, samples: int) -> dict[str, SampleView]:
    """The identified set and a fixed, seeded sample of retain data (training labels)."""
    views = {"identified": task.forget_view}
    count = min(samples, len(task.retain_view))
    if count:
        order = torch.randperm(len(task.retain_view), generator=generator(task.seed, "unlearn/rem/diagnostics"))[:count]
        views["retain"] = task.retain_view.subset(torch.sort(order).values)
    return views


class Diagnostics:
    """Per view (drop, redirect) and data (identified, retain): mean CE, mean NPO weight
    2 sigmoid(beta (CE_ref - CE)) and accuracy against the training labels; eval mode,
    non-augmented images, new units still attached.

    The reference is frozen and the images are not augmented, so its CE is computed once."""

    def __init__(self, task: UnlearnTask, reference: nn.Module, views: dict[str, SampleView], cfg: REMConfig, seed: int):
        self.task, self.views, self.cfg, self.seed = task, views, cfg, seed
        with torch.no_grad(), eval_mode(reference):
            self.ce_ref = {name: [self._ce(reference, batch) for batch in view.batches(task.spec, 1024)] for name, view in views.items()}

    def _ce(self, net: nn.Module, batch) -> torch.Tensor:
        with autocast(self.task.device, self.task.precision):
            logits = net(batch.inputs)
        return per_sample_ce(logits, batch.labels)

    @torch.no_grad()
    def __call__(self, model: nn.Module, expansion: Expansion) -> dict:
        """Unrounded values; `redirecting` says whether the redirect view holds the identified set."""
        out: dict[str, float | bool] = {}
        task, cfg = self.task, self.cfg
        with eval_mode(model, expansion.adapters):
            for name, view in self.views.items():
                sums = {"drop": [0.0, 0.0, 0], "redirect": [0.0, 0.0, 0]}
                for batch, ce_ref in zip(view.batches(task.spec, 1024), self.ce_ref[name]):
                    with autocast(task.device, task.precision):
                        drop_logits = model(batch.inputs)
                        identified = task.identified_mask[batch.indices]
                        with expansion.redirect(unit_masks(batch.indices, identified, expansion.num_units, cfg.mask_density, self.seed)):
                            redirect_logits = model(batch.inputs)
                    for view_name, logits in (("drop", drop_logits), ("redirect", redirect_logits)):
                        ce = per_sample_ce(logits, batch.labels)
                        acc = sums[view_name]
                        acc[0] += float(ce.sum())
                        acc[1] += float(npo_weight(ce, ce_ref, cfg.beta).sum())
                        acc[2] += int((logits.argmax(1) == batch.labels).sum())
                n = max(len(view), 1)
                for view_name, (ce_sum, weight_sum, correct) in sums.items():
                    out[f"{name}_{view_name}_ce"] = ce_sum / n
                    out[f"{name}_{view_name}_npo_weight"] = weight_sum / n
                    out[f"{name}_{view_name}_acc"] = correct / n
        out["redirecting"] = bool(out["identified_redirect_acc"] >= REDIRECTING_FIT and out["identified_drop_acc"] <= cfg.gamma)
        return out


def rounded(values: dict, digits: int = 4) -> dict:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in values.items()}


def rem(task: UnlearnTask, cfg: REMConfig) -> UnlearnResult:
    model, seed = task.model, task.seed
    selection = ProxySelection(task, model, cfg.gamma, cfg.select_on)
    reference = task.frozen_copy()  # pi_ref: the input model, frozen, eval mode
    probe = next(task.forget_view.batches(task.spec, 2)).inputs
    targets = list(cfg.targets) if cfg.targets else default_targets(model, task.arch)
    expansion = Expansion(model, targets, cfg.capacity, probe, seed, cfg.units, cfg.kernel_size, cfg.chain, cfg.silent_write)
    optim = _optim(task, cfg)
    optimizer = make_optimizer(model.parameters(), optim)
    optimizer.add_param_group({"params": list(expansion.parameters()), "lr": optim.lr * cfg.new_units_lr_scale})
    engine = Engine(optimizer, task.device, task.precision, None, task.reporter)
    order = generator(seed, "unlearn/rem/batches", task.device)
    diagnose = Diagnostics(task, reference, diagnostic_views(task, cfg.diagnostic_samples), cfg, seed)
    frozen = cfg.bn == "frozen"

    def ce_of(net: nn.Module, batch) -> torch.Tensor:
        return per_sample_ce(net(batch.inputs), batch.labels)

    def flush_loss(batch) -> torch.Tensor:
        ce = ce_of(model, batch)
        if cfg.flush == "ga":
            return -ce.mean()
        with torch.no_grad():
            ce_ref = ce_of(reference, batch)
        return npo_loss(ce, ce_ref, cfg.beta)

    def repair_loss(batch) -> torch.Tensor:
        identified = task.identified_mask[batch.indices]
        with torch.no_grad():
            ce_ref = ce_of(reference, batch)
        if cfg.redirect:
            masks = unit_masks(batch.indices, identified, expansion.num_units, cfg.mask_density, seed)
            with expansion.redirect(masks), (contextlib.nullcontext() if frozen else frozen_bn_stats(model)):
                ce_fit = ce_of(model, batch)
            ce_drop = removal_ce(batch, identified) if cfg.continued_removal else None
        else:
            ce_fit = ce_of(model, batch)  # the drop view over the whole batch
            ce_drop = ce_fit if cfg.continued_removal else None
        return rem_repair_loss(ce_fit, ce_drop, ce_ref, identified, cfg.beta, fit_identified=cfg.redirect)

    def removal_ce(batch, identified: torch.Tensor) -> torch.Tensor:
        """Drop-view CE, only where it counts: the identified rows. With frozen BatchNorm rows are
        independent, so this equals the whole-batch pass's removal term exactly; with batch
        statistics the whole batch must go through (and it updates the running statistics)."""
        if not frozen:
            return ce_of(model, batch)
        rows = torch.nonzero(identified).flatten()
        full = torch.zeros(identified.shape[0], device=identified.device)
        if len(rows):
            full = full.index_put((rows,), per_sample_ce(model(batch.inputs[rows]), batch.labels[rows]))
        return full

    def flush(iteration: int, acc: float) -> tuple[int, int, float]:
        """NPO (or GA) on the identified set, from accuracy `acc`, until its accuracy <= gamma;
        returns epochs, steps, accuracy."""
        if cfg.fresh_optimizer:
            engine.reset_optimizer_state()
        steps_before, epochs = engine.steps, 0
        task.reporter.phase(f"flush {iteration}/{cfg.epochs}", None)

        def reached_gamma() -> bool:
            nonlocal acc
            acc = task.accuracy(model, task.forget_view)
            return acc <= cfg.gamma

        while acc > cfg.gamma and epochs < cfg.flush_max_epochs:
            set_train_mode(model, cfg.bn)
            engine.run_epoch(task.forget_view.batches(task.spec, cfg.batch_size, order, augment=True), flush_loss,
                             stop=reached_gamma if cfg.flush_stop == "step" else None)
            if cfg.flush_stop == "epoch":
                reached_gamma()
            epochs += 1
            task.reporter.advance(0, flush_epochs=epochs, forget_acc=acc)
        return epochs, engine.steps - steps_before, acc

    def measure(iteration: int) -> dict:
        """Diagnostics and selection; the drop view's identified accuracy is measured once for both."""
        diagnostics = diagnose(model, expansion)
        return {**selection.consider(iteration, forget_acc=diagnostics["identified_drop_acc"]), **rounded(diagnostics)}

    iterations = [{"iteration": 0, **measure(0)}]
    forget_acc = selection.last_forget_acc
    for iteration in range(1, cfg.epochs + 1):
        flush_epochs, flush_steps, forget_acc = flush(iteration, forget_acc)
        if cfg.fresh_optimizer:
            engine.reset_optimizer_state()
        task.reporter.phase(f"repair {iteration}/{cfg.epochs}", -(-len(task.train_view) // cfg.batch_size))
        set_train_mode(model, cfg.bn)
        expansion.train(True)
        stats = engine.run_epoch(task.train_view.batches(task.spec, cfg.batch_size, order, augment=True), repair_loss)
        flushed_to = forget_acc
        measured = measure(iteration)
        forget_acc = selection.last_forget_acc
        task.reporter.advance(0, forget_acc=measured["forget_acc"], redirect_acc=measured["identified_redirect_acc"], proxy=measured["proxy"])
        iterations.append({
            "iteration": iteration, "flush_epochs": flush_epochs, "flush_steps": flush_steps, "forget_acc_after_flush": round(flushed_to, 5),
            "repair_loss": round(stats.mean_loss, 5), **measured,
        })
    expansion.remove()
    if cfg.keep == "best":
        selection.restore_best()
    model.eval()
    log = {
        "targets": expansion.targets, "new_units": expansion.num_units, "new_parameters": expansion.parameter_count(),
        "model_parameters": sum(p.numel() for p in model.parameters()), "optimizer": optim.name, "lr": optim.lr,
        "select_on": selection.select_on, "kept": cfg.keep, "best_iteration": selection.best_iteration, "best_proxy": round(selection.best_proxy, 5),
        "redirecting_iterations": sum(1 for it in iterations[1:] if it["redirecting"]), "iterations": iterations,
    }
    return UnlearnResult(model=model, steps=engine.steps, log=log)


_INFO = dict(
    data="identified set (flush) + whole training set (repair)",
    budget="10 outer iterations: flush-until-gamma + 1 repair epoch each",
    cost="~60% (measured at the paper's budgets with the default conv units; ~45% with units=bottleneck)",
)
register_method("rem", REMConfig, "REM: add units, redirect identified samples into them via one shared mask, NPO removal, drop units", **_INFO)(rem)


@dataclass
class REMGAConfig(REMConfig):
    flush: str = "ga"


register_method("rem-ga", REMGAConfig, "REM ablation with a gradient-ascent flush instead of NPO", **_INFO)(rem)

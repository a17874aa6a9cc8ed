"""REM: Redirection for Erasing Memory (Schoepf et al., arXiv 2505.17730), post hoc.

Algorithm as in rem-method.md §3.3 (the code's interleaved loop), with these deliberate
differences, each documented in the README:
* new units are really added at unlearning time (`expansion.py`), not emulated by a
  capacity-0.5 network (§2.6, §8.1);
* the reference model of every NPO term is the input model itself (pi_ref = the original
  classifier); the code used a redirect-view copy with a different shared-mask seed (§8.6);
* masks are a hash of (seed, sample id); the identified set's shared mask is its own stream;
* the redirect forward uses batch statistics but does not update BatchNorm running statistics,
  so the kept (drop-view) model's statistics are its own (§7, "mixed BN statistics");
* flush accuracy is measured on non-augmented identified images;
* selection uses the validation split (held-out, true labels) when the checkpoint has one,
  else retain accuracy on training labels as in the paper; never the test set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from remcli.engine import Engine, OptimConfig, make_optimizer
from remcli.errors import InputError
from remcli.seeding import generator
from remcli.unlearning.base import UnlearnResult, UnlearnTask, register_method
from remcli.unlearning.expansion import Expansion, default_targets
from remcli.unlearning.losses import npo_loss, rem_repair_loss
from remcli.unlearning.masks import unit_masks
from remcli.unlearning.selection import ProxySelection


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
    capacity: float = 1.0  # new units per target, as a multiple of its width (paper: 1.0)
    mask_density: float = 0.2  # Bernoulli rate of each sample's mask over the new units
    targets: tuple[str, ...] | None = None  # module names; None = the arch's defaults
    redirect: bool = True  # False: --no-redirect ablation (fit in the drop view, no new units used)
    continued_removal: bool = True  # False: --no-continued-removal ablation
    flush: str = "npo"  # "ga": gradient-ascent flush (the rem-ga ablation)
    select_on: str = "auto"  # auto (validation if recorded, else retain), validation, retain


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch statistics are used but running statistics are not updated (momentum 0)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
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
    vit = task.arch.startswith("vit")
    name = cfg.optimizer or ("adam" if vit else "sgd")
    lr = cfg.lr if cfg.lr is not None else (2e-5 if name == "adam" else 0.005)
    return OptimConfig(name=name, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def rem(task: UnlearnTask, cfg: REMConfig) -> UnlearnResult:
    if cfg.flush not in ("npo", "ga"):
        raise InputError(f"REM flush {cfg.flush!r} is not valid; use npo or ga")
    model, seed = task.model, task.seed
    selection = ProxySelection(task, model, cfg.gamma, cfg.select_on)
    reference = task.frozen_copy()  # pi_ref: the input model, frozen
    probe = next(task.forget_view.batches(task.spec, 2)).inputs
    targets = list(cfg.targets) if cfg.targets else default_targets(model, task.arch)
    expansion = Expansion(model, targets, cfg.capacity, probe, seed)
    optim = _optim(task, cfg)
    engine = Engine(make_optimizer([*model.parameters(), *expansion.parameters()], optim), task.device, task.precision, None, task.reporter)
    order = generator(seed, "unlearn/rem/batches", task.device)

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
        ce_drop = ce_of(model, batch)
        if cfg.redirect:
            masks = unit_masks(batch.indices, identified, expansion.num_units, cfg.mask_density, seed)
            with expansion.redirect(masks), frozen_bn_stats(model):
                ce_fit = ce_of(model, batch)
        else:
            ce_fit = ce_drop
        return rem_repair_loss(ce_fit, ce_drop if cfg.continued_removal else None, ce_ref, identified, cfg.beta, fit_identified=cfg.redirect)

    iterations = [{"iteration": 0, **selection.consider(0)}]
    model.train()
    for iteration in range(1, cfg.epochs + 1):
        forget_acc, flush_epochs = task.accuracy(model, task.forget_view), 0
        task.reporter.phase(f"flush {iteration}/{cfg.epochs}", None)
        while forget_acc > cfg.gamma and flush_epochs < cfg.flush_max_epochs:
            engine.run_epoch(task.forget_view.batches(task.spec, cfg.batch_size, order, augment=True), flush_loss)
            forget_acc = task.accuracy(model, task.forget_view)
            flush_epochs += 1
            task.reporter.advance(0, flush_epochs=flush_epochs, forget_acc=forget_acc)
        task.reporter.phase(f"repair {iteration}/{cfg.epochs}", -(-len(task.train_view) // cfg.batch_size))
        stats = engine.run_epoch(task.train_view.batches(task.spec, cfg.batch_size, order, augment=True), repair_loss)
        scores = selection.consider(iteration)
        task.reporter.advance(0, forget_acc=scores["forget_acc"], proxy=scores["proxy"])
        iterations.append({
            "iteration": iteration, "flush_epochs": flush_epochs, "forget_acc_after_flush": round(forget_acc, 5), "repair_loss": round(stats.mean_loss, 5), **scores,
        })
    expansion.remove()
    selection.restore_best()
    model.eval()
    log = {
        "targets": targets, "new_units": expansion.num_units, "optimizer": optim.name, "lr": optim.lr, "select_on": selection.select_on,
        "best_iteration": selection.best_iteration, "best_proxy": round(selection.best_proxy, 5), "iterations": iterations,
    }
    return UnlearnResult(model=model, steps=engine.steps, log=log)


_INFO = dict(
    data="identified set (flush) + whole training set (repair)",
    budget="10 outer iterations: flush-until-gamma + 1 repair epoch each",
    cost="~25-35% (3 fwd + 2 bwd per repair batch, 10 epochs)",
)
register_method("rem", REMConfig, "REM: add units, redirect identified samples into them via one shared mask, NPO removal, drop units", **_INFO)(rem)


@dataclass
class REMGAConfig(REMConfig):
    flush: str = "ga"


register_method("rem-ga", REMGAConfig, "REM ablation with a gradient-ascent flush instead of NPO", **_INFO)(rem)

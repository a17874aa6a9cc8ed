"""REM: Redirection for Erasing Memory (Schoepf et al., arXiv 2505.17730), post hoc.

`rem()` is the loop: per outer iteration, an NPO flush of the identified set until its accuracy on
the corrupted labels is <= gamma, then one repair epoch with `rem_repair_loss` (fit in the redirect
view, continued removal in the drop view), then best-proxy selection; the new units are dropped at
the end. `REMRun` holds the state the phases share and does the work of each.

What a repair step computes (`REMConfig`, docs/rem.md):

* the redirect view (old + masked new units) forward and backward on every row: the fit;
* the drop view only where the loss reads it. `drop_view="identified"` (default): on the identified
  rows alone, with BatchNorm on its running statistics, and not at all on a batch without
  identified rows (there the removal term is zero, so the loss and its gradients are exactly the
  research code's). No gradient pass then updates the running statistics of the kept model; they
  are re-estimated from `bn_recalibration` retain samples, augmented as in training, after every flush and repair
  (`batchnorm.Recalibration`), so eval mode (selection, the checkpoint) sees the kept model's own
  statistics. `drop_view="batch"` (research code): the whole batch with batch statistics, which
  updates the running statistics on every step.
* the frozen reference (the input model, eval mode, rows independent) only on the rows whose term
  reads it. The identified rows always get it live. Retain rows: `retain_loss="npo-cached"`
  (default) reads each image's reference CE computed once, before the first iteration, on the
  non-augmented image; `"npo"` (research code) runs the reference on every augmented batch; `"ce"`
  needs none. NPO's retain weight 2 sigmoid(CE_ref - CE) is what keeps the repair from re-learning
  undiscovered corrupted samples once the flush has pushed them away (their CE rises far above the
  reference's, so their weight falls to ~0); plain CE pulls them back, and on the memorising profile
  healed a third as much of undiscovered poison (docs/rem.md).

`repair_fraction` repairs on all identified rows plus a seeded fraction f of the retain rows each
iteration, the identified rows' terms weighted by f (`identified_weight="fraction"`) so that each
batch mixes them with the retain rows as a full epoch's batch would; `patience` stops when the
keep rule has kept no iterate for that many iterations (keep=best: the proxy has not improved);
and `budget` caps the compute in sample-passes at a fraction of the checkpoint's recorded training
(epochs x training images) and picks the repair fraction to fit (`budget.Compute`, which counts
the sample-passes spent).

`rem-full` runs the research code's repair (whole-batch drop view, NPO on every row, full training
set every iteration, no early stop); `rem-redirect` adds the five mechanism changes of
`config.REDIRECTING` (frozen BatchNorm, fresh optimiser state per phase, per-step flush stop,
chained conv units at 10x lr).

Diagnostics, per outer iteration: CE, mean NPO weight and accuracy on the training labels in the
drop and the redirect view, for the identified set and a fixed retain sample, before the new units
are dropped; `redirecting` says whether the redirect view still holds the identified set (>= 0.8)
while the drop view is at or below gamma; and the seconds spent in the flush, the repair epoch and
the measurements.
"""

from __future__ import annotations

import contextlib
import time

import torch

from remcli.data.pipeline import SampleView
from remcli.engine import Engine, OptimConfig, make_optimizer, synchronize
from remcli.models.blocks import block_outputs
from remcli.models.recipes import default_optimizer, unlearn_lr
from remcli.seeding import generator
from remcli.unlearning.base import MethodResult, UnlearnTask
from remcli.unlearning.losses import npo_loss, per_sample_ce, rem_repair_loss
from remcli.unlearning.methods.rem.batchnorm import Recalibration, frozen_bn_stats, norms_in_eval, set_train_mode
from remcli.unlearning.methods.rem.budget import FORWARD_ONLY, Compute
from remcli.unlearning.methods.rem.config import REMConfig
from remcli.unlearning.methods.rem.diagnostics import Diagnostics, diagnostic_views, rounded
from remcli.unlearning.methods.rem.expansion import Expansion
from remcli.unlearning.methods.rem.masks import unit_masks
from remcli.unlearning.methods.rem.reference import Reference
from remcli.unlearning.selection import ProxySelection
from remcli.unlearning.training import steps_per_epoch


def _optim(task: UnlearnTask, cfg: REMConfig) -> OptimConfig:
    name = cfg.optimizer or default_optimizer(task.arch)
    lr = cfg.lr if cfg.lr is not None else unlearn_lr(name)
    return OptimConfig(name=name, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class REMRun:
    """The model, its new units, the optimiser and the counters that REM's phases share."""

    def __init__(self, task: UnlearnTask, cfg: REMConfig):
        self.task, self.cfg, self.model, self.seed = task, cfg, task.model, task.seed
        self.selection = ProxySelection(task, self.model, cfg.gamma, cfg.select_on, keep=cfg.keep)
        self.reference = Reference(task)
        probe = next(task.forget_view.batches(task.spec, 2)).inputs
        targets = list(cfg.targets) if cfg.targets else block_outputs(self.model)
        self.expansion = Expansion(self.model, targets, cfg.capacity, probe, task.seed, cfg.units, cfg.kernel_size, cfg.chain, cfg.silent_write)
        self.optim = _optim(task, cfg)
        optimizer = make_optimizer(self.model.parameters(), self.optim)
        optimizer.add_param_group({"params": list(self.expansion.parameters()), "lr": self.optim.lr * cfg.new_units_lr_scale})
        self.engine = Engine(optimizer, task.device, task.precision, None, task.reporter, task.group, (self.model, self.expansion.adapters))
        self.order = generator(task.seed, "unlearn/rem/batches", task.device)
        self.subsets = generator(task.seed, "unlearn/rem/repair-subset")
        self.diagnose = Diagnostics(task, self.reference, diagnostic_views(task, cfg.diagnostic_samples), cfg, task.seed)
        self.recalibration = Recalibration(task, cfg)
        self.world = task.group.world_size if task.group is not None else 1
        measure = self.diagnose.passes + len(self.selection.view)  # the images each measurement passes
        self.compute = Compute(task, cfg, len(self.recalibration), measure, spent=FORWARD_ONLY * self.diagnose.reference_passes)
        self.cached_ref_ce = self._cache_reference_ce() if cfg.retain_loss == "npo-cached" else None
        self.repair_fraction = self.compute.repair_fraction()
        self.stopped = "iterations"

    # ---- the phases -------------------------------------------------------------------------

    def flush(self, iteration: int, acc: float) -> tuple[int, int, float]:
        """NPO (or GA) on the identified set, from accuracy `acc`, until its accuracy <= gamma;
        returns epochs, steps, accuracy."""
        task, cfg, engine = self.task, self.cfg, self.engine
        if cfg.fresh_optimizer:
            engine.reset_optimizer_state()
        steps_before, epochs = engine.steps, 0
        task.reporter.phase(f"flush {iteration}/{cfg.epochs}", None)

        def reached_gamma() -> bool:
            nonlocal acc
            acc = task.accuracy(self.model, task.forget_view)
            self.compute.spent += FORWARD_ONLY * len(task.forget_view)
            return acc <= cfg.gamma

        while acc > cfg.gamma and epochs < cfg.flush_max_epochs:
            set_train_mode(self.model, cfg.bn)
            engine.run_epoch(
                task.forget_view.batches(task.spec, cfg.batch_size, self.order, augment=True),
                self.flush_loss,
                stop=reached_gamma if cfg.flush_stop == "step" else None,
            )
            if cfg.flush_stop == "epoch":
                reached_gamma()
            epochs += 1
            task.reporter.advance(0, flush_epochs=epochs, forget_acc=acc)
        if engine.steps > steps_before:
            self.recalibrate()
        return epochs, engine.steps - steps_before, acc

    def repair(self, iteration: int):
        """One epoch of the repair loss over the identified rows and this iteration's retain rows."""
        task, cfg = self.task, self.cfg
        if cfg.fresh_optimizer:
            self.engine.reset_optimizer_state()
        view = self.repair_view()
        task.reporter.phase(f"repair {iteration}/{cfg.epochs}", steps_per_epoch(view, cfg.batch_size))
        set_train_mode(self.model, cfg.bn)
        self.expansion.train(True)
        stats = self.engine.run_epoch(view.batches(task.spec, cfg.batch_size, self.order, augment=True), self.repair_loss)  # times itself
        self.recalibrate()
        return stats

    def measure(self, iteration: int) -> dict:
        """Diagnostics and selection; the drop view's identified accuracy is measured once for both."""
        diagnostics = self.diagnose(self.model, self.expansion)
        self.compute.spent += FORWARD_ONLY * self.compute.measure
        return {**self.selection.consider(iteration, forget_acc=diagnostics["identified_drop_acc"]), **rounded(diagnostics)}

    # ---- the losses -------------------------------------------------------------------------

    def flush_loss(self, batch) -> torch.Tensor:
        ce = per_sample_ce(self.model(batch.inputs), batch.labels)
        self.compute.spent += len(batch.labels) * self.world
        if self.cfg.flush == "ga":
            return -ce.mean()
        ce_ref = self.reference.ce(batch.inputs, batch.labels)
        self.compute.spent += FORWARD_ONLY * len(batch.labels) * self.world
        return npo_loss(ce, ce_ref, self.cfg.beta)

    def repair_loss(self, batch) -> torch.Tensor:
        """`rem_repair_loss` with each view run only on the rows it reads (module docstring)."""
        cfg, model = self.cfg, self.model
        identified = self.task.identified_mask[batch.indices]
        rows = torch.nonzero(identified).flatten()
        ref_ce = self.reference_ce(batch, None if cfg.retain_loss == "npo" else rows)
        if self.cached_ref_ce is not None:
            ref_ce = torch.where(identified, ref_ce, self.cached_ref_ce[batch.indices])
        if cfg.redirect:
            masks = unit_masks(batch.indices, identified, self.expansion.num_units, cfg.mask_density, self.seed)
            with self.expansion.redirect(masks), contextlib.nullcontext() if cfg.bn == "frozen" else frozen_bn_stats(model):
                fit_logits = model(batch.inputs)
            drop_logits = self.drop_logits(batch, rows) if cfg.continued_removal else None
        else:  # the no-redirect ablation: fit and removal in the drop view, whole batch
            fit_logits = model(batch.inputs)
            drop_logits = fit_logits[rows] if cfg.continued_removal else None
        self.compute.spent += len(batch.labels) * self.world
        retain_loss = "ce" if cfg.retain_loss == "ce" else "npo"
        weight = self.repair_fraction if cfg.identified_weight == "fraction" else 1.0
        return rem_repair_loss(
            fit_logits,
            batch.labels,
            identified,
            ref_ce,
            drop_logits,
            cfg.beta,
            retain_loss,
            fit_identified=cfg.redirect,
            removal=cfg.removal,
            identified_weight=weight,
        )

    def reference_ce(self, batch, rows: torch.Tensor | None) -> torch.Tensor:
        """The frozen input model's CE on `rows` of the batch (None: all); zero elsewhere."""
        if rows is None:
            self.compute.spent += FORWARD_ONLY * len(batch.labels) * self.world
            return self.reference.ce(batch.inputs, batch.labels)
        ce = torch.zeros(batch.labels.shape[0], device=batch.labels.device)
        if len(rows):
            self.compute.spent += FORWARD_ONLY * len(rows) * self.world
            ce[rows] = self.reference.ce(batch.inputs[rows], batch.labels[rows])
        return ce

    def _cache_reference_ce(self) -> torch.Tensor:
        """The reference's CE on every training image (non-augmented), by training-split position."""
        self.compute.spent += FORWARD_ONLY * len(self.task.train_view)
        return self.reference.ce_by_position(self.task.train_view)

    def drop_logits(self, batch, rows: torch.Tensor) -> torch.Tensor | None:
        """The drop view on the identified rows (module docstring): the whole batch's pass, sliced,
        for `drop_view="batch"` with batch statistics; else those rows alone on running statistics."""
        if self.cfg.drop_view == "batch" and self.cfg.bn == "batch":
            self.compute.spent += len(batch.labels) * self.world
            return self.model(batch.inputs)[rows]
        if not len(rows):
            return None
        self.compute.spent += len(rows) * self.world
        with norms_in_eval(self.model):
            return self.model(batch.inputs[rows])

    # ---- data and statistics ----------------------------------------------------------------

    def recalibrate(self) -> None:
        self.compute.spent += FORWARD_ONLY * self.recalibration(self.model)

    def repair_view(self) -> SampleView:
        """Every identified row and a seeded `repair_fraction` of the retain rows, shuffled together
        into the usual mixed batches (the whole training view at fraction 1)."""
        view = self.task.train_view
        if self.repair_fraction >= 1.0:
            return view
        identified = self.task.identified_mask[view.indices].cpu()
        id_rows, retain_rows = torch.nonzero(identified).flatten(), torch.nonzero(~identified).flatten()
        count = max(1, round(self.repair_fraction * len(retain_rows)))
        picked = retain_rows[torch.randperm(len(retain_rows), generator=self.subsets)[:count]]
        return view.subset(torch.sort(torch.cat([id_rows, picked])).values)

    def patience_spent(self, iteration: int) -> bool:
        """`patience` iterations have passed since the keep rule last kept an iterate: with keep=best,
        since the best proxy; with latest-tied, since the last iterate tied with the best, so a
        repair still healing within the proxy's noise keeps going."""
        return self.cfg.patience > 0 and iteration - self.selection.kept_iteration >= self.cfg.patience


def clock(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


def rem(task: UnlearnTask, cfg: REMConfig) -> MethodResult:
    run = REMRun(task, cfg)
    iterations = [{"iteration": 0, **run.measure(0)}]
    forget_acc = run.selection.last_forget_acc
    warnings = []
    if forget_acc <= cfg.gamma:
        warnings.append(
            f"the model predicts only {forget_acc:.1%} of the {len(task.forget_view)} identified samples with the labels it was trained on "
            f"(gamma={cfg.gamma:g}), so there was nothing to flush: it never fitted them; check the --forget list and the data and labels "
            "the checkpoint was trained with"
        )
    for iteration in range(1, cfg.epochs + 1):
        if not run.compute.fits_another(run.repair_fraction):
            run.stopped = "budget"
            break
        started = clock(task.device)
        flush_epochs, flush_steps, flushed_to = run.flush(iteration, forget_acc)
        flush_s = clock(task.device) - started
        stats = run.repair(iteration)
        repair_s = clock(task.device) - started - flush_s  # the epoch and the recalibration after it
        started = clock(task.device)
        measured = run.measure(iteration)
        seconds = {"flush_s": round(flush_s, 3), "repair_s": round(repair_s, 3), "measure_s": round(clock(task.device) - started, 3)}
        forget_acc = run.selection.last_forget_acc
        task.reporter.advance(0, forget_acc=measured["forget_acc"], redirect_acc=measured["identified_redirect_acc"], proxy=measured["proxy"])
        iterations.append(
            {
                "iteration": iteration,
                "flush_epochs": flush_epochs,
                "flush_steps": flush_steps,
                "forget_acc_after_flush": round(flushed_to, 5),
                "repair_loss": round(stats.mean_loss, 5),
                "repair_samples": stats.samples,
                **measured,
                **seconds,
            }
        )
        if run.patience_spent(iteration):
            run.stopped = "patience"
            break
    run.expansion.remove()
    run.selection.restore_kept()
    run.model.eval()
    log = {
        "targets": run.expansion.targets,
        "new_units": run.expansion.num_units,
        "new_parameters": run.expansion.parameter_count(),
        "model_parameters": sum(p.numel() for p in run.model.parameters()),
        "optimizer": run.optim.name,
        "lr": run.optim.lr,
        "select_on": run.selection.select_on,
        "kept": cfg.keep,
        "best_iteration": run.selection.best_iteration,
        "best_proxy": round(run.selection.best_proxy, 5),
        "kept_iteration": run.selection.kept_iteration,
        "redirecting_iterations": sum(1 for it in iterations[1:] if it["redirecting"]),
        "stopped": run.stopped,
        "warnings": warnings,
        "compute": run.compute.record(run.repair_fraction),
        "iterations": iterations,
    }
    return MethodResult(model=run.model, steps=run.engine.steps, log=log)

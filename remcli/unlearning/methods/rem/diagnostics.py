"""REM's per-iteration diagnostics: does the redirect view hold the identified set while the drop
view has forgotten it? Measured before the new units are dropped.

Both views are measured in eval mode, on BatchNorm running statistics that only the drop view's
passes (or, by default, the recalibration from retain samples in the drop view) estimated. The
redirect view adds the new units' writes, so these statistics are not its own: its accuracy here
can understate how well it fits under batch statistics, as in the repair itself. Read
`*_redirect_acc` as a lower bound."""

from __future__ import annotations

import torch
from torch import nn

from remcli.data.pipeline import SampleView
from remcli.engine import autocast, inference_batch_size
from remcli.seeding import generator
from remcli.unlearning.base import UnlearnTask, eval_mode
from remcli.unlearning.losses import npo_weight, per_sample_ce
from remcli.unlearning.methods.rem.config import REDIRECTING_FIT, REMConfig
from remcli.unlearning.methods.rem.expansion import Expansion
from remcli.unlearning.methods.rem.masks import unit_masks
from remcli.unlearning.methods.rem.reference import Reference


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

    def __init__(self, task: UnlearnTask, reference: Reference, views: dict[str, SampleView], cfg: REMConfig, seed: int):
        self.task, self.views, self.cfg, self.seed = task, views, cfg, seed
        self.ce_ref = reference.ce_by_position(*views.values())
        self.reference_passes = sum(len(view) for view in views.values())  # sample-passes of the reference's CE, once
        self.passes = 2 * self.reference_passes  # sample-passes of each call: both views on every sample

    @torch.no_grad()
    def __call__(self, model: nn.Module, expansion: Expansion) -> dict:
        """Unrounded values; `redirecting` says whether the redirect view holds the identified set."""
        out: dict[str, float | bool] = {}
        task, cfg = self.task, self.cfg
        with eval_mode(model, expansion.adapters):
            for name, view in self.views.items():
                sums = {"drop": [0.0, 0.0, 0], "redirect": [0.0, 0.0, 0]}
                for batch in view.batches(task.spec, inference_batch_size(task.device)):
                    ce_ref = self.ce_ref[batch.indices]
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

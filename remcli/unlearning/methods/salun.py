"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to salient weights.

1. Saliency: |gradient of the identified samples' CE| at the input model, summed over batches;
   the mask keeps the `mask_fraction` of weights with the largest saliency over the whole model
   (the paper's definition; the repository's mask script differs between versions).
2. Random labelling: identified samples get uniformly random labels (drawn once from the seed),
   retain samples keep theirs; CE over both, shuffled together (the repository's concatenated
   path). Gradients are multiplied by the mask and masked-out weights are restored after every
   step, so weight decay cannot move them either: only salient weights change.
Defaults: 10 epochs, batch 256, SGD lr 0.01 (the SalUn repository README's 0.1 is reported too high by users; the
authors grid-search lr in [1e-4, 0.1]). Keeps the last iterate.

`variant=rem-code` is the REM repository's "SalUn": CE on the non-identified training samples for
10 epochs at lr 0.005. Its input-saliency term carries no gradient to the weights, so it is
exactly fine-tuning on the retain set; it is offered only to reproduce that code's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from remcli.data.pipeline import SampleView
from remcli.seeding import generator
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.importance import (
    cross_entropy_loss,
    parameter_importance,
    top_fraction_mask,
)
from remcli.unlearning.training import (
    FitConfig,
    fit,
    make_engine,
    steps_per_epoch,
)

VARIANTS = {"original": {"lr": 0.01}, "rem-code": {"lr": 0.005}}  # the settings left None take the variant's value


@dataclass
class SalUnConfig(FitConfig):
    CHOICES = {**FitConfig.CHOICES, "variant": tuple(VARIANTS)}
    VARIANTS = VARIANTS

    variant: str = "original"  # original | rem-code
    epochs: int = 10
    lr: float | None = None  # None: 0.01 (original) / 0.005 (rem-code)
    batch_size: int = 256
    schedule: str = "constant"
    mask_fraction: float = 0.5  # share of weights that may change


def saliency_masks(task: UnlearnTask, fraction: float, batch_size: int) -> dict[str, torch.Tensor]:
    """Masks over every parameter keeping the `fraction` most salient weights for the identified set."""
    saliency = parameter_importance(task.model, task.forget_view.batches(task.spec, batch_size), cross_entropy_loss, power=1)
    return top_fraction_mask(saliency, fraction)


def random_label_view(task: UnlearnTask) -> SampleView:
    """Identified samples with random labels, shuffled in with the retain set."""
    positions = torch.cat([task.identified, task.retain_positions])
    view = task.trained_view(positions)
    count = len(task.identified)
    random = torch.randint(0, task.dataset.num_classes, (count,), generator=generator(task.seed, "unlearn/salun/random-labels")).to(
        view.labels.device
    )
    labels = view.labels.clone()
    labels[:count] = random
    return SampleView(view.images, labels, view.triggered, view.indices, view.trigger)


@register_method(
    "salun",
    SalUnConfig,
    "Random labels on identified samples, updating only the most salient 50% of weights",
    data="identified set + retain set",
    budget=f"{{epochs}} epochs, lr {VARIANTS['original']['lr']:g} (rem-code: {VARIANTS['rem-code']['lr']:g}), mask {{mask_fraction:.0%}}",
    cost="~25%",
)
def salun(task: UnlearnTask, cfg: SalUnConfig) -> MethodResult:
    budget = cfg.with_variant_defaults()
    model = task.model

    def ce(batch):
        return F.cross_entropy(model(batch.inputs), batch.labels)

    if cfg.variant == "rem-code":
        result = fit(task, model, task.retain_view, ce, budget, "salun")
        return MethodResult(model=model, steps=result.steps, log={"variant": cfg.variant, "epochs": result.epochs})

    task.reporter.phase("salun: saliency mask", None)
    masks = saliency_masks(task, cfg.mask_fraction, cfg.batch_size)
    view = random_label_view(task)
    named = dict(model.named_parameters())
    frozen = {n: p.detach().clone() for n, p in named.items()}
    hooks = [named[n].register_hook(lambda g, m=m: g * m.to(g.dtype)) for n, m in masks.items()]
    engine = make_engine(task, model.parameters(), budget.optim(), budget.lr_schedule(steps_per_epoch(view, budget.batch_size) * budget.epochs))

    def restore_masked(*_):
        with torch.no_grad():
            for n, m in masks.items():
                named[n].copy_(torch.where(m, named[n], frozen[n]))

    post_hook = engine.optimizer.register_step_post_hook(restore_masked)
    try:
        result = fit(task, model, view, ce, budget, "salun", engine=engine)
    finally:
        post_hook.remove()
        for hook in hooks:
            hook.remove()
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return MethodResult(
        model=model,
        steps=result.steps,
        log={"variant": cfg.variant, "mask_kept": kept, "mask_fraction": round(kept / total, 6), "epochs": result.epochs},
    )

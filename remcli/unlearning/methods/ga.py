"""Gradient ascent on the identified samples (REM paper's "Ascent").

One epoch over the identified set at a time, maximising their cross-entropy against the labels
they were trained with, until their accuracy is <= gamma; the best iterate by the selection proxy
(validation split, never test) is kept. Unlike the research code, `max_epochs` is a hard cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from remcli.unlearning.ascent import AscentConfig, ascend_until
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method


@dataclass
class GAConfig(AscentConfig):
    pass


@register_method(
    "ga",
    GAConfig,
    "Gradient ascent on the identified samples until their accuracy <= gamma",
    data="identified set (+ validation for selection)",
    budget="until acc <= {gamma:g}, at most {max_epochs} epochs",
    cost="<1%",
    data_parallel=True,
)
def ga(task: UnlearnTask, cfg: GAConfig) -> MethodResult:
    model = task.model
    steps, log = ascend_until(task, cfg, lambda b: -F.cross_entropy(model(b.inputs).float(), b.labels), "ga")
    return MethodResult(model=model, steps=steps, log=log)

"""NPO (Zhang et al. 2024) on the identified samples, as REM's vision baseline runs it.

Loss -(2/beta) mean log sigmoid(-beta log(pi/pi_ref)) with pi_ref the frozen input model; it
behaves like gradient ascent at first and saturates, which avoids collapse. Same stopping rule
and selection as `ga`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from remcli.unlearning.ascent import AscentConfig, ascend_until
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.losses import npo_loss


@dataclass
class NPOConfig(AscentConfig):
    beta: float = 1.0  # inverse temperature (REM's vision setting; the LLM paper used 0.1)


@register_method(
    "npo",
    NPOConfig,
    "Negative preference optimisation against the frozen input model, until acc <= gamma",
    data="identified set (+ validation for selection)",
    budget="until acc <= {gamma:g}, at most {max_epochs} epochs",
    cost="<1%",
    data_parallel=True,
)
def npo(task: UnlearnTask, cfg: NPOConfig) -> MethodResult:
    model, reference = task.model, task.frozen_copy()

    def loss(batch):
        ce = F.cross_entropy(model(batch.inputs).float(), batch.labels, reduction="none")
        with torch.no_grad():
            ce_ref = F.cross_entropy(reference(batch.inputs).float(), batch.labels, reduction="none")
        return npo_loss(ce, ce_ref, cfg.beta)

    steps, log = ascend_until(task, cfg, loss, "npo")
    return MethodResult(model=model, steps=steps, log=log)

"""Bad Teacher (Chundawat et al., AAAI 2023): distil from a competent and an incompetent teacher.

Student = the input model; competent teacher = a frozen copy of it; incompetent teacher = a
freshly initialised (seeded) model of the same architecture. Identified samples are pulled towards
the incompetent teacher's softmax, all others towards the competent one's, with KL(target ||
student) at temperature T. Data: the identified set plus a random `retain_fraction` of the retain
set (the original's 30%; 1.0 gives the corrective benches' "all of the training set"). Defaults:
1 epoch, Adam lr 1e-4, batch 256 (the SSD paper's reproduction of the original). KL uses
`batchmean` (the mathematical KL); the original's elementwise `mean` only rescales the lr.
Keeps the last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from remcli.seeding import generator
from remcli.unlearning.base import MethodResult, UnlearnTask, register_method
from remcli.unlearning.training import FitConfig, fit


@dataclass
class BadTeacherConfig(FitConfig):
    epochs: int = 1
    lr: float = 1e-4
    optimizer: str = "adam"
    batch_size: int = 256
    weight_decay: float = 0.0
    schedule: str = "constant"
    retain_fraction: float = 0.3  # share of the retain set distilled from the competent teacher
    temperature: float = 1.0


@register_method(
    "badteacher",
    BadTeacherConfig,
    "Distil identified samples from a random teacher, the rest from the input model",
    data="identified set + 30% of the retain set",
    budget="{epochs} epoch(s), {optimizer} lr {lr:g}",
    cost="~1-3%",
)
def badteacher(task: UnlearnTask, cfg: BadTeacherConfig) -> MethodResult:
    student, competent = task.model, task.frozen_copy()
    incompetent = task.frozen_copy(task.fresh_model("unlearn/badteacher/incompetent"))
    retain = task.retain_positions
    pick = torch.randperm(len(retain), generator=generator(task.seed, "unlearn/badteacher/retain-subset"))[
        : int(round(cfg.retain_fraction * len(retain)))
    ]
    positions = torch.cat([task.identified, retain[pick]])
    view = task.trained_view(positions)

    def loss(batch):
        with torch.no_grad():
            good = F.softmax(competent(batch.inputs).float() / cfg.temperature, dim=1)
            bad = F.softmax(incompetent(batch.inputs).float() / cfg.temperature, dim=1)
            target = torch.where(task.identified_mask[batch.indices, None], bad, good)
        log_student = F.log_softmax(student(batch.inputs).float() / cfg.temperature, dim=1)
        return F.kl_div(log_student, target, reduction="batchmean")

    result = fit(task, student, view, loss, cfg, "badteacher")
    return MethodResult(model=student, steps=result.steps, log={"distilled_samples": len(view), "retain_samples": len(pick), "epochs": result.epochs})

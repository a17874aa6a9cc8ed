"""pi_ref: the frozen input model whose cross-entropy NPO's ratio compares against.

The repair reads it live on augmented batches (`retain_loss="npo"`, and the identified rows always)
and cached per image (`"npo-cached"`, the diagnostics); both go through `Reference.ce`, so every
reference CE is the same computation."""

from __future__ import annotations

import torch

from remcli.data.pipeline import SampleView
from remcli.engine import autocast, inference_batch_size
from remcli.unlearning.base import UnlearnTask
from remcli.unlearning.losses import per_sample_ce


class Reference:
    """The task's input model, frozen in eval mode (rows independent of each other)."""

    def __init__(self, task: UnlearnTask):
        self.task = task
        self.model = task.frozen_copy()

    @torch.no_grad()
    def ce(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample CE, the forward under the task's autocast (a no-op inside the engine's own)."""
        with autocast(self.task.device, self.task.precision):
            logits = self.model(inputs)
        return per_sample_ce(logits, labels)

    def ce_by_position(self, *views: SampleView) -> torch.Tensor:
        """The CE on every image of `views`, not augmented, by training-split position (0 elsewhere)."""
        cache = torch.zeros(len(self.task.dataset.train), device=self.task.device)
        for view in views:
            for batch in view.batches(self.task.spec, inference_batch_size(self.task.device)):
                cache[batch.indices] = self.ce(batch.inputs, batch.labels)
        return cache

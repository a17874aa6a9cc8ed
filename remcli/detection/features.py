"""What detection reads from a model: the classifier's input features (penultimate layer, eval
mode) of every trained-on sample, images as trained (triggers on, labels as trained)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from remcli.checkpoints import Checkpoint
from remcli.data.pipeline import InputSpec
from remcli.data.views import as_trained_view
from remcli.engine import autocast, resolve_device, resolve_precision
from remcli.inputs import RunInputs
from remcli.models import input_spec
from remcli.models.blocks import classifier_layer


@torch.no_grad()
def penultimate_features(model: nn.Module, batches, precision: str) -> torch.Tensor:
    """(N, D) float32 inputs of the classifier for every batch, in order (eval mode is the caller's)."""
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    handle = classifier_layer(model, "detect").register_forward_hook(lambda module, args, out: captured.append(args[0].detach().float().flatten(1)))
    try:
        for batch in batches:
            with autocast(device, precision):
                model(batch.inputs)
    finally:
        handle.remove()
    return torch.cat(captured).cpu() if captured else torch.empty(0, 0)


@dataclass
class TrainedFeatures:
    """The model in eval mode and the classifier-input features of every trained-on sample
    (validation samples excluded: never trained on, never candidates), as trained."""

    model: nn.Module
    spec: InputSpec
    precision: str
    positions: torch.Tensor  # training positions of the rows
    features: torch.Tensor  # (N, D) float32, on the CPU
    labels: torch.Tensor  # the labels trained on, on the CPU


def trained_features(checkpoint: Checkpoint, inputs: RunInputs, device: str, batch_size: int) -> TrainedFeatures:
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev, cpu_bf16=False)  # scores in fp32 on CPUs: exact and comparable
    model = checkpoint.build().to(dev).to(memory_format=torch.channels_last).eval()
    trained = torch.ones(len(inputs.dataset.train), dtype=torch.bool)
    trained[checkpoint.validation_indices] = False
    positions = torch.nonzero(trained).flatten()
    view = as_trained_view(inputs.dataset, inputs.manifest, positions, dev)
    spec = input_spec(inputs.dataset, checkpoint.arch or "")
    features = penultimate_features(model, view.batches(spec, batch_size), precision)
    return TrainedFeatures(model, spec, precision, positions, features, view.labels.cpu())

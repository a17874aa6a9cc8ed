"""What detection reads from a model, for every trained-on sample, images as trained (triggers
on, labels as trained), eval mode:

* the classifier's input features (the penultimate layer): every signal's default;
* with `blocks=True`, also every block's output (`models.blocks.block_outputs`) pooled to one vector
  per sample, each channel's maximum and mean over positions (or tokens). A shared low-level
  pattern such as a trigger patch shows in the early blocks' channel maxima wherever it sits in
  the image, even where the penultimate layer of a model that memorised its training set has
  spread the corrupted samples out (docs/detection.md).

The features may come from another model than the one being cleaned (`feature_model`): one never
trained on the corrupted labels, such as the pretrained model a fine-tuned one started from. It
sees a swapped or noisy label as the data shows it, where the fine-tuned model has memorised it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from remcli.checkpoints import Checkpoint, load_checkpoint, load_recorded_init
from remcli.data.pipeline import InputSpec
from remcli.data.views import as_trained_view
from remcli.engine import autocast, resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.inputs import RunInputs
from remcli.models import input_spec
from remcli.models.blocks import block_outputs, classifier_layer


def pooled(output: torch.Tensor) -> torch.Tensor:
    """One float32 vector per sample: each channel's max and mean over the positions of an (N, C,
    H, W) output, or over the tokens of an (N, T, D) one; a flat output as it is."""
    x = output.detach().float()
    if x.dim() == 4:
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)
    if x.dim() == 3:
        return torch.cat([x.amax(dim=1), x.mean(dim=1)], dim=1)
    return x.flatten(1)


@torch.no_grad()
def model_features(model: nn.Module, batches, precision: str, blocks: bool = False) -> list[torch.Tensor]:
    """(N, D) float32 tensors on the CPU for every batch, in order (eval mode is the caller's): the
    pooled output of each block (`blocks=True`, forward order), then the classifier's input."""
    device = next(model.parameters()).device
    modules = dict(model.named_modules())
    names = block_outputs(model) if blocks else []
    captured: list[list[torch.Tensor]] = [[] for _ in range(len(names) + 1)]
    handles = [modules[name].register_forward_hook(lambda m, a, out, i=i: captured[i].append(pooled(out))) for i, name in enumerate(names)]
    classifier = classifier_layer(model, "detect")
    handles.append(classifier.register_forward_hook(lambda m, args, out: captured[-1].append(args[0].detach().float().flatten(1))))
    try:
        for batch in batches:
            with autocast(device, precision):
                model(batch.inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [torch.cat(parts).cpu() if parts else torch.empty(0, 0) for parts in captured]


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
    blocks: list[torch.Tensor] = field(default_factory=list)  # each block's pooled output (`blocks=True`), then `features`


INIT = "init"  # `--features-from init`: the checkpoint the model was fine-tuned from, as its history records it


def feature_model(checkpoint: Checkpoint, source: str | Path | None, dataset_shape: tuple[int, ...]) -> Checkpoint | None:
    """The checkpoint to read features from instead of `checkpoint` (None: its own): `init` (the
    recorded init, checked by sha256) or a checkpoint path. It must take the data's images."""
    if source is None:
        return None
    if str(source) == INIT:
        if checkpoint.init is None:
            raise InputError(
                f"--features-from init: {checkpoint.path} was not fine-tuned from a recorded init (`train --init`); give the path of a "
                "checkpoint never trained on the corrupted labels"
            )
        other = load_recorded_init(checkpoint.init, "read features from it")
    else:
        other = load_checkpoint(source)
    shape = tuple(other.meta.get("input_shape") or ())
    if shape and shape != tuple(dataset_shape):
        raise InputError(
            f"--features-from {other.path} takes {list(shape)} images, the data has {list(dataset_shape)}; give a checkpoint trained on "
            "images like these"
        )
    return other


def source_record(features_from: Checkpoint | None) -> dict:
    """The summary's `features_from`: which checkpoint the scores read (path and sha256), or {}."""
    return {} if features_from is None else {"features_from": {"path": str(features_from.path), "sha256": features_from.sha256}}


def trained_features(
    checkpoint: Checkpoint, inputs: RunInputs, device: str, batch_size: int, blocks: bool = False, features_from: Checkpoint | None = None
) -> TrainedFeatures:
    """The trained-on samples of `checkpoint` (its validation rows left out), as it was trained on
    them, through `features_from` when given (else `checkpoint` itself)."""
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev, cpu_bf16=False)  # scores in fp32 on CPUs: exact and comparable
    reader = features_from or checkpoint
    model = reader.build().to(dev).to(memory_format=torch.channels_last).eval()
    trained = torch.ones(len(inputs.dataset.train), dtype=torch.bool)
    trained[checkpoint.validation_indices] = False
    positions = torch.nonzero(trained).flatten()
    view = as_trained_view(inputs.dataset, inputs.manifest, positions, dev)
    spec = input_spec(inputs.dataset, reader.arch or "")
    features = model_features(model, view.batches(spec, batch_size), precision, blocks)
    return TrainedFeatures(model, spec, precision, positions, features[-1], view.labels.cpu(), features if blocks else [])

"""Batched tensor ops that turn uint8 images into model inputs, and the batch iterator.

Order of operations for a training batch (as in the corrective-unlearning benches and REM's research code):
random crop (zero padding 4) + horizontal flip on uint8 -> float in [0, 1] -> trigger patch
stamped in pixel space -> normalise. The trigger therefore sits at the same place in every
augmented view. Every op works on a whole batch; nothing loops over samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from remcli.data.streaming import ImageFiles
from remcli.data.triggers import Trigger


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """torchvision RandomCrop(size, padding) with zero fill, for a whole (B, C, H, W) batch."""
    if padding == 0:
        return images
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=generator.device).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=generator.device).to(images.device)
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, :]  # (B, 1, W)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    return padded[batch_index, :, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def stamp_trigger(pixels: torch.Tensor, triggered: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    """Write the trigger patch into the images selected by the boolean `triggered` (pixel space)."""
    channels, height, width = pixels.shape[1:]
    top, left = trigger.top_left(height, width)
    colour = torch.tensor(trigger.colour_for(channels), dtype=pixels.dtype, device=pixels.device)
    patch_region = pixels[:, :, top : top + trigger.size, left : left + trigger.size]
    keep = ~triggered.to(pixels.device)[:, None, None, None]
    pixels[:, :, top : top + trigger.size, left : left + trigger.size] = torch.where(keep, patch_region, colour[None, :, None, None])
    return pixels


SMALLEST_LAST_BATCH_FRACTION = 8


def training_batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch in one shuffled training pass over `count` samples.

    A last batch smaller than batch_size / 8 is folded into the one before it. With BatchNorm in
    train mode a batch of a handful of samples takes a full-size step on noisy statistics: a
    1,410-sample retain set at batch 128 (last batch: 2) sent finetune and retrain on the CPU
    profile from training loss 0.1 to 1.9 (docs/results-cpu.md), while batch 141 (no remainder)
    stayed at 0.08. Every sample is still seen once per epoch.
    """
    starts = list(range(0, count, batch_size))
    remainder = count % batch_size
    if len(starts) > 1 and 0 < remainder < batch_size / SMALLEST_LAST_BATCH_FRACTION:
        starts.pop()
    return [(start, stop) for start, stop in zip(starts, starts[1:] + [count])]


@dataclass(frozen=True)
class InputSpec:
    """How uint8 images become model inputs: normalisation and the model's channel count."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    model_channels: int

    def to_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> normalised, channel-matched, channels_last model input."""
        mean = torch.tensor(self.mean, device=pixels.device)[None, :, None, None]
        std = torch.tensor(self.std, device=pixels.device)[None, :, None, None]
        x = (pixels - mean) / std
        if x.shape[1] == 1 and self.model_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return x.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # normalised float model inputs
    labels: torch.Tensor  # int64, the labels this view trains or evaluates against
    indices: torch.Tensor  # int64 positions in the training split (identity for masks)


@dataclass
class SampleView:
    """A set of samples as some loop sees them: images, the labels to use, and which get triggered.

    `indices` are positions in the training split (or the test split for test views); REM's
    per-sample masks and identified-set membership are functions of them.
    """

    images: torch.Tensor | ImageFiles  # uint8 (N, C, H, W) on the compute device, or files decoded per batch
    labels: torch.Tensor  # int64 (N,)
    triggered: torch.Tensor  # bool (N,)
    indices: torch.Tensor  # int64 (N,)
    trigger: Trigger | None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, rows: torch.Tensor) -> "SampleView":
        rows = rows.to(self.labels.device)
        return SampleView(self.images[rows], self.labels[rows], self.triggered[rows], self.indices[rows], self.trigger)

    def to(self, device: torch.device) -> "SampleView":
        return SampleView(self.images.to(device), self.labels.to(device), self.triggered.to(device), self.indices.to(device), self.trigger)

    def batches(
        self,
        spec: InputSpec,
        batch_size: int,
        generator: torch.Generator | None = None,
        augment: bool = False,
    ) -> Iterator[Batch]:
        """Yield batches; shuffled and augmented when a generator is given and `augment` is set.

        A shuffled pass folds a tiny last batch into the one before it (`training_batch_bounds`);
        an unshuffled pass (evaluation, importance scores) cuts plain consecutive batches.
        """
        count = len(self)
        device = self.labels.device
        if generator is not None:
            order = torch.randperm(count, generator=generator, device=generator.device).to(device)
            bounds = training_batch_bounds(count, batch_size)
        else:
            order = torch.arange(count, device=device)
            bounds = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
        row_batches = [order[start:stop] for start, stop in bounds]
        if isinstance(self.images, ImageFiles):  # streamed: DataLoader workers decode each batch's files
            uint8_batches = self.images.batches(row_batches, device)
        else:
            uint8_batches = (self.images[rows] for rows in row_batches)
        for rows, images in zip(row_batches, uint8_batches):
            if augment:
                assert generator is not None, "augmentation needs a generator"
                images = random_flip(random_crop(images, 4, generator), generator)
            pixels = images.float().div_(255.0)
            if self.trigger is not None:
                pixels = stamp_trigger(pixels, self.triggered[rows], self.trigger)
            yield Batch(spec.to_input(pixels), self.labels[rows], self.indices[rows])

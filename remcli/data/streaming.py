"""Image folders too large to decode into memory: files listed once, decoded per batch.

The in-memory path decodes a whole split into one uint8 tensor. `ImageFiles` stands in for that
tensor when a folder would not fit: it keeps the file list (in the same canonical order, so a
sample's position, label, index-file line and manifest entry mean exactly what they mean in
memory), and `SampleView.batches` asks it for each batch's rows. DataLoader workers decode those
files (PIL, RGB, the same bilinear resize as the in-memory loader) into uint8, and from there the
batch takes the same path as in memory: crop and flip on the uint8 batch from the same seeded
generator, trigger stamped in pixel space, normalisation. Memory stays bounded by the batch size
times the number of batches in flight, whatever the folder's size.

Chosen with `imagefolder:ROOT?stream`, or automatically when the decoded splits would exceed
`REMCLI_STREAM_ABOVE_GIB` (default 8 GiB).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from remcli.errors import InputError

STREAM_ABOVE_GIB = 8.0


def stream_threshold_bytes() -> int:
    """Decoded size above which imagefolder data streams (env REMCLI_STREAM_ABOVE_GIB, default 8)."""
    return int(float(os.environ.get("REMCLI_STREAM_ABOVE_GIB", STREAM_ABOVE_GIB)) * 2**30)


def decode_image(path: str | Path, size: int | None) -> np.ndarray:
    """One image as uint8 (H, W, 3): the one decoder of both paths (in memory and streamed)."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if size is not None and rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb)


# What PIL raises for a file it cannot decode: UnidentifiedImageError (an OSError) for an empty or
# non-image file, OSError for truncated data, SyntaxError / ValueError / EOFError from some decoders.
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError)


def unreadable_reason(path: str | Path, err: Exception) -> str:
    from PIL import UnidentifiedImageError

    if os.path.getsize(path) == 0:
        return "empty file"
    return "not an image" if isinstance(err, UnidentifiedImageError) else f"truncated or damaged: {str(err)[:60]}"


def decode_images(paths: list[str], size: int | None) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """Every file decoded, and the (path, reason) of each that would not decode: collected rather
    than raised at the first, so one error can name them all."""
    arrays, unreadable = [], []
    for path in paths:
        try:
            arrays.append(decode_image(path, size))
        except UNREADABLE as err:
            unreadable.append((path, unreadable_reason(path, err)))
    return arrays, unreadable


def unreadable_images_error(named: list[tuple[str, str]], where: str, shown: int = 3) -> InputError:
    """One line naming the first few unreadable files (name, reason) and the fix. They are refused,
    not skipped: a skipped file would shift the position of every later sample, and positions are
    what index files, manifests and checkpoints refer to."""
    listed = ", ".join(f"{name} ({reason})" for name, reason in named[:shown])
    more = f" and {len(named) - shown} more" if len(named) > shown else ""
    files, them = ("files", "them") if len(named) != 1 else ("file", "it")
    return InputError(
        f"{len(named)} unreadable image {files} {where}: {listed}{more}; remove or repair {them} "
        "(they are not skipped: that would shift the position of every later sample)"
    )


def decode_workers() -> int:
    """DataLoader workers per streamed pass: the cores less one, at most 8 (env REMCLI_DECODE_WORKERS)."""
    if "REMCLI_DECODE_WORKERS" in os.environ:
        return int(os.environ["REMCLI_DECODE_WORKERS"])
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class _RowBatches(torch.utils.data.Dataset):
    """Item i = the uint8 (B, C, H, W) batch of the files at positions[i] (decoded in a worker)."""

    def __init__(self, files: Sequence[str], size: int | None, positions: list[torch.Tensor]):
        self.files, self.size, self.positions = files, size, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> torch.Tensor | list[tuple[str, str]]:
        """The batch, or the (file, reason) of each file in it that would not decode: returned, not
        raised, because an error raised in a worker reaches the main process as a traceback."""
        arrays, unreadable = decode_images([self.files[p] for p in self.positions[i].tolist()], self.size)
        if unreadable:
            return unreadable
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class ImageFiles:
    """A split's images left on disk, indexed like a uint8 (N, C, H, W) tensor.

    `images[rows]` gives another ImageFiles (a view: nothing is decoded); `batches(row_batches)`
    decodes, in order, one uint8 tensor per row batch.
    """

    def __init__(self, files: Sequence[str], image_shape: tuple[int, int, int], size: int | None, rows: torch.Tensor | None = None):
        self.files = tuple(files)  # absolute paths of the whole split, in position order
        self.image_shape = image_shape
        self.size = size
        self.rows = torch.arange(len(self.files)) if rows is None else rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.image_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: torch.Tensor) -> ImageFiles:
        return ImageFiles(self.files, self.image_shape, self.size, self.rows[torch.as_tensor(rows).cpu()])

    def to(self, device: torch.device) -> ImageFiles:
        return self  # decoded on the CPU, batch by batch; each batch goes to the device

    def batches(self, row_batches: list[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """uint8 batches of the given rows (positions in this view), decoded by DataLoader workers, in order."""
        positions = [self.rows[rows.cpu()] for rows in row_batches]
        workers = decode_workers()
        loader = torch.utils.data.DataLoader(
            _RowBatches(self.files, self.size, positions),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=2 if workers else None,
            pin_memory=device.type == "cuda",
        )
        for images in loader:
            if isinstance(images, list):
                raise unreadable_images_error(images, "in a streamed batch")
            yield images.to(device, non_blocking=True)

    def decoded_bytes(self) -> int:
        return int(np.prod(self.shape))

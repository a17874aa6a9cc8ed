"""Datasets made of image files: `imagefolder:ROOT` (class-per-folder train and test splits),
the shipped `sample`, and the extra labelled folders `evaluate --eval-set` reads.

Positions follow torchvision ImageFolder's order (`list_image_folder`); the files are decoded
once into memory, or listed for decoding per batch (`?stream`, or automatically above
REMCLI_STREAM_ABOVE_GIB: remcli.data.streaming). Statistics are measured on the training images,
except for the shipped sample, which is CIFAR-10 and keeps CIFAR-10's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from remcli.data.datasets import CIFAR_MEAN, CIFAR_STD, DataSpec, LoadedSplits, Split, register_dataset, split_from_hwc, split_size
from remcli.data.streaming import (
    UNREADABLE,
    ImageFiles,
    decode_images,
    stream_threshold_bytes,
    unreadable_images_error,
    unreadable_reason,
)
from remcli.errors import InputError

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data" / "cifar10"
FOLDER_LAYOUT = "ROOT/train/<class>/<image> and ROOT/test/<class>/<image> (or ROOT/val/<class>/<image>)"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's IMG_EXTENSIONS


@dataclass(frozen=True)
class FolderListing:
    """A class-per-folder split's files in torchvision ImageFolder's order, which defines sample
    positions: classes sorted, then each class's directory tree walked in sorted order (links
    followed), files sorted, image extensions only (case-insensitive)."""

    files: list[str]
    targets: list[int]
    classes: tuple[str, ...]


def list_image_folder(folder: Path) -> FolderListing:
    """ImageFolder's listing without importing torchvision (its import costs about a second). A
    folder without class folders, or a class folder without images, is an InputError."""
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise InputError(f"{folder} has no class folders; put each class's images in {folder}/<class>/")
    files: list[str] = []
    targets: list[int] = []
    empty = []
    for index, name in enumerate(classes):
        before = len(files)
        for root, _, names in sorted(os.walk(os.path.join(folder, name), followlinks=True)):
            files.extend(os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS))
        targets.extend([index] * (len(files) - before))
        if len(files) == before:
            empty.append(name)
    if empty:
        raise InputError(
            f"class folders without images under {folder}: {', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}; "
            f"add images ({' '.join(IMAGE_EXTENSIONS)}) or remove the folders"
        )
    return FolderListing(files, targets, tuple(classes))


def _decode_folder(
    folder: Path, size: int | None = None, stream: bool = False, listing: FolderListing | None = None
) -> tuple[Split, tuple[str, ...]]:
    """A class-per-folder split, decoded into memory, or (`stream`) listed for decoding per batch."""
    listing = listing or list_image_folder(folder)
    files = listing.files
    paths = tuple(Path(path).relative_to(folder.parent).as_posix() for path in files)
    labels = torch.as_tensor(listing.targets, dtype=torch.int64)
    if stream:
        return Split(ImageFiles(files, (3, *_common_size(folder, files, size)), size), labels, paths), listing.classes
    arrays, unreadable = decode_images(files, size)  # decoded once at load time, never in a training loop
    if unreadable:
        raise _unreadable_images(folder, unreadable)
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise _mixed_sizes(folder, shapes)
    split = split_from_hwc(np.stack(arrays), listing.targets)
    return Split(split.images, split.labels, paths), listing.classes


def _common_size(folder: Path, files: list[str], size: int | None) -> tuple[int, int]:
    """(H, W) every image will decode to. Every file's header is read: to check the sizes agree
    (without ?size=N) and to refuse files that are not images before a run starts. A file whose
    header reads but whose pixels are cut short is only found when its batch is decoded."""
    from PIL import Image

    shapes, unreadable = set(), []
    for path in files:
        try:
            with Image.open(path) as img:  # the header only: nothing is decoded
                shapes.add((img.height, img.width))
        except UNREADABLE as err:
            unreadable.append((path, unreadable_reason(path, err)))
    if unreadable:
        raise _unreadable_images(folder, unreadable)
    if size is not None:
        return size, size
    if len(shapes) > 1:
        raise _mixed_sizes(folder, shapes)
    return next(iter(shapes))


def _unreadable_images(folder: Path, unreadable: list[tuple[str, str]]) -> InputError:
    named = [(Path(path).relative_to(folder.parent).as_posix(), reason) for path, reason in unreadable]
    return unreadable_images_error(named, f"under {folder}")


def _mixed_sizes(folder: Path, shapes: set[tuple[int, int]]) -> InputError:
    sizes = [f"{w}x{h}" for h, w in sorted(shapes)[:3]]
    return InputError(
        f"images under {folder} have different sizes ({', '.join(sizes)}{', ...' if len(shapes) > 3 else ''}); "
        f"add ?size=N to the data spec (e.g. imagefolder:{folder.parent}?size=32) to resize every image to N x N"
    )


def _test_split(root: Path) -> str:
    """`test`, or `val` when ROOT has no test folder (the common train/val layout)."""
    for part in ("test", "val"):
        if (root / part).is_dir():
            return part
    raise InputError(f"imagefolder root {root} has no 'test' (or 'val') folder: expected {FOLDER_LAYOUT}")


@register_dataset("sample", layout=f"the shipped sample_data/cifar10 of a remcli checkout, {FOLDER_LAYOUT}", image_files=True, root=SAMPLE_DATA)
@register_dataset("imagefolder", layout=FOLDER_LAYOUT, image_files=True)
def _load_image_folders(spec: DataSpec, download: bool) -> LoadedSplits:
    """ROOT/train and ROOT/test (or val), class per folder. Statistics are measured on the training
    images, except for the shipped sample: it is CIFAR-10, so it keeps CIFAR-10's statistics,
    whichever spec names it (`sample` or its path)."""
    root, size = spec.root, spec.size
    if not (root / "train").is_dir():
        raise InputError(f"imagefolder root {root} has no 'train' folder: expected {FOLDER_LAYOUT}")
    test_part = _test_split(root)
    listings = [list_image_folder(root / part) for part in ("train", test_part)]
    stream = spec.stream or _estimated_decoded_bytes(listings, size) > stream_threshold_bytes()
    train, classes = _decode_folder(root / "train", size, stream, listings[0])
    test, test_classes = _decode_folder(root / test_part, size, stream, listings[1])
    if test_classes != classes:
        raise InputError(f"train and {test_part} class folders differ under {root}; make ROOT/train and ROOT/{test_part} hold the same class names")
    if root.resolve() == SAMPLE_DATA.resolve():
        return LoadedSplits(train, test, classes, CIFAR_MEAN, CIFAR_STD, test_part)
    if stream:  # statistics from an evenly spaced sample of at most STATISTICS_SAMPLE images
        rows = torch.linspace(0, len(train) - 1, min(len(train), STATISTICS_SAMPLE)).round().long().unique()
        chunks = train.images[rows].batches(list(torch.arange(len(rows)).split(statistics_chunk(train.images))), torch.device("cpu"))
    else:
        chunks = iter(train.images.split(statistics_chunk(train.images)))
    mean, std = channel_statistics(chunks)
    return LoadedSplits(train, test, classes, mean, std, test_part)


def statistics_chunk(images) -> int:
    """Images per chunk of the statistics pass: about 256 KiB of uint8 (2 MiB as float64). Larger
    float64 temporaries fragment the C heap: 33 MB chunks grew peak RSS by 240 MB over 2,000 images."""
    return max(1, 2**18 // int(np.prod(images.shape[1:])))


def channel_statistics(chunks) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 (B, C, H, W) chunks in [0, 1], rounded to 4
    decimals; float64 sums chunk by chunk, so memory stays at one chunk's size."""
    total = squares = None
    count = 0
    for chunk in chunks:
        pixels = chunk.to(torch.float64).div_(255.0)
        sums, sq = pixels.sum(dim=(0, 2, 3)), pixels.square().sum(dim=(0, 2, 3))
        total, squares = (sums, sq) if total is None else (total + sums, squares + sq)
        count += pixels.numel() // pixels.shape[1]
    mean = total / count
    var = (squares - count * mean.square()) / max(count - 1, 1)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in var.clamp_min(0).sqrt().tolist())


STATISTICS_SAMPLE = 2000


def _estimated_decoded_bytes(listings: list[FolderListing], size: int | None) -> int:
    """Decoded size of the listed images, from their count and the first image's size."""
    from PIL import Image

    files = [path for listing in listings for path in listing.files]
    if not files:
        return 0
    if size is None:
        try:
            with Image.open(files[0]) as img:
                height, width = img.height, img.width
        except OSError:
            return 0  # not an image: the loader reports it
    else:
        height = width = size
    return len(files) * 3 * height * width


EVAL_SET_LAYOUT = "FOLDER/<class>/<image>, class names as in the training data (a subset is fine)"


def load_labelled_folder(spec: str, classes: tuple[str, ...]) -> Split:
    """An extra labelled set a user keeps (`FOLDER` or `FOLDER?size=N`): FOLDER/<class>/<image>,
    labelled by class *name* against `classes`, so a folder holding only some classes (all the
    triggered images of one class, say) gets the training data's label numbers."""
    base, size = split_size(spec, "")
    folder = Path(base).expanduser()
    if not folder.is_dir():
        raise InputError(f"labelled set {folder} is not a folder: expected {EVAL_SET_LAYOUT}")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    unknown = [name for name in found if name not in classes]
    if not found or unknown:
        what = f"class folders {unknown[:3]} are not" if unknown else "no class folders are"
        raise InputError(
            f"{what} classes of the training data under {folder}; expected {EVAL_SET_LAYOUT}: "
            f"{', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}"
        )
    split, own_classes = _decode_folder(folder, size)
    to_training_label = torch.tensor([classes.index(name) for name in own_classes])
    return Split(split.images, to_training_label[split.labels], split.paths)

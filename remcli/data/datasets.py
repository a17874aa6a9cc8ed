"""Dataset specs -> whole splits in memory as uint8 tensors.

A dataset spec is `NAME:ROOT`, or just NAME for a dataset with a fixed root (`sample`); the
datasets made of image files (imagefolder, sample) take `?size=N` (resize every image to N x N)
and `?stream` (decode per batch). `parse_data_spec` turns the text into a `DataSpec` once, at the
edge; loaders get the parsed spec. A relative ROOT is made absolute when the spec is parsed, so
the spec recorded in checkpoints and manifests works from any directory. Each loader decodes its
split once into `(N, C, H, W)` uint8 images plus int64 labels; everything downstream
(augmentation, triggers, batching) is batched tensor work on these. A sample's identity is its
position in the training split as the loader orders it, so index files and corruption manifests
refer to positions.

A dataset is one loader registered in `DATASETS` (`register_dataset`): `torchvision_sets.py`
holds torchvision's (whose on-disk layouts torchvision documents), `image_folders.py` the folder
datasets. Importing `remcli.data` registers them all.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from remcli.data.streaming import ImageFiles
from remcli.errors import InputError
from remcli.registry import Registry

# CIFAR statistics: the corrective-unlearning benches reuse them for CIFAR-100 and SVHN too.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Split:
    """One split: `images` uint8 (N, C, H, W) in memory, or an ImageFiles streamed per batch; `labels` int64 (N,).

    `paths`: for imagefolder data, each sample's file path relative to the dataset root
    (`train/cat/0001.jpg`), in position order; None for array-backed datasets.
    """

    images: torch.Tensor | ImageFiles
    labels: torch.Tensor
    paths: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_from_hwc(data: np.ndarray, labels) -> Split:
    """A split from (N, H, W, C) uint8 pixels, the layout image decoders and CIFAR's arrays use."""
    images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64))


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: train and test splits (uint8 images and labels), class names, normalisation
    statistics, and the fingerprints of its labels and content that every later artefact records."""

    spec: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    content_sha256: str | None = None  # of the decoded training images; `load_dataset` fills it
    test_split: str = "test"  # the folder the test split came from (imagefolder: `test` or `val`)
    root: Path | None = None  # the spec's ROOT: what `Split.paths` are relative to

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        return labels_fingerprint(self.train.labels, self.input_shape)


def labels_fingerprint(labels: torch.Tensor, input_shape: tuple[int, ...]) -> str:
    """Identifies a training split by its labels (in order) and image shape.

    Index files and manifests carry it, so applying them to another dataset (or the same one in
    another order) is caught instead of silently corrupting the wrong samples.
    """
    digest = hashlib.sha256()
    digest.update(repr(tuple(input_shape)).encode())
    digest.update(labels.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def content_fingerprint(images: torch.Tensor) -> str:
    """Identifies a training split by its decoded pixels, in order (uint8 bytes and shape).

    The label fingerprint cannot see images that moved (renamed or re-sorted files with the same
    labels); this one can. One pass of sha256 over the uint8 tensor, done once at load.
    """
    digest = hashlib.sha256()
    digest.update(repr(tuple(images.shape)).encode())
    digest.update(images.detach().to("cpu").contiguous().numpy())  # the buffer itself: no copy of the split
    return "sha256:" + digest.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# The spec grammar, parsed once.


@dataclass(frozen=True)
class DataSpec:
    """A parsed dataset spec. `text` is the spec as recorded (relative ROOT made absolute;
    absolute roots, `~` roots and fixed-root names kept exactly as given, so specs already
    recorded in checkpoints and manifests still compare equal; symlinks are not resolved)."""

    name: str
    root: Path
    text: str
    size: int | None = None  # every image resized to size x size (image-file datasets)
    stream: bool = False  # decoded batch by batch instead of into memory (remcli.data.streaming)


@dataclass(frozen=True)
class LoadedSplits:
    """What a loader returns; `load_dataset` adds the spec and the fingerprints."""

    train: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_split: str = "test"


Loader = Callable[[DataSpec, bool], LoadedSplits]  # (spec, download) -> splits
DATASETS = Registry[Loader]("dataset")


def register_dataset(name: str, *, layout: str, image_files: bool = False, downloads: bool = False, root: Path | None = None):
    """Decorator registering a loader as NAME. `layout`: the files it expects under ROOT (quoted
    in errors and help); `image_files`: the data is image files, so the spec takes ?size=N and
    ?stream; `downloads`: --download can fetch it; `root`: a fixed root, written as just NAME."""
    return DATASETS.register(name, layout=layout, image_files=image_files, downloads=downloads, root=root)


def spec_form(name: str) -> str:
    """How a spec for NAME is written: `cifar10:ROOT`, or `sample` for a fixed root."""
    return name if DATASETS.meta(name)["root"] is not None else f"{name}:ROOT"


_SIZE_OPTION = re.compile(r"\?size=(\S*)$")


def split_size(spec: str, where: str, hint: str = "") -> tuple[str, int | None]:
    """`X?size=64` -> ('X', 64); `X` -> ('X', None). `where` and `hint` shape the error message."""
    match = _SIZE_OPTION.search(spec)
    if not match:
        return spec, None
    text = match.group(1)
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"?size={text} in {where}{spec!r} must be a positive integer N (every image is resized to N x N){hint}")
    return spec[: match.start()], int(text)


def parse_data_spec(text: str) -> DataSpec:
    """`cifar10:/data` -> DataSpec('cifar10', Path('/data'), ...); `imagefolder:ds?size=64&stream`
    -> the absolute root, size 64, streamed; `sample` -> the shipped sample."""
    base, sep, query = text.partition("?")
    name, colon, root = base.partition(":")
    known = name in DATASETS
    fixed = DATASETS.meta(name)["root"] if known else None
    well_formed = not colon if fixed is not None else bool(colon and root)
    if not known or not well_formed:
        raise InputError(f"unknown dataset spec {text!r}; use one of: {', '.join(spec_form(n) for n in DATASETS.names())}")
    options: dict = {}
    if sep:
        if not DATASETS.meta(name)["image_files"]:
            image_files = " and ".join(n for n in DATASETS.names() if DATASETS.meta(n)["image_files"])
            raise InputError(f"?{query} in data spec {text!r}: options are only for {image_files} data; remove it")
        for part in query.split("&"):
            if part == "stream":
                options["stream"] = True
            elif part.startswith("size="):
                options["size"] = split_size(f"{base}?{part}", "data spec ", ", e.g. imagefolder:ROOT?size=32")[1]
            else:
                raise InputError(f"unknown option {part!r} in data spec {text!r}; use ?size=N, ?stream or both (?size=N&stream)")
    if fixed is not None:
        return DataSpec(name, fixed, text, **options)
    if not root.startswith("~") and not os.path.isabs(root):
        root = os.path.abspath(root)
        text = f"{name}:{root}{sep}{query}"
    return DataSpec(name, Path(root).expanduser(), text, **options)


def data_spec_help() -> str:
    """The `--data` help: every registered spec form, the layouts users arrange themselves, the options."""
    names = DATASETS.names()
    image_files = [n for n in names if DATASETS.meta(n)["image_files"]]
    arranged = [f"{n} expects {DATASETS.meta(n)['layout']}" for n in image_files if DATASETS.meta(n)["root"] is None]
    return (
        f"Dataset spec: {', '.join(spec_form(n) for n in names)}. {'; '.join(arranged)}. "
        f"Append ?size=N to an image-file spec ({', '.join(image_files)}; imagefolder:ROOT?size=64) to resize every image to N x N, e.g. for images "
        "of mixed sizes, and ?stream (or ?size=N&stream) to decode batch by batch instead of into memory (automatic above "
        "REMCLI_STREAM_ABOVE_GIB, default 8). A relative ROOT is recorded as an absolute path."
    )


def load_dataset(spec: str, download: bool = False) -> Dataset:
    """Decode a spec's splits. `Dataset.spec` is the recorded spec (relative roots made absolute)."""
    data = parse_data_spec(spec)
    meta = DATASETS.meta(data.name)
    if download and not meta["downloads"]:
        raise InputError(f"--download is not available for {data.name} data; put the files in place: {meta['layout']}")
    if not data.root.exists() and not download:
        fix = "fix the path or pass --download" if meta["downloads"] else "fix the path"
        raise InputError(f"dataset root {data.root} does not exist: expected {meta['layout']}; {fix}")
    if download:
        data.root.mkdir(parents=True, exist_ok=True)
    loaded = DATASETS.get(data.name)(data, download)
    if len(loaded.train) == 0 or len(loaded.test) == 0:
        raise InputError(f"dataset {data.text} has an empty train or test split; add images to both")
    train = loaded.train
    return Dataset(
        spec=data.text,
        train=train,
        test=loaded.test,
        classes=loaded.classes,
        mean=tuple(loaded.mean),
        std=tuple(loaded.std),
        content_sha256=content_fingerprint(train.images) if isinstance(train.images, torch.Tensor) else None,  # not hashed when streamed
        test_split=loaded.test_split,
        root=data.root,
    )

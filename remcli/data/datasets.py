"""Dataset specs -> whole splits in memory as uint8 tensors.

A dataset spec is `NAME:ROOT` (or just `sample`); an imagefolder spec may end in `?size=N` to
resize every image to N x N pixels. A relative ROOT is made absolute when the data is loaded, so
the spec recorded in checkpoints and manifests works from any directory. Each loader decodes its split once into
`(N, C, H, W)` uint8 images plus int64 labels; everything downstream (augmentation, triggers,
batching) is batched tensor work on these. A sample's identity is its position in the training
split as the loader orders it, so index files and corruption manifests refer to positions.

Loaders use torchvision's own dataset classes (`download=False` unless asked), so the on-disk
layouts are the ones torchvision documents.
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

from remcli.data.streaming import (
    UNREADABLE,
    ImageFiles,
    decode_images,
    stream_threshold_bytes,
    unreadable_images_error,
    unreadable_reason,
)
from remcli.errors import InputError

# CIFAR statistics: the corrective-unlearning benches reuse them for CIFAR-100 and SVHN too.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data" / "cifar10"


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
# Loaders, one per dataset name. Each returns (train, test, classes, mean, std).

Loader = Callable[[Path, bool], tuple[Split, Split, tuple[str, ...], tuple, tuple]]
_LOADERS: dict[str, Loader] = {}
_EXPECTED_FILES: dict[str, str] = {}


def _register(name: str, expected: str):
    def wrap(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        _EXPECTED_FILES[name] = expected
        return fn

    return wrap


def dataset_names() -> list[str]:
    return ["sample", *sorted(_LOADERS)]


def _split_from_hwc(data: np.ndarray, labels) -> Split:
    images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def _split_from_nhw(data, labels) -> Split:
    images = torch.as_tensor(data, dtype=torch.uint8).unsqueeze(1).contiguous()
    return Split(images, torch.as_tensor(labels, dtype=torch.int64).clone())


def _torchvision(key: str, name: str, root: Path, download: bool, **kwargs):
    """Instantiate torchvision's dataset class `name`, turning its 'not found' into a one-line fix."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name)
    try:
        return cls(str(root), download=download, **kwargs)
    except RuntimeError as err:
        if "not found" in str(err).lower() or "download" in str(err).lower():
            raise InputError(f"{name} files not found under {root}: expected {_EXPECTED_FILES[key]}; point ROOT at them or pass --download") from None
        raise


@_register("cifar10", "ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
def _load_cifar10(root: Path, download: bool):
    train = _torchvision("cifar10", "CIFAR10", root, download, train=True)
    test = _torchvision("cifar10", "CIFAR10", root, download, train=False)
    return _split_from_hwc(train.data, train.targets), _split_from_hwc(test.data, test.targets), tuple(train.classes), CIFAR_MEAN, CIFAR_STD


@_register("cifar100", "ROOT/cifar-100-python/{train,test,meta}")
def _load_cifar100(root: Path, download: bool):
    train = _torchvision("cifar100", "CIFAR100", root, download, train=True)
    test = _torchvision("cifar100", "CIFAR100", root, download, train=False)
    return _split_from_hwc(train.data, train.targets), _split_from_hwc(test.data, test.targets), tuple(train.classes), CIFAR_MEAN, CIFAR_STD


@_register("svhn", "ROOT/{train_32x32.mat,test_32x32.mat}")
def _load_svhn(root: Path, download: bool):
    train = _torchvision("svhn", "SVHN", root, download, split="train")
    test = _torchvision("svhn", "SVHN", root, download, split="test")

    def split(ds) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.int64))

    return split(train), split(test), tuple(str(i) for i in range(10)), CIFAR_MEAN, CIFAR_STD


@_register("mnist", "ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte")
def _load_mnist(root: Path, download: bool):
    train = _torchvision("mnist", "MNIST", root, download, train=True)
    test = _torchvision("mnist", "MNIST", root, download, train=False)
    return _split_from_nhw(train.data, train.targets), _split_from_nhw(test.data, test.targets), tuple(train.classes), (0.1307,), (0.3081,)


@_register("fashion-mnist", "ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte")
def _load_fashion_mnist(root: Path, download: bool):
    train = _torchvision("fashion-mnist", "FashionMNIST", root, download, train=True)
    test = _torchvision("fashion-mnist", "FashionMNIST", root, download, train=False)
    return _split_from_nhw(train.data, train.targets), _split_from_nhw(test.data, test.targets), tuple(train.classes), (0.2860,), (0.3530,)


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
    split = _split_from_hwc(np.stack(arrays), listing.targets)
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


def imagefolder_test_split(root: Path) -> str:
    """`test`, or `val` when ROOT has no test folder (the common train/val layout)."""
    for part in ("test", "val"):
        if (root / part).is_dir():
            return part
    raise InputError(f"imagefolder root {root} has no 'test' (or 'val') folder: expected {_EXPECTED_FILES['imagefolder']}")


@_register("imagefolder", "ROOT/train/<class>/<image> and ROOT/test/<class>/<image> (or ROOT/val/<class>/<image>)")
def _load_imagefolder(root: Path, download: bool, size: int | None = None, stream: bool = False):
    if download:
        raise InputError("--download is not available for imagefolder datasets; copy the images under ROOT/train and ROOT/test")
    if not (root / "train").is_dir():
        raise InputError(f"imagefolder root {root} has no 'train' folder: expected {_EXPECTED_FILES['imagefolder']}")
    test_part = imagefolder_test_split(root)
    listings = [list_image_folder(root / part) for part in ("train", test_part)]
    stream = stream or _estimated_decoded_bytes(listings, size) > stream_threshold_bytes()
    train, classes = _decode_folder(root / "train", size, stream, listings[0])
    test, test_classes = _decode_folder(root / test_part, size, stream, listings[1])
    if test_classes != classes:
        raise InputError(f"train and {test_part} class folders differ under {root}; make ROOT/train and ROOT/{test_part} hold the same class names")
    if root.resolve() == SAMPLE_DATA.resolve():
        return train, test, classes, CIFAR_MEAN, CIFAR_STD
    if stream:  # statistics from an evenly spaced sample of at most STATISTICS_SAMPLE images
        rows = torch.linspace(0, len(train) - 1, min(len(train), STATISTICS_SAMPLE)).round().long().unique()
        chunks = train.images[rows].batches(list(torch.arange(len(rows)).split(statistics_chunk(train.images))), torch.device("cpu"))
    else:
        chunks = iter(train.images.split(statistics_chunk(train.images)))
    mean, std = channel_statistics(chunks)
    return train, test, classes, mean, std


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


def split_spec_options(spec: str) -> tuple[str, dict]:
    """`imagefolder:ROOT?size=64&stream` -> ('imagefolder:ROOT', {'size': 64, 'stream': True}); other specs -> (spec, {}).

    Options: `size=N` resizes every image to N x N; `stream` decodes the files batch by batch
    instead of into memory (remcli.data.streaming).
    """
    base, sep, query = spec.partition("?")
    if not sep:
        return spec, {}
    if not base.startswith("imagefolder:") and base != "sample":
        raise InputError(f"?{query} in data spec {spec!r}: options are only for imagefolder data (and sample); remove it")
    options: dict = {}
    for part in query.split("&"):
        if part == "stream":
            options["stream"] = True
        elif part.startswith("size="):
            options["size"] = split_size(f"{base}?{part}", "data spec ", ", e.g. imagefolder:ROOT?size=32")[1]
        else:
            raise InputError(f"unknown option {part!r} in data spec {spec!r}; use ?size=N, ?stream or both (?size=N&stream)")
    return base, options


def parse_spec(spec: str) -> tuple[str, Path]:
    """`cifar10:/data` -> ('cifar10', Path('/data')); `sample` -> the shipped sample. A `?size=N` suffix is ignored here."""
    spec, _ = split_spec_options(spec)
    if spec == "sample":
        if not SAMPLE_DATA.is_dir():
            raise InputError(f"the shipped sample data is missing at {SAMPLE_DATA}; run from a remcli checkout or use imagefolder:ROOT")
        return "imagefolder", SAMPLE_DATA
    name, sep, root = spec.partition(":")
    if name not in _LOADERS or not sep or not root:
        raise InputError(
            f"unknown dataset spec {spec!r}; use one of: sample, "
            + ", ".join(f"{n}:ROOT" for n in sorted(_LOADERS))
            + " (imagefolder:ROOT?size=N resizes)"
        )
    return name, Path(root).expanduser()


def canonical_spec(spec: str) -> str:
    """The spec with a relative ROOT made absolute (`imagefolder:ds` -> `imagefolder:/home/me/ds`).

    Absolute roots, `~` roots and `sample` are kept exactly as given, so specs already recorded in
    checkpoints and manifests still compare equal; symlinks are not resolved.
    """
    base, options = split_spec_options(spec)
    if base == "sample":
        return spec
    name, sep, root = base.partition(":")
    if not sep or not root or root.startswith("~") or os.path.isabs(root):
        return spec
    suffix = spec[len(base) :]
    return f"{name}:{os.path.abspath(root)}{suffix}"


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


def load_dataset(spec: str, download: bool = False) -> Dataset:
    """Decode a spec's splits. `Dataset.spec` is the canonical spec (relative roots made absolute)."""
    spec = canonical_spec(spec)
    name, root = parse_spec(spec)
    options = split_spec_options(spec)[1]
    if not root.exists() and not download:
        raise InputError(f"dataset root {root} does not exist: expected {_EXPECTED_FILES[name]}; fix the path or pass --download")
    if download:
        root.mkdir(parents=True, exist_ok=True)
    if options:
        train, test, classes, mean, std = _LOADERS[name](root, download, **options)
    else:
        train, test, classes, mean, std = _LOADERS[name](root, download)
    if len(train) == 0 or len(test) == 0:
        raise InputError(f"dataset {spec} has an empty train or test split; add images to both")
    test_split = imagefolder_test_split(root) if name == "imagefolder" else "test"
    return Dataset(
        spec=spec,
        train=train,
        test=test,
        classes=classes,
        mean=tuple(mean),
        std=tuple(std),
        content_sha256=content_fingerprint(train.images) if isinstance(train.images, torch.Tensor) else None,  # not hashed when streamed
        test_split=test_split,
    )

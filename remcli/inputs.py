"""Resolve what a checkpoint-consuming step needs: its dataset and corruption manifest.

By default both come from the checkpoint's metadata (the dataset spec and the manifest path and
sha256 recorded at training time); `--data` / `--corruption` override them. Every pairing is
checked against the dataset fingerprint (labels and shape) and, in files that record them, the
class names and a content hash of the training images, so a checkpoint, manifest or index file
made for other data (or the same images in another order) is refused instead of silently
mis-applied. A checkpoint's recorded normalisation (`mean`/`std`, e.g. from `remcli import
--mean/--std`) is used instead of the statistics of the data it is run on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from remcli.checkpoints import Checkpoint
from remcli.data.datasets import Dataset, load_dataset
from remcli.data.identity import check_made_for
from remcli.data.index_files import read_index_file, recorded_dataset
from remcli.data.manifest import Manifest, check_manifest_matches, load_manifest
from remcli.errors import InputError
from remcli.fileio import sha256_file


@dataclass
class RunInputs:
    """What a step after `train` runs on, checked against its checkpoint: the dataset as the checkpoint
    sees it, and the corruption manifest it was trained on (with its path and sha256), if any."""

    dataset: Dataset
    manifest: Manifest | None
    manifest_sha256: str | None
    manifest_path: Path | None


def load_corruption(path: str | Path | None, dataset: Dataset) -> tuple[Manifest | None, str | None]:
    if path is None:
        return None, None
    manifest = load_manifest(path)
    check_manifest_matches(manifest, dataset.fingerprint, dataset.spec, f"corruption manifest {path}", content_sha256=dataset.content_sha256)
    return manifest, sha256_file(path)


def first_difference(recorded: list[str], actual: list[str]) -> str:
    for position, (a, b) in enumerate(zip(recorded, actual)):
        if a != b:
            return f"label {position} is {a!r} in the checkpoint but {b!r} in the data"
    return f"the checkpoint lists {len(recorded)} classes, the data {len(actual)}"


def _was_imported(checkpoint: Checkpoint) -> bool:
    return any(step.get("command") == "import" for step in checkpoint.history)


def check_checkpoint_matches(checkpoint: Checkpoint, dataset: Dataset, spec: str) -> None:
    """Shape, classes, label fingerprint and (when recorded) image content; one-line InputError naming the fix."""
    shape = checkpoint.meta.get("input_shape")
    if shape and list(shape) != list(dataset.input_shape):
        height, width = (list(shape) + [0, 0, 0])[1:3]
        resize = f"imagefolder:ROOT?size={width}" if height == width else "images resized to that size"
        if _was_imported(checkpoint):
            fix = f"re-run `remcli import` with the --input-shape the weights expect, or load the data as {resize}"
        else:
            fix = f"load the data as {resize} (the size it was trained at) or pass the --data it was trained on"
        raise InputError(f"checkpoint {checkpoint.path} expects inputs {list(shape)}, but {spec} has {list(dataset.input_shape)}; {fix}")
    if checkpoint.num_classes is not None and checkpoint.num_classes != dataset.num_classes:
        raise InputError(
            f"checkpoint {checkpoint.path} has {checkpoint.num_classes} classes, but {spec} has {dataset.num_classes}; pass the matching --data"
        )
    classes = checkpoint.meta.get("classes")
    if isinstance(classes, list) and classes and [str(c) for c in classes] != list(dataset.classes):
        if _was_imported(checkpoint):
            how, fix = "was imported with", "or re-run `remcli import` with the --classes the weights were trained on"
        else:
            how, fix = "was trained with", "or pass the --data it was trained on"
        raise InputError(
            f"checkpoint {checkpoint.path} {how} other class names than {spec} has: "
            f"{first_difference([str(c) for c in classes], list(dataset.classes))}; rename the class folders to match {fix}"
        )
    check_made_for(
        f"checkpoint {checkpoint.path}",
        "was trained on",
        (checkpoint.meta.get("dataset_fingerprint"), checkpoint.meta.get("dataset_content_sha256")),
        (dataset.fingerprint, dataset.content_sha256),
        spec,
        "restore the image files as they were at training time or pass the --data it was trained on",
    )


def _normalisation(checkpoint: Checkpoint, dataset: Dataset) -> Dataset:
    """The checkpoint's recorded mean/std (training statistics or `import --mean/--std`) win over the data's own."""
    mean, std = checkpoint.meta.get("mean"), checkpoint.meta.get("std")
    channels = dataset.input_shape[0]
    if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == channels:
        values = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if values != (dataset.mean, dataset.std):
            return replace(dataset, mean=values[0], std=values[1])
    return dataset


def fit_dataset_to(checkpoint: Checkpoint, dataset: Dataset, spec: str) -> Dataset:
    """The dataset as `checkpoint` sees it: checked against what the checkpoint records (one-line
    InputError otherwise), normalised with the checkpoint's recorded mean/std."""
    check_checkpoint_matches(checkpoint, dataset, spec)
    return _normalisation(checkpoint, dataset)


def resolve_inputs(
    checkpoint: Checkpoint, data: str | None, corruption: str | Path | None, download: bool = False, forget: str | Path | None = None
) -> RunInputs:
    """The data is `data`, else the checkpoint's recorded dataset, else (an imported checkpoint
    records none) the `# dataset:` line of the `forget` index file, as `detect` and `corrupt` write it."""
    spec = data or checkpoint.meta.get("dataset") or (recorded_dataset(forget) if forget else None)
    if not spec:
        raise InputError(f"checkpoint {checkpoint.path} records no dataset; pass --data")
    dataset = fit_dataset_to(checkpoint, load_dataset(spec, download=download), spec)
    for key, value in (
        ("dataset", dataset.spec),
        ("dataset_fingerprint", dataset.fingerprint),
        ("input_shape", list(dataset.input_shape)),
        ("mean", list(dataset.mean)),
        ("std", list(dataset.std)),
        ("classes", list(dataset.classes)),
    ):
        checkpoint.meta.setdefault(key, value)  # checkpoints without remcli metadata gain it here
    if dataset.content_sha256 and checkpoint.meta.get("dataset_fingerprint") == dataset.fingerprint:
        checkpoint.meta.setdefault("dataset_content_sha256", dataset.content_sha256)
    path = Path(corruption) if corruption else None
    if path is None and checkpoint.meta.get("corruption_path"):
        recorded_path = Path(checkpoint.meta["corruption_path"])
        if recorded_path.is_file() and sha256_file(recorded_path) == checkpoint.meta.get("corruption_sha256"):
            path = recorded_path
        else:
            raise InputError(f"the corruption manifest this checkpoint was trained on ({recorded_path}) is missing or changed; pass --corruption")
    manifest, digest = load_corruption(path, dataset)
    return RunInputs(dataset, manifest, digest, path)


def forget_outside_corruption(identified: torch.Tensor, manifest: Manifest | None, forget: str | Path) -> str | None:
    """A warning when the manifest records the corruption and some listed samples are not in it:
    unlearning clean samples removes what the model learnt from good data, and nothing else says so."""
    if manifest is None:
        return None
    outside = int((~torch.isin(identified, manifest.index_tensor)).sum())
    if not outside:
        return None
    return (
        f"{outside} of {len(identified)} listed samples are not in the recorded corruption, so they are clean as far as it knows; "
        f"check the --forget file {forget}"
    )


def read_identified(path: str | Path, dataset: Dataset) -> torch.Tensor:
    """The positions an index file names (`-` = stdin); lines may be image paths for imagefolder data."""
    paths = dataset.train.paths
    root = dataset.root if paths else None
    return read_index_file(path, len(dataset.train), dataset.fingerprint, paths, root, content_sha256=dataset.content_sha256)

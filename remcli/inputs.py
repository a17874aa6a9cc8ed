"""Resolve what a checkpoint-consuming step needs: its dataset and corruption manifest.

By default both come from the checkpoint's metadata (the dataset spec and the manifest path and
sha256 recorded at training time); `--data` / `--corruption` override them. Every pairing is
checked against the dataset fingerprint, so a checkpoint, manifest or index file made for other
data is refused instead of silently mis-applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from remcli.checkpoints import Checkpoint
from remcli.data.corruption import Manifest, check_manifest_matches, load_manifest, read_index_file
from remcli.data.datasets import Dataset, load_dataset, parse_spec
from remcli.errors import InputError
from remcli.fileio import sha256_file


@dataclass
class RunInputs:
    dataset: Dataset
    manifest: Manifest | None
    manifest_sha256: str | None
    manifest_path: Path | None


def load_corruption(path: str | Path | None, dataset: Dataset) -> tuple[Manifest | None, str | None]:
    if path is None:
        return None, None
    manifest = load_manifest(path)
    check_manifest_matches(manifest, dataset.fingerprint, dataset.spec, f"corruption manifest {path}")
    return manifest, sha256_file(path)


def resolve_inputs(checkpoint: Checkpoint, data: str | None, corruption: str | Path | None, download: bool = False) -> RunInputs:
    spec = data or checkpoint.meta.get("dataset")
    if not spec:
        raise InputError(f"checkpoint {checkpoint.path} records no dataset; pass --data")
    dataset = load_dataset(spec, download=download)
    recorded = checkpoint.meta.get("dataset_fingerprint")
    if recorded and recorded != dataset.fingerprint:
        raise InputError(f"checkpoint {checkpoint.path} was trained on data {recorded}, but {spec} is {dataset.fingerprint}; pass the matching --data")
    shape = checkpoint.meta.get("input_shape")
    if shape and list(shape) != list(dataset.input_shape):
        raise InputError(f"checkpoint {checkpoint.path} expects inputs {shape}, but {spec} has {list(dataset.input_shape)}; pass the matching --data")
    if checkpoint.num_classes is not None and checkpoint.num_classes != dataset.num_classes:
        raise InputError(f"checkpoint {checkpoint.path} has {checkpoint.num_classes} classes, but {spec} has {dataset.num_classes}; pass the matching --data")
    for key, value in (("dataset", dataset.spec), ("dataset_fingerprint", dataset.fingerprint), ("input_shape", list(dataset.input_shape)),
                       ("mean", list(dataset.mean)), ("std", list(dataset.std))):
        checkpoint.meta.setdefault(key, value)  # checkpoints without remcli metadata gain it here
    path = Path(corruption) if corruption else None
    if path is None and checkpoint.meta.get("corruption_path"):
        recorded_path = Path(checkpoint.meta["corruption_path"])
        if recorded_path.is_file() and sha256_file(recorded_path) == checkpoint.meta.get("corruption_sha256"):
            path = recorded_path
        else:
            raise InputError(f"the corruption manifest this checkpoint was trained on ({recorded_path}) is missing or changed; pass --corruption")
    manifest, digest = load_corruption(path, dataset)
    return RunInputs(dataset, manifest, digest, path)


def read_identified(path: str | Path, dataset: Dataset) -> torch.Tensor:
    """The positions an index file names (`-` = stdin); lines may be image paths for imagefolder data."""
    paths = dataset.train.paths
    root = parse_spec(dataset.spec)[1] if paths else None
    return read_index_file(path, len(dataset.train), dataset.fingerprint, paths, root)

"""Data and corruption: dataset specs, in-memory splits, corruptions, index files, batching."""

from remcli.data.corruption import (
    corrupt,
    identified_at,
    kind_names,
    kind_regularity,
    kinds_by_regularity,
    write_corruption,
)
from remcli.data.datasets import Dataset, Split, dataset_names, load_dataset
from remcli.data.index_files import read_index_file, write_index_file
from remcli.data.manifest import Manifest, load_manifest
from remcli.data.pipeline import Batch, InputSpec, SampleView
from remcli.data.triggers import Trigger

__all__ = [
    "Batch",
    "Dataset",
    "InputSpec",
    "Manifest",
    "SampleView",
    "Split",
    "Trigger",
    "corrupt",
    "dataset_names",
    "identified_at",
    "kind_names",
    "kind_regularity",
    "kinds_by_regularity",
    "load_dataset",
    "load_manifest",
    "read_index_file",
    "write_corruption",
    "write_index_file",
]

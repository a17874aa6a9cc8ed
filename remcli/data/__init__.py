"""Data and corruption: dataset specs, in-memory splits, corruptions, index files, batching."""

from remcli.data.corruption import (
    Manifest,
    Trigger,
    corrupt,
    identified_at,
    kind_names,
    load_manifest,
    read_index_file,
    write_corruption,
)
from remcli.data.datasets import Dataset, Split, dataset_names, load_dataset
from remcli.data.pipeline import Batch, InputSpec, SampleView

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
    "load_dataset",
    "load_manifest",
    "read_index_file",
    "write_corruption",
]

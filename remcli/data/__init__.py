"""Data and corruption: dataset specs, in-memory splits, corruptions, index files, batching.

Importing the package registers every dataset (`image_folders`, `torchvision_sets`)."""

from remcli.data import image_folders, torchvision_sets  # noqa: F401  (registers the datasets)
from remcli.data.corruption import (
    corrupt,
    identified_at,
    kind_names,
    kind_regularity,
    kinds_by_regularity,
    write_corruption,
)
from remcli.data.datasets import DATASETS, Dataset, DataSpec, Split, load_dataset, parse_data_spec
from remcli.data.index_files import read_index_file, write_index_file
from remcli.data.manifest import Manifest, load_manifest
from remcli.data.pipeline import Batch, InputSpec, SampleView
from remcli.data.triggers import Trigger

__all__ = [
    "DATASETS",
    "Batch",
    "DataSpec",
    "Dataset",
    "InputSpec",
    "Manifest",
    "SampleView",
    "Split",
    "Trigger",
    "corrupt",
    "identified_at",
    "kind_names",
    "kind_regularity",
    "kinds_by_regularity",
    "load_dataset",
    "load_manifest",
    "parse_data_spec",
    "read_index_file",
    "write_corruption",
    "write_index_file",
]

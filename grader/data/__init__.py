"""Datasets for training checks: found on the machine, parsed once, cached as `.npy`.

Public API::

    load_dataset(name, *, data_dir=None, allow_download=False, cache_dir=None) -> Dataset
    first_available(names, *, data_dir=None, ...) -> Dataset
    status(data_dir=None) -> list[DatasetStatus];  status_rows / status_table for display
    binary_pair(dataset, classes=(a, b)) -> BinaryPair   (labels -1 / +1)

Names: "mnist", "fashion-mnist", "mnist-5k". Discovery order and caching are
described in `grader.data.discovery` and `grader.data.cache`.
"""

from grader.data.cache import cache_root, datasets_cache_dir
from grader.data.catalog import DATASET_NAMES, DIGIT_CLASSES, FASHION_CLASSES
from grader.data.discovery import Discovery, Source, discover
from grader.data.errors import (
    DatasetContentError,
    DatasetError,
    DatasetNotFoundError,
    IdxFormatError,
    UnknownDatasetError,
)
from grader.data.idx import read_header, read_idx, write_idx

# Names whose modules import torch are loaded on first use (PEP 562; no module is named like one of its
# names, or importing the module would shadow the name), so that finding datasets and their
# label files (`grader.training.label_files`, used before a sandbox child starts) costs no torch import.
_LAZY = {
    "clear_memory_cache": "loading", "first_available": "loading", "load_dataset": "loading",
    "BinaryPair": "records", "Dataset": "records", "DatasetStatus": "records",
    "STATUS_COLUMNS": "availability", "dataset_status": "availability", "status": "availability",
    "status_rows": "availability", "status_table": "availability", "binary_pair": "subsets",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'grader.data' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"grader.data.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DATASET_NAMES",
    "DIGIT_CLASSES",
    "FASHION_CLASSES",
    "STATUS_COLUMNS",
    "BinaryPair",
    "Dataset",
    "DatasetContentError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetStatus",
    "Discovery",
    "IdxFormatError",
    "Source",
    "UnknownDatasetError",
    "binary_pair",
    "cache_root",
    "clear_memory_cache",
    "dataset_status",
    "datasets_cache_dir",
    "discover",
    "first_available",
    "load_dataset",
    "read_header",
    "read_idx",
    "status",
    "status_rows",
    "status_table",
    "write_idx",
]

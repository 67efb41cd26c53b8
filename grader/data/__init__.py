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
from grader.data.loading import clear_memory_cache, first_available, load_dataset
from grader.data.records import BinaryPair, Dataset, DatasetStatus
from grader.data.status import STATUS_COLUMNS, dataset_status, status, status_rows, status_table
from grader.data.subsets import binary_pair

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

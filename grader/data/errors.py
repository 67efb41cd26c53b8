"""Errors raised while finding or reading a dataset.

These are the operator's (or the machine's) problem, never the student's: a
missing or corrupt dataset means the grader cannot run a training check. Each
error carries the data needed to act on it (the path, the expected versus the
actual size) and its message says what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DatasetError(Exception):
    """Root of every error raised by `grader.data`."""


@dataclass
class UnknownDatasetError(DatasetError):
    """A dataset name that the grader does not know."""

    name: str
    known: tuple[str, ...]

    def __str__(self) -> str:
        return f"unknown dataset {self.name!r}; known datasets: {', '.join(self.known)}"


@dataclass
class DatasetNotFoundError(DatasetError):
    """No source of the dataset could be found (and downloading was not allowed)."""

    name: str
    searched: tuple[str, ...]
    hint: str = ""

    def __str__(self) -> str:
        where = "; ".join(self.searched) if self.searched else "nowhere"
        text = f"dataset {self.name!r} was not found (searched: {where})"
        return f"{text}. {self.hint}" if self.hint else text


@dataclass
class IdxFormatError(DatasetError):
    """An IDX file (the MNIST file format) is truncated, corrupt or not IDX at all."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.reason}. Replace the file with a fresh copy "
            "(or remove it so that another source is used)."
        )


@dataclass
class DatasetContentError(DatasetError):
    """Files that parse as IDX but do not make a dataset (wrong shapes, bad labels)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"dataset files in {self.source} are inconsistent: {self.reason}"

"""Typed records handed out by `grader.data`: a loaded dataset, its status, a binary subset."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded image-classification dataset, resident in memory.

    The tensors are shared by every caller of `load_dataset` in a process
    (in-process cache): treat them as read-only.
    """

    name: str
    source: str  # where it came from, for humans: "/usr/share/datasets/fashion-mnist (system copy)"
    train_images: Tensor  # (N, 28, 28) uint8
    train_labels: Tensor  # (N,) int64
    test_images: Tensor  # (M, 28, 28) uint8
    test_labels: Tensor  # (M,) int64
    classes: tuple[str, ...]

    @property
    def train_size(self) -> int:
        return int(self.train_images.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_images.shape[0])

    def pixel_mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of the training pixels scaled to [0, 1].

        The pair to pass as `normalize=` to the training harness.
        """
        # From the histogram of the 256 pixel values: exact, and without the
        # 376 MB float64 copy of 60,000 images that x.double().std() would make.
        counts = torch.bincount(self.train_images.reshape(-1), minlength=256).to(torch.float64)  # (256,)
        values = torch.arange(256, dtype=torch.float64) / 255.0  # (256,)
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / (total - 1)  # unbiased, like Tensor.std
        return float(mean), float(variance.sqrt())

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.train_size}, test={self.test_size}, "
            f"classes={len(self.classes)}, source={self.source!r})"
        )


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset can be loaded on this machine, and from where."""

    name: str
    available: bool
    source: str | None  # None when unavailable
    train_size: int | None
    test_size: int | None
    detail: str = ""  # why it is unavailable, or a note (e.g. "download allowed")


@dataclass(frozen=True, eq=False)
class BinaryPair:
    """Two classes of a dataset, labels mapped to -1 (first class) and +1 (second)."""

    dataset: str
    classes: tuple[str, str]  # (class mapped to -1, class mapped to +1)
    train_images: Tensor  # (n, 28, 28) uint8
    train_labels: Tensor  # (n,) int64 in {-1, +1}
    test_images: Tensor  # (m, 28, 28) uint8
    test_labels: Tensor  # (m,) int64 in {-1, +1}

    def __repr__(self) -> str:
        return (
            f"BinaryPair({self.dataset!r}, {self.classes[0]!r}=-1 vs {self.classes[1]!r}=+1, "
            f"train={self.train_images.shape[0]}, test={self.test_images.shape[0]})"
        )

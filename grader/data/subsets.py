"""Subsets of a dataset for smaller checks: two classes with labels -1/+1."""

from __future__ import annotations

import torch
from torch import Tensor

from grader.data.records import BinaryPair, Dataset


def _class_index(dataset: Dataset, cls: int | str) -> int:
    if isinstance(cls, str):
        if cls not in dataset.classes:
            raise ValueError(f"{cls!r} is not a class of {dataset.name}; classes: {', '.join(dataset.classes)}")
        return dataset.classes.index(cls)
    if not 0 <= cls < len(dataset.classes):
        raise ValueError(f"class index {cls} out of range for {dataset.name} ({len(dataset.classes)} classes)")
    return int(cls)


def _select(images: Tensor, labels: Tensor, negative: int, positive: int) -> tuple[Tensor, Tensor]:
    keep = (labels == negative) | (labels == positive)  # (N,) bool
    signs = torch.where(labels[keep] == positive, 1, -1).to(torch.int64)  # (n,) in {-1, +1}
    return images[keep], signs


def binary_pair(dataset: Dataset, classes: tuple[int | str, int | str]) -> BinaryPair:
    """The images of two classes, first class labelled -1, second +1 (order of the dataset kept).

    Classes are given by index or by name: `binary_pair(fashion, ("Sandal", "Sneaker"))`.
    """
    negative, positive = (_class_index(dataset, c) for c in classes)
    if negative == positive:
        raise ValueError(f"binary_pair needs two different classes, got {classes[0]!r} twice")
    train_x, train_y = _select(dataset.train_images, dataset.train_labels, negative, positive)
    test_x, test_y = _select(dataset.test_images, dataset.test_labels, negative, positive)
    return BinaryPair(
        dataset=dataset.name,
        classes=(dataset.classes[negative], dataset.classes[positive]),
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
    )

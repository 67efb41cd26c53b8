"""On-disk cache of parsed datasets as plain `.npy` files (no pickle).

Decompressing and parsing Fashion-MNIST's gzip files takes about a second;
`np.load` of the cached uint8 arrays takes a few tens of milliseconds, so a
second process (every sandbox child, every `grader check`) starts fast.

Layout: `<datasets dir>/<name>-<fingerprint[:16]>/{train_images,train_labels,
test_images,test_labels}.npy` plus `meta.json`. The fingerprint covers the
source files' resolved paths, sizes and mtimes, so a changed source simply
gets a new entry. Writes go to a temporary folder renamed into place, so a
reader never sees half an entry and concurrent writers do not clash. A cache
that cannot be read or written is skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def cache_root() -> Path:
    """The grader's cache root: `$GRADER_CACHE_DIR`, else `$XDG_CACHE_HOME/grader`, else `~/.cache/grader`."""
    env = os.environ.get("GRADER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "grader"


def datasets_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """Where dataset entries live: `cache_dir` if given, else `<cache root>/datasets`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "datasets"


@dataclass(frozen=True)
class CachedArrays:
    """The four arrays of a dataset as stored (all uint8) and the source they came from."""

    source: str
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray  # (M, 28, 28) uint8
    test_labels: np.ndarray  # (M,) uint8


def entry_dir(directory: Path, name: str, fingerprint: str) -> Path:
    return directory / f"{name}-{fingerprint[:16]}"


def read_entry(directory: Path, name: str, fingerprint: str) -> CachedArrays | None:
    """The cached arrays, or None if absent, unreadable or inconsistent."""
    entry = entry_dir(directory, name, fingerprint)
    try:
        if not (entry / "meta.json").is_file():  # may raise PermissionError in a sandbox
            return None
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("fingerprint") != fingerprint:
            return None
        arrays = {key: np.load(entry / f"{key}.npy", allow_pickle=False) for key in ARRAYS}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable dataset cache entry %s: %s", entry, exc)
        return None
    images_ok = all(
        arrays[k].dtype == np.uint8 and arrays[k].ndim == 3 for k in ("train_images", "test_images")
    )
    labels_ok = all(arrays[k].dtype == np.uint8 and arrays[k].ndim == 1 for k in ("train_labels", "test_labels"))
    sizes_ok = (
        len(arrays["train_images"]) == len(arrays["train_labels"])
        and len(arrays["test_images"]) == len(arrays["test_labels"])
    )
    if not (images_ok and labels_ok and sizes_ok):
        log.warning("ignoring inconsistent dataset cache entry %s", entry)
        return None
    return CachedArrays(source=str(meta.get("source", entry)), **arrays)


def write_entry(directory: Path, name: str, fingerprint: str, arrays: CachedArrays) -> Path | None:
    """Store the arrays; returns the entry folder, or None if the cache is not writable."""
    entry = entry_dir(directory, name, fingerprint)
    tmp: Path | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory))
        # mkdtemp makes the folder 0700; a sandbox child running as another
        # (unprivileged) user must still be able to read the entry.
        os.chmod(tmp, 0o755)
        for key in ARRAYS:
            array = getattr(arrays, key)
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(array, dtype=np.uint8), allow_pickle=False)
        meta = {"format": 1, "name": name, "fingerprint": fingerprint, "source": arrays.source}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, entry)  # atomic; fails if another process won the race
        tmp = None
        return entry
    except OSError as exc:
        if entry.is_dir():
            return entry  # a concurrent writer got there first: its entry is as good as ours
        log.info("dataset cache %s not writable, continuing without it: %s", directory, exc)
        return None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

"""The reference model's accuracy under a check's exact budget, computed once and cached on disk.

A threshold ``relative_to_reference: delta`` means "within delta of what the
reference solution reaches when the grader trains it the same way": same
harness, data subset, settings and seed. The reference is trusted code, so
it runs here in the parent. It costs as much as the student's run, so the
result is cached, keyed by everything it depends on: the job description
(dataset, sizes, budget, seed...), the reference module's source, the
source of the grader's own training code (this package: a harness change
must never reuse accuracies the old harness reached), the torch version and
the device type. A change to any of them is a new entry.

Layout: ``<cache root>/reference-runs/<key>.json`` (see `grader.data.cache_root`),
written atomically; concurrent graders computing the same key wait on a
lock file instead of training twice. A cache that cannot be written is
skipped, never fatal.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from grader.data import cache_root

log = logging.getLogger(__name__)

CACHE_FORMAT = 2


@dataclass(frozen=True)
class ReferenceRun:
    """The reference's result for one job: its accuracy and how training went."""

    accuracy: float
    epochs_done: float
    seconds: float
    final_loss: float | None
    cached: bool = False


def reference_cache_dir() -> Path:
    """The one place reference runs are cached (the training and training_loop checks, and setup.sh's warm-up)."""
    return cache_root() / "reference-runs"


@functools.lru_cache(maxsize=1)
def training_code_sha256() -> str:
    """A hash of every module of grader.training, in name order: part of every cache key."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(job: dict[str, Any], *, reference_source: str, device: str) -> str:
    """Hex key of a job: the job's plain description plus what else changes the result."""
    identity = {
        "format": CACHE_FORMAT,
        "job": job,
        "reference_sha256": hashlib.sha256(reference_source.encode()).hexdigest(),
        "training_code_sha256": training_code_sha256(),
        "torch": torch.__version__,
        "device_type": torch.device(device).type,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path) -> ReferenceRun | None:
    try:
        data = json.loads(path.read_text())
        return ReferenceRun(accuracy=float(data["accuracy"]), epochs_done=float(data["epochs_done"]),
                            seconds=float(data["seconds"]),
                            final_loss=None if data.get("final_loss") is None else float(data["final_loss"]),
                            cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, run: ReferenceRun, job: dict[str, Any]) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ref-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({**asdict(run), "cached": None, "job": job}, f, indent=1, default=str)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        log.info("reference-run cache %s not writable, continuing without it: %s", path.parent, exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the entry; without a writable cache, no lock (and no sharing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "w")
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def reference_run(job: dict[str, Any], compute: Callable[[], ReferenceRun], *, reference_source: str,
                  device: str, cache_dir: Path | None = None) -> ReferenceRun:
    """The cached result for `job`, or `compute()` it (once, even across processes) and cache it."""
    directory = cache_dir if cache_dir is not None else reference_cache_dir()
    path = directory / f"{cache_key(job, reference_source=reference_source, device=device)}.json"
    cached = _read(path)
    if cached is not None:
        return cached
    with _locked(path):
        cached = _read(path)  # another process may have finished it while we waited
        if cached is not None:
            return cached
        run = compute()
        _write(path, run, job)
    return run

"""Grade a batch on a Dask cluster (`grader grade --scheduler ADDRESS` or `--local-cluster N`).

One task per submission. The machine that sends the batch takes each submission in
(`grader.batch.taken_in`: the intake limits of the rubric bound its size, links and special files are
refused there) and the task carries the accepted files' bytes and the refusals, as plain data. A worker,
which has the grader and the course installed, rebuilds the files in a temporary folder, grades them
exactly as the local pool does (its own sandbox child, its own judge) and returns the grading record as
JSON text: the same record the local pool writes, never a pickled object from student code.

Before grading, a worker compares its own course digest (rubric, reference module, grader version and
code) with the sender's: a worker with another version of the course would grade against another
reference, so it refuses, and the submission gets a did-not-finish record that says so.

A worker that dies while grading (killed by the OOM killer, a crash in C code) is restarted by its nanny
and the scheduler sends the task elsewhere; once a task has killed ``distributed.scheduler.allowed-failures``
+ 1 workers the scheduler gives up on it (`KilledWorker`), and that submission alone gets a did-not-finish
record (every check undecided, for review). `--local-cluster` sets that to the local pool's one retry, and
gives each worker one thread and one task at a time (``worker-saturation`` 1.0), so that a dying worker
takes no other submission's attempt with it; workers of an existing cluster should be started with
``--nthreads 1`` for the same reason.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from grader.batch import ATTEMPTS, Options, course_digest, forget, submission_key, taken_in, unfinished_run
from grader.errors import UsageError
from grader.results import GradingRun

# Tasks in flight per worker thread: enough to keep every worker busy, few enough that the files of a
# large class are not all held in memory at once.
IN_FLIGHT_PER_THREAD = 2
CONNECT_TIMEOUT_S = 30


def grade_task(task: dict[str, Any]) -> str:
    """Runs on a Dask worker: rebuild the submission's files, grade them, return the record as JSON text."""
    from grader.engine import grade_submission
    from grader.rubric.load import find_rubric, load_rubric

    rubric_path = Path(task["rubric_path"])
    if not rubric_path.is_file():  # another machine: its own copy of the course
        rubric_path = find_rubric(task["assignment"])
    rubric = load_rubric(rubric_path)
    if course_digest(rubric_path) != task["course"]:
        why = (f"the Dask worker that took it has another version of the rubric, the reference or the grader "
               f"than the machine that sent the batch (its rubric: {rubric_path}); install the same course and "
               f"grader on every worker")
        return json.dumps(unfinished_run(rubric, Path(task["submission"]), why).to_dict())
    workspace = Path(tempfile.mkdtemp(prefix="grader-task-"))
    started = time.perf_counter()
    try:
        folder = workspace / "submission"
        folder.mkdir()
        for rel, data in task["files"].items():
            target = folder / _safe_relative(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        options = Options(**task["options"])
        run = grade_submission(folder, rubric, seed=options.seed, device=options.device,
                               skip_training=options.skip_training, isolation=options.isolation,
                               data_dir=options.data_dir, protect=[],
                               refused_before=task["refused"], threads=task.get("threads") or None)
    except Exception as exc:  # the grader's own failure: this submission only, and it says so
        run = unfinished_run(rubric, Path(task["submission"]), f"the grader failed with an internal error on a Dask "
                             f"worker ({type(exc).__name__}: {exc})", time.perf_counter() - started)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    run.submission = task["submission"]  # where the instructor has it, as the local pool records it
    return json.dumps(run.to_dict())


def _safe_relative(rel: str) -> Path:
    """A relative path from a task, refused if it could leave the folder (intake only produces plain ones)."""
    path = PurePosixPath(rel)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        raise ValueError(f"a task named the file {rel!r}, which is not a plain relative path")
    return Path(*path.parts)


def _task(folder: Path, rubric_path: Path, assignment: str, course: str, options: Options, limits: Any,
          threads: int | None) -> tuple[dict[str, Any], str]:
    """The task for one submission and the key of what it carries (taken in now: what is sent is what is keyed)."""
    with taken_in(folder, limits) as intake:
        key = submission_key(intake, course, options)
        files = {rel: (intake.folder / rel).read_bytes() for rel in intake.accepted}
        refused = dict(intake.refused)
    return ({"submission": str(folder), "assignment": assignment, "rubric_path": str(rubric_path.resolve()),
             "course": course, "options": {"seed": options.seed, "device": options.device,
                                           "skip_training": options.skip_training, "isolation": options.isolation,
                                           "data_dir": options.data_dir},
             "files": files, "refused": refused, "threads": threads}, key)


@contextlib.contextmanager
def connect(scheduler: str | None, local_cluster: int | None) -> Iterator[tuple[Any, int | None]]:
    """A Dask client, and the threads each grading may use (None: the worker's own default).

    With `scheduler`, the existing cluster at that address; otherwise a LocalCluster of `local_cluster`
    worker processes, closed on exit. Connecting comes before anything is written, so an unreachable
    scheduler costs nothing."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot reach a Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); start "
                             "one (`dask scheduler`) and its workers (`dask worker ADDRESS --nthreads 1`), or use "
                             "--local-cluster N") from None
        try:
            yield client, None
        finally:
            client.close()
        return
    workers = max(1, int(local_cluster or 1))
    # The scheduler of a LocalCluster runs in this process and reads these when it is created.
    with dask.config.set({"distributed.scheduler.allowed-failures": ATTEMPTS - 1,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            yield client, max(1, (os.cpu_count() or 1) // workers)
        finally:
            client.close()
    finally:
        cluster.close()


def grade_on_cluster(client: Any, folders: list[Path], rubric_path: Path, out: Path, options: Options, *,
                     threads: int | None, done: Callable[[str, GradingRun, str | None], None]) -> None:
    """Grade `folders` on the cluster of `client`, calling `done(name, run, key)` here as each finishes."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    from grader.loading.files import intake_limits
    from grader.rubric.load import load_rubric

    rubric = load_rubric(rubric_path)
    course = course_digest(rubric_path)
    limits = intake_limits(rubric.limits)
    slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
    window = max(2, IN_FLIGHT_PER_THREAD * slots)
    pending = list(reversed(folders))
    futures: dict[Any, tuple[Path, str, float]] = {}
    queue = as_completed()

    def submit_next() -> None:
        folder = pending.pop()
        forget(out, folder.name)
        task, key = _task(folder, rubric_path, rubric.assignment, course, options, limits, threads)
        # pure=False: two identical submissions are still two gradings (and two records).
        future = client.submit(grade_task, task, key=f"grade-{folder.name}-{key[:16]}", pure=False)
        futures[future] = (folder, key, time.perf_counter())
        queue.add(future)

    while pending and len(futures) < window:
        submit_next()
    for future in queue:
        folder, key, started = futures.pop(future)
        try:
            run = GradingRun.from_dict(json.loads(future.result()))
        except KilledWorker:
            run = unfinished_run(rubric, folder, "its Dask worker died while grading it, on each of the attempts "
                                 "the scheduler allows (KilledWorker)", time.perf_counter() - started)
        except Exception as exc:  # anything else a task or the cluster raised: a grader fault, this submission only
            run = unfinished_run(rubric, folder, f"its Dask task failed ({type(exc).__name__}: {exc})",
                                 time.perf_counter() - started)
        future.release()
        done(folder.name, run, key)
        while pending and len(futures) < window:
            submit_next()


__all__ = ["connect", "grade_on_cluster", "grade_task"]

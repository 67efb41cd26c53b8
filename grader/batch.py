"""Grade a folder of submissions (one sub-folder each), a bounded number at a time.

Each submission is graded in a process of its own, forked from a
`multiprocessing` fork server that has already imported the grader and torch
(so a new process costs a fork, not another 3.5 s import). A process that
dies (killed by the kernel's OOM killer, by a signal, by a crash in C code)
takes only its own submission with it: the others keep running, and nothing
is shared that it could break (a shared `ProcessPoolExecutor` marks *every*
pending submission "BrokenProcessPool" when one worker dies).

A submission whose process dies is graded once more, on its own attempt; if
that dies too, it gets a valid results file that says grading did not finish,
with every check ``undecided`` (0 points for now, listed for review): not a
``grader_error``, which would keep the points, because a submission can kill
its own grading on purpose.

Results come back as JSON records (`GradingRun.to_dict`) written by the
worker beside its results.json (``record.json``), so nothing but plain data
crosses between processes. Every submission gets a "did not finish"
results.json before any grading starts, replaced atomically when it is done.
"""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grader.report import gradescope
from grader.results import GradingRun

ATTEMPTS = 2  # a submission whose grading process dies this many times gets the did-not-finish result
RECORD = "record.json"
RESULTS = "results.json"
# Imported once in the fork server: every grading process starts with them (and torch) loaded.
PRELOAD = ["grader.engine", "grader.rubric.load", "grader.report.gradescope"]


@dataclass(frozen=True)
class Job:
    """What one grading process needs: plain values only."""

    folder: str
    rubric_path: str
    seed: int
    device: str
    skip_training: bool
    isolation: str | None
    data_dir: str | None
    results_path: str
    record_path: str
    threads: int
    environ: dict[str, str]


def _grade_one(job: Job) -> None:
    """The grading process: grade one submission, write its results.json and its record. Never raises."""
    # The fork server was started with the environment of its time; take the caller's of now.
    os.environ.clear()
    os.environ.update(job.environ)
    results_path, record_path = Path(job.results_path), Path(job.record_path)
    gradescope.write_not_finished(results_path)
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    rubric = load_rubric(Path(job.rubric_path))
    try:
        run = grade_submission(Path(job.folder), rubric, seed=job.seed, device=job.device,
                               skip_training=job.skip_training, isolation=job.isolation, data_dir=job.data_dir,
                               protect=[results_path.parent], threads=job.threads)
    except Exception as exc:  # the grader's own failure: this submission only, and it says so
        run = unfinished_run(rubric, Path(job.folder), f"the grader failed with an internal error "
                                                       f"({type(exc).__name__}: {exc})")
    gradescope.write_results(run, results_path)
    gradescope.write_atomic(record_path, run.to_dict())


def unfinished_run(rubric: Any, folder: Path, why: str, seconds: float = 0.0) -> GradingRun:
    """A submission whose grading did not finish: every check undecided (0 for now, for review), saying why."""
    from grader.checks import Outcome, finish

    results = [finish(spec, Outcome.undecided(f"Not graded: {why}.", review=f"grading did not finish: {why}"))
               for spec in rubric.checks]
    return GradingRun(assignment=rubric.assignment, submission=str(folder), results=results, seconds=round(seconds, 3),
                      load_messages=[f"{gradescope.DID_NOT_FINISH[0].upper()}{gradescope.DID_NOT_FINISH[1:]}: {why}. "
                                     "Its checks are not decided; the course staff will review this submission."])


def _read_record(path: Path) -> GradingRun | None:
    try:
        return GradingRun.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _death(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its grading process was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"its grading process exited with code {code} before writing its results"


def submission_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def grade_folder(root: Path, rubric_path: Path, out: Path, *, jobs: int, seed: int, device: str = "cpu",
                 skip_training: bool = False, isolation: str | None = None, data_dir: str | None = None,
                 on_done: Callable[[str, GradingRun], None] | None = None,
                 on_start: Callable[[str, int, int], None] | None = None) -> tuple[list[str], list[GradingRun]]:
    """Grade every sub-folder of `root`; per-submission files go to `out/<name>/`.

    `on_start(name, pid, attempt)` is called when a submission's grading
    process starts (tests use it to kill one from outside, as the OOM killer would).
    """
    folders = submission_folders(root)
    out.mkdir(parents=True, exist_ok=True)
    jobs = max(1, jobs)
    # Each grading process runs its own sandbox child: split the cores between them.
    from grader.training.plan import grading_threads

    threads = grading_threads(jobs)
    ctx = _context()
    runs: dict[str, GradingRun] = {}
    attempts: Counter[str] = Counter()
    pending = deque(folders)
    running: dict[Any, tuple[Path, multiprocessing.process.BaseProcess, float]] = {}
    rubric = None
    for folder in folders:  # every submission has a valid results file from now on, even if this process dies
        gradescope.write_not_finished(out / folder.name / RESULTS)
    while pending or running:
        while pending and len(running) < jobs:
            folder = pending.popleft()
            attempts[folder.name] += 1
            (out / folder.name).mkdir(parents=True, exist_ok=True)
            record = out / folder.name / RECORD
            record.unlink(missing_ok=True)  # a record left by an earlier run or attempt must not pass for this one
            job = Job(folder=str(folder), rubric_path=str(rubric_path), seed=seed, device=device,
                      skip_training=skip_training, isolation=isolation, data_dir=data_dir,
                      results_path=str(out / folder.name / RESULTS), record_path=str(record), threads=threads,
                      environ=dict(os.environ))
            process = ctx.Process(target=_grade_one, args=(job,), name=f"grader-{folder.name}")
            process.start()
            running[process.sentinel] = (folder, process, time.perf_counter())
            if on_start:
                on_start(folder.name, process.pid or 0, attempts[folder.name])
        for sentinel in multiprocessing.connection.wait(list(running)):
            folder, process, started = running.pop(sentinel)
            process.join()
            run = _read_record(out / folder.name / RECORD) if process.exitcode == 0 else None
            if run is None:
                if attempts[folder.name] < ATTEMPTS:
                    pending.append(folder)  # once more, on its own attempt (the death may have been the machine's)
                    continue
                if rubric is None:
                    from grader.rubric.load import load_rubric

                    rubric = load_rubric(rubric_path)
                why = _death(process) + f", on each of {ATTEMPTS} attempts"
                run = unfinished_run(rubric, folder, why, time.perf_counter() - started)
                gradescope.write_results(run, out / folder.name / RESULTS)
                gradescope.write_atomic(out / folder.name / RECORD, run.to_dict())
            runs[folder.name] = run
            if on_done:
                on_done(folder.name, run)
    names = [f.name for f in folders]
    return names, [runs[n] for n in names]

"""`grader gradescope run`: grade the submission inside Gradescope's container, never lose the results.

Layout (Gradescope's; the root is ``$AUTOGRADER_ROOT``, default /autograder)::

    source/       the unpacked autograder zip: grader/, rubrics/, reference/, data/
    submission/   the student's files
    results/      results.json goes here

The run writes a valid results file before anything else ("did not finish"),
so that even a grader killed from outside leaves one. While grading, every
finished check is kept (the engine's ``on_result``). Two deadlines, from the
rubric's budget (`budget.deadlines`): after the soft one no check starts (the
engine's ``deadline``); at the hard one SIGALRM writes the results so far,
with the rest marked as not graded, and stops grading; SIGTERM does the same at
any time. A watchdog thread writes them too should the main thread be stuck
in C code when the alarm rings. The final results file is written last, by
this process, after the sandbox is closed and every process left by the
student's code is gone.
"""
from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.checks import Outcome, finish
from grader.errors import RubricError, RubricErrors, describe
from grader.gradescope import budget
from grader.report import gradescope as report
from grader.results import CheckResult, GradingRun
from grader.rubric.model import Rubric
from grader.sandbox import isolation

DEFAULT_ROOT = "/autograder"


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def submission(self) -> Path:
        return self.root / "submission"

    @property
    def results(self) -> Path:
        return self.root / "results" / "results.json"

    @property
    def data(self) -> Path:
        return self.source / "data"

    @property
    def metadata(self) -> Path:
        return self.root / "submission_metadata.json"  # names, emails, earlier scores: not the child's business


def autograder_root() -> Path:
    return Path(os.environ.get("AUTOGRADER_ROOT") or DEFAULT_ROOT)


class TimeUp(BaseException):
    """Raised in the main thread by SIGALRM or SIGTERM: stop grading and keep what is known.

    A BaseException so that no ``except Exception`` on the way (a check's own
    error handling) swallows it; the engine's ``finally`` still closes the sandbox.
    """


class ResultsKeeper:
    """The checks finished so far, and the one place that writes the results file.

    Written from the main thread, a signal handler and the watchdog thread,
    hence the (re-entrant) lock; once the final file is written nothing
    overwrites it.
    """

    def __init__(self, rubric: Rubric, path: Path, *, submission: Path, level: str, seed: int) -> None:
        self.rubric, self.path, self.submission, self.level, self.seed = rubric, path, submission, level, seed
        self.started = time.perf_counter()
        self._lock = threading.RLock()
        self._results: list[CheckResult] = []
        self._final = False

    def add(self, result: CheckResult) -> None:
        with self._lock:
            self._results.append(result)

    def partial_run(self, why: str) -> GradingRun:
        """The results so far; every other check marked as not graded, saying `why` grading stopped."""
        with self._lock:
            done = list(self._results)
        seen = {r.check_id for r in done}
        # Undecided, not failed: no verdict was reached on these (0 for now, listed for review).
        rest = [finish(spec, Outcome.undecided(f"Not graded: {why} before this check finished."))
                for spec in self.rubric.checks if spec.id not in seen]
        note = f"Grading stopped early: {why}. The checks not finished by then are marked as not graded."
        return GradingRun(assignment=self.rubric.assignment, submission=str(self.submission), results=done + rest,
                          isolation=self.level, load_messages=[note],
                          seconds=round(time.perf_counter() - self.started, 3), seed=self.seed)

    def write_partial(self, why: str) -> None:
        with self._lock:
            if not self._final:
                report.write_results(self.partial_run(why), self.path)

    def write_final(self, run: GradingRun) -> dict[str, Any]:
        with self._lock:
            self._final = True
            return report.write_results(run, self.path)


def _find_rubric(paths: Paths) -> Path:
    rubrics = paths.source / "rubrics"
    wanted = os.environ.get("GRADER_ASSIGNMENT")
    if wanted:
        return rubrics / f"{wanted}.yaml"
    found = sorted(rubrics.glob("*.yaml"))
    if len(found) != 1:
        raise RubricError(str(rubrics), "", f"expected exactly one rubric in {rubrics}, found {len(found)}; "
                          "set GRADER_ASSIGNMENT to choose")
    return found[0]


def _budget_s(rubric: Rubric, time_limit_s: float | None) -> float:
    if time_limit_s:
        return float(time_limit_s)
    if os.environ.get("GRADER_TIME_LIMIT_S"):
        return float(os.environ["GRADER_TIME_LIMIT_S"])
    return float(rubric.limits.get("total_time_s", budget.GRADESCOPE_TIMEOUT_S))


def reap_student_processes(level: str) -> int:
    """Kill whatever still runs as the sandbox's user (unprivileged-uid level only); returns how many.

    The sandbox kills its child's process group (and cgroup, where there is
    one); a process that called setsid() and has no cgroup to catch it would
    survive that. Gradescope grades one submission per container, so every
    process of that user is the student's.
    """
    if level != "unprivileged-uid":
        return 0
    ids = isolation.unprivileged_user()
    if ids is None:
        return 0
    uid = ids[0]
    killed: set[int] = set()
    for _ in range(20):  # a fork loop may make new ones while we kill: repeat until none are left
        pids = [pid for pid in _live_pids() if _owner(pid) == uid]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return len(killed)


def _live_pids() -> list[int]:
    """Every process that is not a zombie (a zombie is already dead: killing it again does nothing)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != b"Z":
                pids.append(int(entry))
    return pids


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(*, root: Path | None = None, seed: int | None = None, time_limit_s: float | None = None,
        skip_training: bool = False) -> int:
    """Grade $AUTOGRADER_ROOT/submission into results/results.json; always returns 0 with a valid file there."""
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    paths = Paths(root or autograder_root())
    started = time.monotonic()
    report.write_not_finished(paths.results)
    try:
        rubric = load_rubric(_find_rubric(paths))
    except (RubricError, RubricErrors) as exc:
        print(f"grader: the rubric cannot be used:\n{describe(exc)}")
        report.write_failure(paths.results, "the assignment's rubric is invalid.")
        return 0
    rubric.limits = {"max_reply_mb": budget.GRADESCOPE_MAX_REPLY_MB, **rubric.limits}
    if os.environ.get("GRADER_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["GRADER_THREADS"]))
    seed = seed if seed is not None else secrets.randbelow(2**31)
    level = isolation.choose_level()
    keeper = ResultsKeeper(rubric, paths.results, submission=paths.submission, level=level, seed=seed)
    limit = _budget_s(rubric, time_limit_s)
    marks = budget.deadlines(rubric, limit)
    out_of_time = f"the autograder's time ran out ({limit:g} s in all)"

    fired = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if fired.is_set():
            return
        fired.set()
        why = out_of_time if signum == signal.SIGALRM else "the autograder was stopped (SIGTERM)"
        keeper.write_partial(why)
        raise TimeUp(why)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGALRM, signal.SIGTERM)}
    signal.setitimer(signal.ITIMER_REAL, max(0.1, marks.hard_s - (time.monotonic() - started)))
    watchdog = threading.Timer(max(0.1, marks.hard_s + 5 - (time.monotonic() - started)),
                               keeper.write_partial, args=(out_of_time,))
    watchdog.daemon = True
    watchdog.start()
    protect = [paths.results.parent, paths.data, paths.metadata]
    try:
        graded = grade_submission(paths.submission, rubric, seed=seed, device=_device(), skip_training=skip_training,
                                  data_dir=str(paths.data) if paths.data.is_dir() else None,
                                  protect=[p for p in protect if p.exists()],
                                  deadline=started + marks.soft_s, on_result=keeper.add)
    except TimeUp as exc:
        graded = keeper.partial_run(str(exc))
    except Exception as exc:  # the grader's own fault: keep every check that finished
        print(f"grader: internal error: {type(exc).__name__}: {exc}")
        graded = keeper.partial_run(f"the autograder failed with an internal error ({type(exc).__name__}: "
                                    "not your fault; please tell the course staff)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        watchdog.cancel()
        fired.set()  # a late signal no longer interrupts the final write
        for s, handler in old.items():
            signal.signal(s, handler)
    reaped = reap_student_processes(level)
    keeper.write_final(graded)
    print(f"{rubric.assignment}: {graded.score:g} / {graded.max_score:g} points in {graded.seconds:g} s; "
          f"isolation {graded.isolation}; seed {seed}; budget {limit:g} s; grader {Path(__file__).resolve().parent.parent}"
          + (f"; killed {reaped} leftover student process(es)" if reaped else ""))
    return 0

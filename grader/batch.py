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
results.json before its grading starts, replaced atomically when it is done.

Resumable: when a submission's record is written, its *key* is written
last, atomically, beside it (``key``): a hash of the files intake takes in
(and the refusals), the rubric, the reference module, the grader's version
and code, and the options that change a grade (seed, device, training on or
off, isolation, data folder). A rerun over the same ``out`` folder reuses
every submission whose stored key matches (`--regrade` forces a new
grading), so a batch killed half-way loses nothing it had finished. A
did-not-finish record gets no key: it is a grader fault, retried next time.

The next submission's grading process starts while the current ones are graded: it takes its
submission in, spawns its sandbox child (which imports torch, ~6 s of CPU) and loads the rubric, then
waits for a slot (a "go" on its own pipe) before it runs a single check. At most `jobs` gradings run
checks at once, plus `AHEAD` processes that have only prestarted (none when `jobs` leaves no core idle). Each child still gets only its own
submission and is never reused; a prestarted process that dies while waiting is a death like any other
(its submission is tried once more), and one whose child died while waiting starts a fresh child
(nothing of the student's ran in it, so that costs no points). At the unprivileged-uid level a waiting
process prestarts no child: a child holds one of the machine's few student uids from its spawn.

Beyond one machine, the same plan is carried out by a Dask cluster
(`grader.distributed`); the store, the keys and the records are the same.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grader.loading.files import Intake, IntakeLimits, take_in

from grader.report import gradescope
from grader.results import GradingRun
from grader.version import code_digest

ATTEMPTS = 2  # a submission whose grading process dies this many times gets the did-not-finish result
# Grading processes that may be prestarting (or prestarted and waiting) beyond the `jobs` that grade. One,
# not `jobs`: a prestart is ~6 s of single-threaded CPU, far less than a grading, so one is ready long before
# the next slot frees; each waiting child holds torch in memory (~0.4 GB). None when `jobs` >= the cores
# (`ahead_for`): there is no idle core for a prestart to use, and benchmarks/batch_overlap.py measured it
# slower there (-j 2 on 2 CPUs: 1.0-1.15x), against 0.81x at -j 1.
AHEAD = 1
# The two messages on a grading process's pipe, as bytes (no pickle crosses it either way):
GO = b"go"  # the pool to a prestarted grading process, when a slot frees
READY = b"ready"  # a grading process to the pool, once its child is spawned and its rubric loaded
RECORD = "record.json"
RESULTS = "results.json"
KEY = "key"  # written last, only for a finished grading: what a rerun compares
# Imported once in the fork server: every grading process starts with them (and torch) loaded.
# grader.engine itself imports torch lazily (for `prestart`): the check kinds and the judge are named here.
PRELOAD = ["grader.engine", "grader.checks", "grader.judge.server", "grader.rubric.load", "grader.report.gradescope"]


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


def _grade_one(job: Job, gate: multiprocessing.connection.Connection | None = None) -> None:
    """The grading process: grade one submission, write its results.json and its record.

    With a `gate` (its end of a pipe from the pool) it prestarts (intake, sandbox child, rubric), says
    `READY` and waits for `GO` before grading; if the pool goes away meanwhile it leaves without grading.
    Never raises for anything the submission does."""
    # The fork server was started with the environment of its time; take the caller's of now.
    os.environ.clear()
    os.environ.update(job.environ)
    results_path, record_path = Path(job.results_path), Path(job.record_path)
    gradescope.write_not_finished(results_path)
    from grader.engine import grade_submission, prestart
    from grader.rubric.load import load_rubric

    # The sandbox child starts importing torch while this process loads the rubric and its reference, and
    # (with a gate) while it waits for its slot. Not at the unprivileged-uid level: there a child holds one
    # of the machine's few student uids (`UidSlot`, a blocking lock) from its spawn, and a process holding one
    # while it waits for a slot could starve the gradings that hold the slots; this grading starts its own
    # child once it has its slot, as before.
    early = None
    if gate is None or not _holds_a_uid(job.isolation):
        early = prestart(Path(job.folder), Path(job.rubric_path), device=job.device, isolation=job.isolation,
                         data_dir=job.data_dir, protect=[results_path.parent], threads=job.threads)
    try:
        rubric = load_rubric(Path(job.rubric_path))
        if gate is not None and not _wait_for_slot(gate, early):
            if early is not None:
                early.close()
            return  # the pool is gone (interrupted): no one would read this grading
    except BaseException:
        if early is not None:
            early.close()
        raise
    try:
        run = grade_submission(Path(job.folder), rubric, seed=job.seed, device=job.device,
                               skip_training=job.skip_training, isolation=job.isolation, data_dir=job.data_dir,
                               protect=[results_path.parent], early=early, threads=job.threads)
    except Exception as exc:  # the grader's own failure: this submission only, and it says so
        run = unfinished_run(rubric, Path(job.folder), f"the grader failed with an internal error "
                                                       f"({type(exc).__name__}: {exc})")
    gradescope.write_results(run, results_path)
    gradescope.write_atomic(record_path, run.to_dict())


def ahead_for(jobs: int) -> int:
    """How many processes prestart beyond the `jobs` grading: `AHEAD` while a core is left idle, else 0."""
    from grader.cores import default_num_threads

    return AHEAD if jobs < default_num_threads() else 0


def _holds_a_uid(forced: str | None) -> bool:
    """Whether sandboxes here run as a student uid (`grader.sandbox.isolation`), which a spawn takes and holds."""
    from grader.sandbox.isolation import choose_level

    try:
        return choose_level(forced) == "unprivileged-uid"
    except ValueError:  # an unknown level: grade_submission says so
        return False


def _wait_for_slot(gate: multiprocessing.connection.Connection, early: Any) -> bool:
    """Say `READY` and wait for `GO`; False if the pool closed the pipe instead (it ended early).

    A prestarted child that died while waiting (the OOM killer, a signal from outside) had run only the
    grader's own start-up, never student code: it is dropped, and grading starts a fresh one."""
    try:
        gate.send_bytes(READY)
        message = gate.recv_bytes(maxlength=len(GO))
    except (EOFError, OSError):
        return False
    if message != GO:
        return False
    if early is not None and early.sandbox is not None and not early.sandbox.alive():
        early.sandbox.close()
        early.sandbox = None
    return True


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


# ---- the store: what a rerun may reuse -------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def course_digest(rubric_path: Path) -> str:
    """A hash of what decides every grade of a batch besides the submission: the rubric file, the reference
    module it names, and the grader (version and code). A Dask worker compares it with its own."""
    from grader.rubric.load import load_rubric

    rubric = load_rubric(rubric_path)
    h = hashlib.sha256()
    for part in (rubric_path.read_bytes(), rubric.reference_path.read_bytes(), code_digest().encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Options:
    """The options of a batch that change a grade: part of every key, and of every Dask task."""

    seed: int
    device: str = "cpu"
    skip_training: bool = False
    isolation: str | None = None
    data_dir: str | None = None

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.seed, self.device, self.skip_training, self.isolation, self.data_dir])
                              .encode()).hexdigest()


@contextlib.contextmanager
def taken_in(folder: Path, limits: IntakeLimits) -> Iterator[Intake]:
    """A submission as intake takes it in (`grader.loading.files.take_in`), in a temporary folder removed after.

    That copy is what a key hashes and what a Dask task carries: bounded by the rubric's intake limits
    (file size, total size, file count), without links or special files."""
    workspace = Path(tempfile.mkdtemp(prefix="grader-batch-"))
    try:
        yield take_in(folder, workspace / "submission", limits)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def submission_key(intake: Intake, course: str, options: Options) -> str:
    """The key a finished grading is stored under: the files taken in (paths and contents), the refusals,
    the course digest and the options."""
    h = hashlib.sha256()
    h.update(course.encode() + b"\0" + options.digest().encode() + b"\0")
    for rel in sorted(intake.accepted):
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        with open(intake.folder / rel, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    h.update(json.dumps(sorted(intake.refused.items())).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def is_unfinished(run: GradingRun) -> bool:
    """True for a did-not-finish record (`unfinished_run`): a grader fault, graded again by a rerun."""
    prefix = f"{gradescope.DID_NOT_FINISH[0].upper()}{gradescope.DID_NOT_FINISH[1:]}:"
    return any(m.startswith(prefix) for m in run.load_messages)


def stored_run(out: Path, name: str, key: str) -> GradingRun | None:
    """The stored run of `name` if its key is `key` and its record reads back; its results.json is rewritten
    when it was lost (a record is enough to make it again)."""
    folder = out / name
    try:
        if (folder / KEY).read_text().strip() != key:
            return None
    except OSError:
        return None
    run = _read_record(folder / RECORD)
    if run is None:
        return None
    try:
        json.loads((folder / RESULTS).read_text())["score"]
    except (OSError, ValueError, KeyError, TypeError):
        gradescope.write_results(run, folder / RESULTS)
    return run


def store(out: Path, name: str, run: GradingRun, key: str | None) -> None:
    """Store a finished run: results.json, record.json, then its key (last, so a key always names a whole
    record). A did-not-finish run, or one without a key, is stored without one."""
    folder = out / name
    gradescope.write_results(run, folder / RESULTS)
    gradescope.write_atomic(folder / RECORD, run.to_dict())
    if key and not is_unfinished(run):
        _write_text_atomic(folder / KEY, key)


def forget(out: Path, name: str) -> None:
    """Before a submission is graded again: no key, no record, a did-not-finish results.json."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / KEY).unlink(missing_ok=True)  # first: an old key must never vouch for a new, half-written record
    (folder / RECORD).unlink(missing_ok=True)
    gradescope.write_not_finished(folder / RESULTS)


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Plan:
    """Which submissions a batch grades and which it reuses (with their stored runs), and every key."""

    to_grade: list[Path]
    reused: dict[str, GradingRun]
    keys: dict[str, str]


def plan(folders: list[Path], out: Path, rubric_path: Path, options: Options, *, regrade: bool = False) -> Plan:
    from grader.loading.files import intake_limits
    from grader.rubric.load import load_rubric

    limits = intake_limits(load_rubric(rubric_path).limits)
    course = course_digest(rubric_path)
    keys: dict[str, str] = {}
    reused: dict[str, GradingRun] = {}
    to_grade: list[Path] = []
    for folder in folders:
        with taken_in(folder, limits) as intake:
            keys[folder.name] = submission_key(intake, course, options)
        run = None if regrade else stored_run(out, folder.name, keys[folder.name])
        if run is None:
            to_grade.append(folder)
        else:
            reused[folder.name] = run
    return Plan(to_grade=to_grade, reused=reused, keys=keys)


# ---- grading ---------------------------------------------------------------------------------------------------

def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def grade_folder(root: Path, rubric_path: Path, out: Path, *, jobs: int, seed: int, device: str = "cpu",
                 skip_training: bool = False, isolation: str | None = None, data_dir: str | None = None,
                 regrade: bool = False, scheduler: str | None = None, local_cluster: int | None = None,
                 on_plan: Callable[[Plan], None] | None = None,
                 on_done: Callable[[str, GradingRun], None] | None = None,
                 on_start: Callable[[str, int, int], None] | None = None,
                 on_step: Callable[[str, str, int, int], None] | None = None,
                 on_client: Callable[[Any], None] | None = None) -> tuple[list[str], list[GradingRun]]:
    """Grade every sub-folder of `root`; per-submission files go to `out/<name>/`.

    Submissions whose stored key matches are reused, not graded (`regrade` grades them all). The rest
    go to the local pool (`jobs` at a time), or with `scheduler` (an address) or `local_cluster` (a
    number of workers) to a Dask cluster. `on_plan(plan)` is called once before any grading,
    `on_done(name, run)` as each graded submission finishes. `on_start(name, pid, attempt)` is called
    when a submission's local grading process is given its slot and starts grading (it may have been
    prestarting before), `on_step(name, step, pid, attempt)` at each step of a local grading process
    (`_grade_locally`), `on_client(client)` once a Dask client is connected (tests use them to kill a
    grading from outside, as the OOM killer would, and to see the order of events).
    """
    folders = submission_folders(root)
    out.mkdir(parents=True, exist_ok=True)
    options = Options(seed=seed, device=device, skip_training=skip_training, isolation=isolation, data_dir=data_dir)
    the_plan = plan(folders, out, rubric_path, options, regrade=regrade)
    if on_plan:
        on_plan(the_plan)
    runs: dict[str, GradingRun] = dict(the_plan.reused)

    def done(name: str, run: GradingRun, key: str | None) -> None:
        store(out, name, run, key)
        runs[name] = run
        if on_done:
            on_done(name, run)

    with contextlib.ExitStack() as stack:
        client = threads = None
        if (scheduler or local_cluster) and the_plan.to_grade:
            from grader.distributed import connect, grade_on_cluster

            # Connected before anything is written: an unreachable scheduler is a usage error that costs nothing.
            client, threads = stack.enter_context(connect(scheduler, local_cluster))
            if on_client:
                on_client(client)
        for folder in the_plan.to_grade:  # every one has a valid results file from now on, even if this process dies
            if not (out / folder.name / RESULTS).exists():  # (an older one stays until its grading starts)
                (out / folder.name).mkdir(parents=True, exist_ok=True)
                gradescope.write_not_finished(out / folder.name / RESULTS)
        if client is not None:
            grade_on_cluster(client, the_plan.to_grade, rubric_path, out, options, threads=threads, done=done)
        else:
            _grade_locally(the_plan.to_grade, rubric_path, out, options, jobs=jobs, keys=the_plan.keys,
                           done=done, on_start=on_start, on_step=on_step)
    names = [f.name for f in folders]
    return names, [runs[n] for n in names]


@dataclass
class _Running:
    """A grading process of the local pool, from its start to its end."""

    folder: Path
    process: multiprocessing.process.BaseProcess
    gate: multiprocessing.connection.Connection  # the pool's end of the process's pipe (GO goes down it)
    started: float
    grading: bool = False  # sent GO: it holds one of the `jobs` slots
    heard: bool = False  # its READY (or its pipe's end) was read


def _grade_locally(folders: list[Path], rubric_path: Path, out: Path, options: Options, *, jobs: int,
                   keys: dict[str, str], done: Callable[[str, GradingRun, str | None], None],
                   on_start: Callable[[str, int, int], None] | None,
                   on_step: Callable[[str, str, int, int], None] | None = None, ahead: int | None = None) -> None:
    """The local pool: one forked process per submission, `jobs` grading at a time and `ahead` more
    prestarting meanwhile (module docstring); a dead one is tried once more. Slots go to the processes in
    the order they were started. `on_step(name, step, pid, attempt)` reports each process's steps in the
    order the pool sees them: "started", "ready" (its child spawned and its rubric loaded, in its own
    words), "grading" (given a slot; `on_start` is called then too) and "ended"."""
    jobs = max(1, jobs)
    ahead = max(0, ahead_for(jobs) if ahead is None else ahead)
    # Each grading process runs its own sandbox child: split the cores between them.
    from grader.cores import grading_threads

    threads = grading_threads(jobs)
    ctx = _context()
    attempts: Counter[str] = Counter()
    pending = deque(folders)
    running: dict[int, _Running] = {}  # by sentinel, in start order (a dict keeps it)
    rubric = None

    def step(entry: _Running, what: str) -> None:
        if on_step:
            on_step(entry.folder.name, what, entry.process.pid or 0, attempts[entry.folder.name])

    try:
        while pending or running:
            while pending and len(running) < jobs + ahead:
                folder = pending.popleft()
                attempts[folder.name] += 1
                forget(out, folder.name)  # a record left by an earlier run or attempt must not pass for this one
                record = out / folder.name / RECORD
                job = Job(folder=str(folder), rubric_path=str(rubric_path), seed=options.seed, device=options.device,
                          skip_training=options.skip_training, isolation=options.isolation,
                          data_dir=options.data_dir, results_path=str(out / folder.name / RESULTS),
                          record_path=str(record), threads=threads, environ=dict(os.environ))
                gate, their_end = ctx.Pipe()
                process = ctx.Process(target=_grade_one, args=(job, their_end), name=f"grader-{folder.name}")
                try:
                    process.start()
                finally:
                    their_end.close()  # theirs alone: when this pool ends, the process sees its pipe close
                entry = running[process.sentinel] = _Running(folder, process, gate, time.perf_counter())
                step(entry, "started")
            grading = sum(e.grading for e in running.values())
            for entry in running.values():
                if grading >= jobs:
                    break
                if not entry.grading:
                    with contextlib.suppress(OSError):  # one that died already is found by its sentinel below
                        entry.gate.send_bytes(GO)
                    entry.grading, grading = True, grading + 1
                    step(entry, "grading")
                    if on_start:
                        on_start(entry.folder.name, entry.process.pid or 0, attempts[entry.folder.name])
            woken = multiprocessing.connection.wait([*running, *(e.gate for e in running.values() if not e.heard)])
            for entry in running.values():  # messages first: a READY sent before another process ended comes first
                if not entry.heard and entry.gate in woken:
                    entry.heard = True
                    try:
                        message = entry.gate.recv_bytes(maxlength=len(READY))
                    except (EOFError, OSError):  # it ended: its sentinel says how
                        message = None
                    if message == READY:
                        step(entry, "ready")
            for sentinel in woken:
                if not isinstance(sentinel, int) or sentinel not in running:
                    continue
                entry = running.pop(sentinel)
                folder, process = entry.folder, entry.process
                process.join()
                entry.gate.close()
                step(entry, "ended")
                run = _read_record(out / folder.name / RECORD) if process.exitcode == 0 else None
                if run is None:
                    if attempts[folder.name] < ATTEMPTS:
                        pending.append(folder)  # once more, on its own attempt (the death may have been the machine's)
                        continue
                    if rubric is None:
                        from grader.rubric.load import load_rubric

                        rubric = load_rubric(rubric_path)
                    why = _death(process) + f", on each of {ATTEMPTS} attempts"
                    run = unfinished_run(rubric, folder, why, time.perf_counter() - entry.started)
                done(folder.name, run, keys.get(folder.name))
    finally:
        for entry in running.values():  # interrupted: a process still waiting for its slot leaves without grading
            entry.gate.close()

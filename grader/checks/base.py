"""The check interface: what every check kind receives, reports, and how it is scored.

A check kind is a small class registered under the rubric's ``kind`` name.
It is built from a `CheckSpec`, asks the sandbox for the student's values,
compares them in this (trusted) process with the reference, and returns an
`Outcome`; `finish` turns that into a `CheckResult` by applying the rubric
items, so every kind scores the same way.

Findings are short ids a check reports (``incorrect``, ``low_accuracy``...);
the rubric attaches Gradescope-style items ("-2 pts Low accuracy") to them.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, Iterator

import numpy as np

from grader.checks.forms import validate_forms
from grader.checks.options import Option, Params, missing_required, resolve
from grader.results import AppliedItem, CheckResult
from grader.rubric.model import CheckSpec, KnownMistake, Rubric
from grader.sandbox.client import LoadReport, Reply, Sandbox

# Findings any check may report.
COMMON_FINDINGS = ("incorrect", "error", "timeout", "wrong_type", "wrong_shape", "not_loaded", "missing")
# Context fields that hold (or reach) what the submission supplied: reading any of them during a check
# counts as contact with student data (see `timed_run`).
_STUDENT_FIELDS = frozenset({"sandbox", "load", "answers"})


@dataclass
class Context:
    """What a check may use. The sandbox is the only way to reach student code."""

    rubric: Rubric
    reference: ModuleType
    sandbox: Sandbox | None
    load: LoadReport | None
    answers: dict[str, Any]
    seed: int
    device: str = "cpu"
    skip_training: bool = False
    data_dir: str | None = None
    progress: bool = False

    def __getattribute__(self, name: str) -> Any:
        # Reading what the student supplied (the sandbox's replies, the load report, the answers) marks the
        # running check as having touched student data: an exception after that may be the student's doing.
        if name in _STUDENT_FIELDS:
            object.__setattr__(self, "_student_contact", True)
        return object.__getattribute__(self, name)

    def begin_check(self) -> None:
        """Called by `timed_run` before each check: nothing student-supplied has been read yet."""
        object.__setattr__(self, "_student_contact", False)

    @property
    def student_contact(self) -> bool:
        """Whether the running check has read anything the submission supplied."""
        return bool(getattr(self, "_student_contact", True))

    def rng(self, spec: CheckSpec) -> np.random.Generator:
        """A generator per check, from the run's seed and the check id: stable when re-run with --seed."""
        digest = hashlib.sha256(f"{self.seed}:{spec.id}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def timeout(self, spec: CheckSpec) -> float:
        return float(spec.timeout_s or self.rubric.limits.get("timeout_s", 30.0))

    def request(self, spec: CheckSpec, message: dict[str, Any], *, timeout: float | None = None) -> Reply:
        if self.sandbox is None:
            return Reply(ok=False, kind="not_loaded", message="no submission code was loaded")
        return self.sandbox.request(message, timeout=timeout or self.timeout(spec))


@dataclass
class Outcome:
    """What a check found, before scoring."""

    passed: bool
    feedback: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    credit: float = 0.0  # fraction of the points kept when failed (a known mistake's partial credit)
    method: str | None = None
    skipped: bool = False
    manual: bool = False  # collected for a human grader: 0 automatic points, never "failed"
    #: "grader_error" or "undecided" when the check reached no verdict on the student's work
    #: (grader.results explains both); None lets `finish` decide from the fields above.
    status: str | None = None
    review: str | None = None  # for the instructor (never shown to students): why to look at this check

    @classmethod
    def undecided(cls, *feedback: str, review: str | None = None) -> "Outcome":
        """No verdict for reasons outside the work being judged (e.g. the grader's time budget ran out).

        Scores 0 for now and is listed for review. Never use it for something
        the submission's own code caused (its timeout, crash or wrong value):
        those are the student's failures.
        """
        return cls(passed=False, feedback=list(feedback), findings=["undecided"], status="undecided",
                   review=review or (feedback[0] if feedback else "no verdict was reached"))

    @classmethod
    def grader_error(cls, *feedback: str, review: str | None = None) -> "Outcome":
        """The grader's own code failed, with no student-supplied value involved: the points are kept.

        Only for failures no submission can provoke (the reference or the
        rubric failing on grader-chosen inputs): the points are kept, so a
        failure a student value can cause must be the student's
        ``wrong_type`` instead (see `timed_run`).
        """
        return cls(passed=False, feedback=list(feedback), findings=["grader_error"], status="grader_error",
                   review=review or (feedback[0] if feedback else "grader error"))

    @classmethod
    def fail(cls, finding: str, *feedback: str, credit: float = 0.0) -> "Outcome":
        return cls(passed=False, feedback=list(feedback), findings=[finding], credit=credit)

    @classmethod
    def from_mistake(cls, mistake: KnownMistake, *feedback: str, method: str | None = None) -> "Outcome":
        """A recognised known mistake: its explanation first, its finding and credit, then the details."""
        return cls(passed=False, feedback=[mistake.feedback, *feedback], findings=[mistake.finding],
                   credit=mistake.credit, method=method)


class Check:
    """Base class of check kinds; subclasses set `kind`, `findings` and implement `run`."""

    kind: ClassVar[str] = ""
    findings: ClassVar[tuple[str, ...]] = COMMON_FINDINGS
    needs_code: ClassVar[bool] = True
    #: The kind's params, declared once (type, default, one line of doc each; see grader.checks.options).
    #: None: not declared (params untyped; only for kinds that predate declarations).
    options: ClassVar[tuple[Option, ...] | None] = None
    #: Params a kind without declared options requires (declared kinds mark options REQUIRED instead).
    required_params: ClassVar[tuple[str, ...]] = ()
    needs_target: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = True
    #: Equivalent forms this kind recognises under params.accept, and the array libraries it can call with
    #: (see grader.checks.forms); anything else in a rubric is an error at load.
    accepted_forms: ClassVar[tuple[str, ...]] = ()
    array_apis: ClassVar[tuple[str, ...]] = ("torch",)

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        self.params = self.params_of(spec)

    @classmethod
    def params_of(cls, spec: CheckSpec) -> Params:
        """The check's options: the rubric's values over the declared defaults."""
        if cls.options is None:
            return Params(cls.kind, dict(spec.params), frozenset(spec.params))
        return resolve(cls.kind, cls.options, spec.params)

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        """Rubric problems with this check, as (path suffix, message)."""
        problems = []
        if cls.needs_target and not spec.target:
            problems.append(("target", f"a {cls.kind} check needs a 'target' (the name the student defines)"))
        if cls.needs_reference and not spec.reference:
            problems.append(("reference", f"a {cls.kind} check needs a 'reference' (a name in the reference module)"))
        if cls.options is not None:
            problems += missing_required(cls.kind, cls.options, spec.params)
        for name in cls.required_params:
            if name not in spec.params:
                problems.append((f"params.{name}", f"a {cls.kind} check needs params.{name}"))
        problems += validate_forms(cls.kind, spec.params, cls.accepted_forms, cls.array_apis)
        return problems

    @classmethod
    def validate_with_reference(cls, spec: CheckSpec, reference: ModuleType) -> list[tuple[str, str]]:
        """Rubric problems only visible with the reference loaded (its tables, symbols), as (path suffix, message)."""
        return []

    def run(self, ctx: Context) -> Outcome:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.id!r}, target={self.spec.target!r})"


def reply_failure(reply: Reply, what: str) -> Outcome:
    """A failed sandbox request as an Outcome with a sentence the student can act on."""
    finding = {"timeout": "timeout", "not_plain": "wrong_type", "not_loaded": "not_loaded"}.get(reply.kind, "error")
    if reply.kind == "student" and reply.message.startswith("NameError") and "is not defined in the submission" in reply.message:
        finding = "missing"
    return Outcome.fail(finding, f"{what} failed: {reply.describe()}")


class GraderFault(Exception):
    """Raised by a check when the grader's own side failed (for example the reference raised on grader-chosen
    inputs): `timed_run` records a ``grader_error`` whatever the check read before."""


@contextlib.contextmanager
def grader_side(what: str) -> Iterator[None]:
    """Run grader-only code (the reference on grader-chosen inputs): an exception in it is a `GraderFault`.

    Only for code that no student-supplied value reaches: a value the student
    returned (a shape, a padding, a tensor) must never be passed into this
    block, or the student could raise in it and keep the points.
    """
    try:
        yield
    except Exception as exc:
        raise GraderFault(f"{what}: {type(exc).__name__}: {exc}") from exc


def _status(outcome: Outcome) -> str:
    if outcome.status in ("grader_error", "undecided"):
        return outcome.status
    if outcome.skipped:
        return "skipped"
    if outcome.manual:
        return "manual"
    return "passed" if outcome.passed else "failed"


def finish(spec: CheckSpec, outcome: Outcome, seconds: float = 0.0) -> CheckResult:
    """Score an outcome with the check's rubric items (the same rule for every kind) and give it its status."""
    status = _status(outcome)
    result = CheckResult(check_id=spec.id, title=spec.title, question=spec.question, score=spec.points,
                         max_score=spec.points, feedback=list(outcome.feedback), visibility=spec.visibility,  # type: ignore[arg-type]
                         method=outcome.method, seconds=round(seconds, 3), status=status,  # type: ignore[arg-type]
                         review=outcome.review)
    if status == "skipped":  # not graded in this run (--skip-training): counts for nothing either way
        result.score = result.max_score = 0.0
        return result
    if outcome.method == "undecided" and result.review is None:
        # The symbolic comparison could not decide (a verdict with the rubric's credit for that case): worth a look.
        result.review = "the equivalence of the answer could not be decided automatically"
    if status in ("passed", "manual"):
        return result
    if status == "grader_error":  # nothing deducted automatically: the points stay until someone reviews it
        result.review = result.review or "grader error"
        return result
    if status == "undecided":  # no verdict: 0 for now (never points by itself: a submission could cause it)
        result.score = 0.0
        result.review = result.review or "no verdict was reached"
        return result
    items = [AppliedItem(i.finding, i.points, i.message) for i in spec.rubric_items if i.finding in outcome.findings]
    if not items:
        kept = spec.points * min(max(outcome.credit, 0.0), 1.0)
        lost = spec.points - kept
        finding = outcome.findings[0] if outcome.findings else "incorrect"
        label = finding.replace("_", " ").capitalize() + (" (partial credit)" if kept > 0 else "")
        items = [AppliedItem(finding, -round(lost, 6), label)] if lost > 0 else []
    result.items = items
    result.score = round(max(0.0, min(spec.points, spec.points + sum(i.points for i in items))), 6)
    return result


def _exception_text(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def timed_run(check: Check, ctx: Context) -> CheckResult:
    """Run a check; an exception costs that check only, and whose fault it is decides its status.

    The rule, so that a submission can never raise a "grader error" on purpose
    to keep its points:

    - A `GraderFault` (the check says its own side failed, e.g. inside
      `grader_side`) is a ``grader_error``.
    - Any other exception raised *before* the check read anything the
      submission supplied (its sandbox, its load report, its answers: see
      `Context.__getattribute__`) comes from the grader's own code on its own
      inputs: a ``grader_error``, points kept, listed for review.
    - Any other exception raised *after* that may have been provoked by a
      student value (an odd type, a huge or nested reply, a number that makes
      the parent's comparison raise, the sandbox failing on its reply): it is
      the student's ``wrong_type`` failure, with the exception in the
      feedback. It is also listed for review, in case it is a grader bug after
      all; the review can only ever add points, never the student's code.
    """
    started = time.perf_counter()
    ctx.begin_check()
    try:
        outcome = check.run(ctx)
    except GraderFault as exc:
        outcome = _grader_error_outcome(exc)
    except Exception as exc:
        if ctx.student_contact:
            outcome = Outcome.fail(
                "wrong_type",
                f"The grader could not use what your code supplied for this check ({_exception_text(exc)}). "
                "Return the types, shapes and values the assignment asks for.")
            outcome.review = f"the grader raised on this submission's value: {_exception_text(exc)}"
        else:
            outcome = _grader_error_outcome(exc)
    return finish(check.spec, outcome, time.perf_counter() - started)


def _grader_error_outcome(exc: BaseException) -> Outcome:
    # The exception text goes to the instructor only (it may name the reference's internals).
    return Outcome.grader_error(
        "The grader itself failed on this check; this is not your fault, and it costs you nothing.",
        review=f"grader error: {_exception_text(exc)}")


# --- comparing values ------------------------------------------------------------------------


def shape_str(shape: Any) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def compare_arrays(actual: Any, expected: np.ndarray, *, rtol: float, atol: float, what: str) -> str | None:
    """None when equal within tolerance, else a sentence: expected versus actual."""
    if not isinstance(actual, np.ndarray):
        return f"{what} should be a tensor of shape {shape_str(expected.shape)}, got {type(actual).__name__}"
    if actual.dtype.kind not in "biuf":
        return f"{what} has dtype {actual.dtype}; a numeric tensor was expected"
    if actual.shape != expected.shape:
        return f"{what} has shape {shape_str(actual.shape)}, expected {shape_str(expected.shape)}"
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if not np.all(np.isfinite(a)) and np.all(np.isfinite(e)):
        return f"{what} contains NaN or infinite values"
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        n = int(bad.sum())
        return (f"{what} differs from the expected value at {n} of {bad.size} entries; "
                f"e.g. at index {idx}: got {a[idx]:.6g}, expected {e[idx]:.6g}")
    return None


def resolve_dims(dims: list[Any], case: dict[str, Any]) -> tuple[int, ...]:
    out = []
    for d in dims:
        v = case[d] if isinstance(d, str) else d
        out.append(int(v))
    return tuple(out)


def make_tensor(spec: dict[str, Any], case: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """A random input described by the rubric: {tensor: [dims], dist: normal|uniform|sign|positive, dtype}."""
    shape = resolve_dims(spec["tensor"], case)
    dist = spec.get("dist", "normal")
    if dist == "normal":
        x = rng.standard_normal(shape) * spec.get("scale", 1.0)
    elif dist == "uniform":
        x = rng.uniform(spec.get("low", 0.0), spec.get("high", 1.0), shape)
    elif dist == "sign":
        x = rng.choice([-1.0, 1.0], size=shape)
    elif dist == "positive":
        x = rng.uniform(0.1, 2.0, shape)
    elif dist == "simplex":
        # Probability vectors along the last axis; zero_fraction of the entries exactly 0 (for 0 log 0).
        x = rng.uniform(0.05, 1.0, shape)
        if spec.get("zero_fraction"):
            x = np.where(rng.uniform(size=shape) < float(spec["zero_fraction"]), 0.0, x)
            x[..., 0] = np.where(x.sum(axis=-1) == 0, 1.0, x[..., 0])  # never an all-zero row
        x = x / x.sum(axis=-1, keepdims=True)
    else:
        raise ValueError(f"unknown dist {dist!r}")
    return x.astype(spec.get("dtype", "float32"))


def make_args(arg_specs: list[dict[str, Any]], case: dict[str, Any], rng: np.random.Generator) -> list[Any]:
    """Arguments from the rubric: {tensor: ...} drawn at random, {array: [...]} a literal tensor, {var: name}
    from the case ({var: name, optional: true} is left out, with the arguments after it, when the case has no
    such name: the student's default is then used), {value: v} a plain value."""
    args: list[Any] = []
    for a in arg_specs:
        if "tensor" in a:
            args.append(make_tensor(a, case, rng))
        elif "array" in a:
            args.append(np.asarray(a["array"], dtype=a.get("dtype", "float32")))
        elif "var" in a:
            if a.get("optional") and a["var"] not in case:
                break
            args.append(case[a["var"]])
        else:
            args.append(a.get("value"))
    return args


def case_label(case: dict[str, Any]) -> str:
    if "label" in case:  # a case with its own literal arguments names itself
        return str(case["label"])
    shown = {k: v for k, v in case.items() if k != "args"}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) if shown else "the test input"


def grid_cases(grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, e.g. {t: [0, 10], s: [3]} -> [{t: 0, s: 3}, {t: 10, s: 3}]."""
    if not grid:
        return []
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)

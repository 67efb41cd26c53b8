"""Kind ``unittest``: an instructor's unittest file, Gradescope style, run in the trusted parent.

Many courses already have Gradescope autograders written as `unittest`
test cases with gradescope-utils' decorators (``@weight``, ``@number``,
``@visibility``, ``@partial_credit``, ``@hide_errors``). This kind runs such
a file *here*, in the trusted parent, never in the sandbox: each test gets

- ``self.student``: a `StudentProxy` whose ``call(name, *args, **kwargs)``
  runs the submission's function in the sandbox and returns plain data
  (tensors come back as numpy arrays), and whose ``answer("q2.dL_dw3")``
  reads an answer from answers.yaml / the ANSWERS cell;
- ``self.reference``: the rubric's reference module;
- ``self.rng``: a numpy Generator seeded from the run's seed and the test's name.

Each test becomes one `CheckResult` (id ``<check id>.<test name without
test_>``) with its weight as points, its ``@number`` in the title, its
``@visibility``, and ``@partial_credit``'s ``set_score``. Two things
gradescope-utils' own runner does not do are done here: every test has a
time limit (``test_timeout_s``), and every failing ``subTest`` is reported,
not only the first.

Whose fault a problem is follows `grader.checks.base.timed_run`'s rule: an
assertion failure, a student call that fails or times out, or an exception
raised after the test touched the submission is the student's (a failure; an
unexpected exception is also listed for review); an exception raised before
any contact with the submission, a test file that cannot be imported, or
weights that do not add up to the check's points is the grader's
(``grader_error``: points kept, listed for review).

Options (``params``):

- ``file`` (str, required): the test file, relative to the rubric's folder
  (e.g. ``hw4_tests/test_p6_relu.py``); it must not leave that folder.
- ``test_timeout_s`` (number, default: the check's ``timeout_s`` or the
  rubric's ``limits.timeout_s``): the time limit of each test, student calls included.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import threading
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from grader.checks import register
from grader.checks.answer_keys import lookup_answer
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome, finish
from grader.checks.options import REQUIRED, Option
from grader.results import CheckResult
from grader.rubric.model import CheckSpec

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
GRACE_S = 2.0  # how long past its limit a test may take to notice (a student call ends at the limit itself)
MAX_MESSAGE = 1500  # one failure's message in the feedback; longer ones keep head and tail
FINDINGS = (*COMMON_FINDINGS, "test_failed")


class StudentFailure(AssertionError):
    """A call into the submission failed (it raised, returned something unusable, or is missing): the test fails."""

    finding = "error"


class StudentTimeout(StudentFailure):
    """A call into the submission did not return within the test's time limit."""

    finding = "timeout"


class ProxyClosed(Exception):
    """The test outlived its time limit and was abandoned: it may no longer reach the sandbox."""


def _plain(value: Any) -> Any:
    """Arguments as the wire format carries them: torch tensors become numpy arrays (no torch import needed here)."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class StudentProxy:
    """What a test sees of the submission. Every call goes through the sandbox and comes back as plain data."""

    def __init__(self, ctx: Context, spec: CheckSpec, deadline: float) -> None:
        self._ctx, self._spec, self._deadline = ctx, spec, deadline
        self._lock = threading.Lock()
        self.touched = False  # whether the test reached the submission (decides whose fault an exception is)
        self.closed = False

    def __repr__(self) -> str:
        return f"StudentProxy(check={self._spec.id!r})"

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``name(*args, **kwargs)`` in the sandbox; tensors in the result come back as numpy arrays."""
        if not isinstance(name, str) or not name:
            raise TypeError("student.call needs the name of a function in the submission, e.g. 'loss_function'")
        message = {"op": "call", "target": name, "args": _plain(list(args)), "kwargs": _plain(kwargs)}
        return self._request(message, f"Calling {name}")["value"]

    def answer(self, key: str) -> Any:
        """The student's answer under a dotted key (``q2.dL_dw3``) from answers.yaml or the ANSWERS cell."""
        with self._lock:
            if self.closed:
                raise ProxyClosed("this test ran out of time")
            self.touched = True
            value, missing = lookup_answer(self._ctx, key)
        if missing is not None:
            failure = StudentFailure(" ".join(missing.feedback))
            failure.finding = "missing"
            raise failure
        return value

    def _request(self, message: dict[str, Any], what: str) -> dict[str, Any]:
        with self._lock:  # one request at a time; none at all once the test was abandoned
            if self.closed:
                raise ProxyClosed("this test ran out of time")
            self.touched = True
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise StudentTimeout(f"{what}: the test's time limit was used up before this call.")
            reply = self._ctx.request(self._spec, message, timeout=left)
        if not reply.ok:
            failure = (StudentTimeout if reply.kind == "timeout" else StudentFailure)(f"{what} failed: {reply.describe()}")
            if reply.kind in ("not_loaded", "not_plain"):
                failure.finding = "not_loaded" if reply.kind == "not_loaded" else "wrong_type"
            if reply.kind == "student" and "is not defined in the submission" in reply.message:
                failure.finding = "missing"
            raise failure
        if not isinstance(reply.value, dict) or "value" not in reply.value:
            raise StudentFailure(f"{what}: the sandbox sent back no value.")
        return reply.value


@dataclass
class TestRecord:
    """What happened in one test method (its subtests included)."""

    method: str
    failures: list[str] = field(default_factory=list)  # the student's: assertion failures, failed student calls
    errors: list[tuple[str, bool]] = field(default_factory=list)  # (text, after contact with the submission)
    findings: list[str] = field(default_factory=list)
    skipped: str | None = None
    timed_out: bool = False


class _Collector(unittest.TestResult):
    """A TestResult that keeps every failure, subtests included (unittest's default result stops at none either,
    but gradescope-utils' JSON runner reports only a test's first failure)."""

    def __init__(self, record: TestRecord, proxy: StudentProxy) -> None:
        super().__init__()
        self.record, self.proxy = record, proxy

    def _note(self, test: Any, err: Any) -> None:
        exc = err[1]
        label = f" [{test._subDescription()}]" if isinstance(test, unittest.case._SubTest) else ""
        text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc)
        text = _cut(text.strip() or type(exc).__name__)
        if isinstance(exc, ProxyClosed):
            return
        if isinstance(exc, AssertionError):
            self.record.failures.append(f"Failed{label}: {text}")
            self.record.findings.append(getattr(exc, "finding", "test_failed"))
        else:
            self.record.errors.append((f"Error{label}: {text}", self.proxy.touched))

    def addFailure(self, test: Any, err: Any) -> None:
        self._note(test, err)

    def addError(self, test: Any, err: Any) -> None:
        self._note(test, err)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            self._note(subtest, err)

    def addSkip(self, test: Any, reason: str) -> None:
        self.record.skipped = reason or "skipped"

    def addUnexpectedSuccess(self, test: Any) -> None:
        self.record.failures.append("Failed: the test is marked as an expected failure but passed.")
        self.record.findings.append("test_failed")


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters left out ...]\n{text[-half:]}"


@dataclass(frozen=True)
class TestInfo:
    """One test method and its gradescope-utils decorations."""

    case: unittest.TestCase
    method: str
    weight: float
    number: str | None
    visibility: str
    hide_errors: str | None
    title: str

    @property
    def function(self) -> Any:
        return getattr(type(self.case), self.method)


class TestFileError(Exception):
    """The test file cannot be used (the course's fault): carries the sentence for the instructor."""


def _natural(number: str | None) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", number or "~"))


@register
class UnittestCheck(Check):
    kind = "unittest"
    findings = FINDINGS
    needs_target = False
    needs_reference = False
    options = (
        Option("file", {"type": "string", "pattern": r"\.py$"}, "the unittest file, relative to the rubric's folder",
               REQUIRED),
        Option("test_timeout_s", {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
               "time limit of each test in seconds (default: the check's timeout)"),
    )

    def __init__(self, spec: CheckSpec) -> None:
        super().__init__(spec)
        self._module: Any = None  # the test file, imported afresh by `load_tests` for each grading

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        file = spec.params.get("file")
        if file is not None:
            if not isinstance(file, str) or not file.endswith(".py"):
                problems.append(("params.file", "params.file should be the path of a .py test file, relative to the rubric"))
            elif PurePosixPath(file).is_absolute() or ".." in PurePosixPath(file).parts:
                problems.append(("params.file", "params.file must be inside the rubric's folder (no absolute path, no '..')"))
        limit = spec.params.get("test_timeout_s")
        if limit is not None and not (isinstance(limit, (int, float)) and not isinstance(limit, bool) and 0 < limit <= 3600):
            problems.append(("params.test_timeout_s", "params.test_timeout_s should be a number of seconds, above 0 and at most 3600"))
        return problems

    @classmethod
    def support_files(cls, spec: CheckSpec) -> list[str]:
        """Files beside the rubric this check needs at grading time (a Gradescope build ships them)."""
        return [spec.params["file"]] if isinstance(spec.params.get("file"), str) else []

    # --- loading the test file (the course's code: trusted, but it may be broken) ---------------------

    @classmethod
    def validate_files(cls, spec: CheckSpec, rubric_folder: Path) -> list[tuple[str, str]]:
        """What `grader rubric validate` and `grader gradescope build` find wrong with the test file (it is
        imported: the course's code). Grading does not refuse the rubric for it: the check alone becomes a
        grader error, points kept."""
        if cls.validate_spec(spec):
            return []  # already reported
        try:
            cls(spec).read_tests(rubric_folder / str(spec.params["file"]))
        except TestFileError as exc:
            return [("params.file", str(exc))]
        return []

    def test_file(self, ctx: Context) -> Path:
        return ctx.rubric.path.resolve().parent / str(self.spec.params["file"])

    def load_tests(self, ctx: Context) -> list[TestInfo]:
        return self.read_tests(self.test_file(ctx))

    def read_tests(self, path: Path) -> list[TestInfo]:
        if not path.is_file():
            raise TestFileError(f"the test file {path} does not exist")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        module_spec = importlib.util.spec_from_file_location(f"grader_unittest_{digest}", path)
        if module_spec is None or module_spec.loader is None:
            raise TestFileError(f"the test file {path} cannot be imported")
        module = importlib.util.module_from_spec(module_spec)  # a fresh module per grading: no state carried over
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise TestFileError(f"the test file {path} failed to import: {type(exc).__name__}: {exc}") from None
        self._module = module
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        tests = [self._info(case) for case in _flatten(suite)]
        if not tests:
            raise TestFileError(f"the test file {path} defines no unittest.TestCase tests")
        total = sum(t.weight for t in tests)
        if not math.isclose(total, self.spec.points, abs_tol=1e-9):
            raise TestFileError(f"the tests' weights in {path.name} add up to {total:g}, but the rubric gives check "
                                f"{self.spec.id} {self.spec.points:g} points: make them equal")
        names = [t.method for t in tests]
        if len(set(names)) != len(names):
            raise TestFileError(f"two test classes in {path.name} define the same test method name; result ids "
                                f"come from the method names, so rename one")
        return sorted(tests, key=lambda t: _natural(t.number))

    def _info(self, case: unittest.TestCase) -> TestInfo:
        if type(case).__name__ == "_FailedTest":  # unittest's stand-in for a test class it could not load
            raise TestFileError(f"a test in {self.spec.params['file']} could not be loaded: {case._exception}")
        method = case._testMethodName
        fn = getattr(type(case), method)
        weight = getattr(fn, "__weight__", 0.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise TestFileError(f"test {method} has weight {weight!r}: give @weight a number of points, at least 0")
        visibility = getattr(fn, "__visibility__", None) or self.spec.visibility
        if visibility not in VISIBILITIES:
            raise TestFileError(f"test {method} has @visibility({visibility!r}); use one of {', '.join(VISIBILITIES)}")
        number = getattr(fn, "__number__", None)
        doc = (fn.__doc__ or "").strip().splitlines()
        title = doc[0].strip() if doc else method.removeprefix("test_").replace("_", " ")
        return TestInfo(case=case, method=method, weight=float(weight), number=number, visibility=visibility,
                        hide_errors=getattr(fn, "__hide_errors__", None),
                        title=f"[{number}] {title}" if number else title)

    # --- running ---------------------------------------------------------------------------------------

    def run(self, ctx: Context) -> Outcome:
        """One outcome for the whole file (used only where a single result is wanted); see `run_each`."""
        results = self.run_each(ctx)
        if len(results) == 1 and results[0].check_id == self.spec.id:  # the file could not be used
            return Outcome.grader_error(*results[0].feedback, review=results[0].review)
        lost = [r for r in results if r.status == "failed"]
        return Outcome(passed=not lost, feedback=[f"{r.title}: {r.score:g}/{r.max_score:g}" for r in results],
                       findings=["test_failed"] if lost else [],
                       credit=sum(r.score for r in results) / self.spec.points if self.spec.points else 0.0)

    def run_each(self, ctx: Context) -> list[CheckResult]:
        """One `CheckResult` per test; a test file that cannot be used is one grader error for the whole check."""
        started = time.perf_counter()
        try:
            tests = self.load_tests(ctx)
        except TestFileError as exc:
            return [finish(self.spec, Outcome.grader_error(
                "The grader could not run this check's tests; this is not your fault, and it costs you nothing.",
                review=f"unittest check: {exc}"), time.perf_counter() - started)]
        # unittest's suites run the class and module fixtures; running tests one at a time, they are run here.
        problem = _fixture(getattr(self._module, "setUpModule", None), "setUpModule")
        ready: dict[type, str | None] = {}
        results = []
        for test in tests:
            cls = type(test.case)
            if cls not in ready:
                ready[cls] = problem or _fixture(cls.setUpClass, f"{cls.__name__}.setUpClass")
            if ready[cls]:
                results.append(self._result(test, TestRecord(test.method, errors=[(str(ready[cls]), False)]),
                                            StudentProxy(ctx, self.spec, 0.0), None, 0.0, self._limit(ctx)))
            else:
                results.append(self._run_one(ctx, test))
        for cls, failed in ready.items():
            if not failed:
                _fixture(cls.tearDownClass, f"{cls.__name__}.tearDownClass")
        if not problem:
            _fixture(getattr(self._module, "tearDownModule", None), "tearDownModule")
        return results

    def _test_spec(self, test: TestInfo) -> CheckSpec:
        return CheckSpec(id=f"{self.spec.id}.{test.method.removeprefix('test_')}", kind=self.kind,
                         question=self.spec.question, title=test.title, points=test.weight,
                         visibility=test.visibility, path=self.spec.path)  # the test's weight is its whole rubric

    def results_not_run(self, ctx: Context, outcome: Outcome) -> list[CheckResult]:
        """`outcome` (no code, code that did not load, the time budget spent...) for each test, as one result per
        test: the results' ids and points do not depend on what the submission did."""
        try:
            tests = self.load_tests(ctx)
        except TestFileError:
            return [finish(self.spec, outcome)]
        return [finish(self._test_spec(test), outcome) for test in tests]

    def _limit(self, ctx: Context) -> float:
        return float(self.spec.params.get("test_timeout_s") or ctx.timeout(self.spec))

    def _run_one(self, ctx: Context, test: TestInfo) -> CheckResult:
        started = time.perf_counter()
        limit = self._limit(ctx)
        sandbox = ctx.sandbox
        if sandbox is not None and not sandbox.alive():
            # An earlier test's timeout stopped the child: load the submission again before this test's clock starts.
            sandbox.request({"op": "ping"}, timeout=ctx.timeout(self.spec))
        proxy = StudentProxy(ctx, self.spec, time.monotonic() + limit)
        record = TestRecord(test.method)
        case = test.case
        case.student = proxy  # type: ignore[attr-defined]
        case.reference = ctx.reference  # type: ignore[attr-defined]
        digest = hashlib.sha256(f"{ctx.seed}:{self.spec.id}:{test.method}".encode()).digest()
        case.rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))  # type: ignore[attr-defined]
        fn = test.function
        if hasattr(fn, "__score__"):
            del fn.__score__  # a score left by an earlier grading in this process must not count for this one
        collector = _Collector(record, proxy)
        # The test runs in a thread so that a test stuck in the course's own code can be abandoned at its limit;
        # a test waiting on the sandbox returns by itself then (the request's timeout is the time left).
        worker = threading.Thread(target=case.run, args=(collector,), name=f"unittest-{test.method}", daemon=True)
        worker.start()
        worker.join(limit + GRACE_S)
        if worker.is_alive():
            with proxy._lock:
                proxy.closed = True  # it may never reach the sandbox again
            record.timed_out = True
        return self._result(test, record, proxy, getattr(fn, "__score__", None), time.perf_counter() - started, limit)

    def _result(self, test: TestInfo, record: TestRecord, proxy: StudentProxy, score: Any, seconds: float,
                limit: float) -> CheckResult:
        spec = self._test_spec(test)
        fault = [text for text, touched in record.errors if not touched]
        student_errors = [text for text, touched in record.errors if touched]
        if record.timed_out and not proxy.touched:
            outcome = Outcome.grader_error(
                "The grader could not finish this test; this is not your fault, and it costs you nothing.",
                review=f"unittest {test.method}: still running after its {limit:g} s limit and it never called "
                       "the submission (the test's own code is too slow or stuck)")
        elif record.timed_out:  # stuck after using the submission: like an exception after contact, the student's
            outcome = Outcome.fail("timeout", f"The test did not finish within its {limit:g} s time limit "
                                              "(your code was still running, or too slow).")
        elif fault and not record.failures and not student_errors:
            outcome = Outcome.grader_error(
                "The grader's test failed before it used your code; this is not your fault, and it costs you nothing.",
                review=f"unittest {test.method}: " + " | ".join(fault))
        elif record.skipped is not None and not (record.failures or record.errors):
            outcome = Outcome(passed=False, skipped=True, feedback=[f"Skipped: {record.skipped}"])
        elif record.failures or record.errors:
            shown = record.failures + student_errors + fault
            if test.hide_errors:
                shown = [str(test.hide_errors)]
            finding = next((f for f in record.findings if f != "test_failed"), "test_failed")
            if student_errors and not record.failures:
                finding = "wrong_type"
            outcome = Outcome(passed=False, findings=[finding], feedback=shown,
                              credit=self._credit(score, test.weight))
            if student_errors or fault:
                outcome.review = f"unittest {test.method} raised after calling the submission: " + " | ".join(
                    student_errors + fault)
        else:
            credit = self._credit(score, test.weight)
            if score is not None and test.weight > 0 and credit < 1.0:  # @partial_credit set a score below the weight: a partial pass
                outcome = Outcome(passed=False, findings=["test_failed"], credit=credit,
                                  feedback=[f"Partial credit: {credit * test.weight:g} of {test.weight:g} points."])
            else:
                outcome = Outcome(passed=True, feedback=["Passed."])
        if isinstance(score, (int, float)) and not isinstance(score, bool) and not record.timed_out and outcome.status is None:
            if not 0 <= score <= test.weight + 1e-9:
                outcome.review = (outcome.review or "") + f" set_score({score:g}) is outside 0..{test.weight:g}; clamped."
        return finish(spec, outcome, seconds)

    @staticmethod
    def _credit(score: Any, weight: float) -> float:
        """The fraction of the weight a @partial_credit score keeps (0 when there is none or it is not a number)."""
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score) or weight <= 0:
            return 0.0
        return min(max(float(score) / weight, 0.0), 1.0)


def _fixture(function: Any, what: str) -> str | None:
    """Run a class or module fixture of the test file; None when it ran (or there is none), else what went wrong."""
    if function is None:
        return None
    try:
        function()
    except Exception as exc:
        return f"{what} failed: {type(exc).__name__}: {_cut(str(exc), 300)}"
    return None


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    out: list[unittest.TestCase] = []
    for item in suite:
        out.extend(_flatten(item) if isinstance(item, unittest.TestSuite) else [item])
    return out


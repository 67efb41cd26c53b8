"""Gradescope ``results.json``, per Gradescope's autograder specification.

The file is validated against the schema kept in grader/schemas before it is
written; it is written atomically (temp file + rename) and, whatever
happened, a valid file is written (`write_failure` for when grading itself
could not run).

Statuses: Gradescope's per-test ``status`` is only ``passed`` or ``failed``,
so the grader's own status (grader.results) is written three ways: as the
first line of the test's output when it is not a plain pass or fail (what the
student reads), in the test's ``extra_data.status`` (kept by Gradescope, not
shown), and counted in the top-level ``extra_data``. A ``grader_error`` keeps
its points and shows as ``failed`` so that nobody mistakes it for a verified
pass; ``manual`` and ``skipped`` show as ``passed`` (nothing was lost).

Hidden checks: the top-level ``score`` is the whole score, hidden checks
included (it is what Gradescope records as the grade, as the instructor
wants). Every text a student can read is computed from the checks shown to
students now (``visibility: visible``) only: the top-level ``output`` says
"X / Y points on the checks shown here" over those checks, and no visible
message names a hidden check. Gradescope itself never shows a hidden test,
and shows ``after_due_date`` / ``after_published`` ones only then. The grader
process's stdout (which prints the whole total) is ``stdout_visibility:
hidden``. Whether students see the recorded total before grades are
published is Gradescope's setting for the assignment; a course with hidden
checks should keep it hidden until then.
"""
from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from grader.report.text import clean_text
from grader.results import REVIEW_STATUSES, STATUSES, CheckResult, GradingRun

MAX_OUTPUT = 20000
#: The grader's status -> Gradescope's two statuses.
GRADESCOPE_STATUS = {"passed": "passed", "manual": "passed", "skipped": "passed",
                     "failed": "failed", "grader_error": "failed", "undecided": "failed"}
STATUS_LINE = {
    "grader_error": "Status: grader error (points kept until the course staff review this check).",
    "undecided": "Status: not decided (0 for now; the course staff will review this check).",
}


def schema() -> dict[str, Any]:
    return json.loads(resources.files("grader").joinpath("schemas/gradescope_results.schema.json").read_text())


def _cut(text: str, limit: int = MAX_OUTPUT) -> str:
    """Long output keeps its head and tail with a visible marker (nbgrader's habit)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n[... {len(text) - limit} characters cut ...]\n" + text[-half:]


def test_output(result: CheckResult) -> str:
    lines = [STATUS_LINE[result.status]] if result.status in STATUS_LINE else []
    lines += [f"{item.label()}" for item in result.items]
    lines += [f for f in result.feedback if f not in lines]
    if result.method:
        lines.append(f"(decided by: {result.method})")
    return _cut("\n".join(lines))


def _test_extra(result: CheckResult) -> dict[str, Any]:
    extra: dict[str, Any] = {"status": result.status}
    if result.review:
        extra["review"] = result.review
    return extra


def summary_lines(run: GradingRun) -> list[str]:
    """The top-level text a student reads: totals and flags over the visible checks only."""
    visible = [r for r in run.results if not r.hidden]
    lines = [f"Assignment {run.assignment}: {run.visible_score:g} / {run.visible_max_score:g} points"
             + (" on the checks shown here; further checks are graded separately." if len(visible) < len(run.results)
                else ".")]
    errors = [r.check_id for r in visible if r.status == "grader_error"]
    undecided = [r.check_id for r in visible if r.status == "undecided"]
    if errors:
        lines.append(f"Grader errors (points kept until the course staff review them): {', '.join(errors)}.")
    if undecided:
        lines.append(f"Not decided (0 for now; the course staff will review them): {', '.join(undecided)}.")
    return lines


def to_results(run: GradingRun) -> dict[str, Any]:
    run = run.cleaned()
    tests = []
    numbers: dict[str, int] = {}
    question_index: dict[str, int] = {}
    for r in run.results:
        qn = question_index.setdefault(r.question, len(question_index) + 1)
        numbers[r.question] = numbers.get(r.question, 0) + 1
        tests.append({
            "name": r.name,
            "number": f"{qn}.{numbers[r.question]}",
            "score": float(r.score),
            "max_score": float(r.max_score),
            "status": GRADESCOPE_STATUS[r.status],
            "output": test_output(r),
            "visibility": r.visibility,
            "extra_data": _test_extra(r),
        })
    header = summary_lines(run) + [f"Student code ran isolated at level: {run.isolation}."]
    header += run.load_messages
    counts = {s: len(run.with_status(s)) for s in STATUSES}
    return {
        "score": float(run.score),
        "execution_time": round(float(run.seconds), 3),
        "output": _cut("\n".join(header)),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {
            "statuses": counts,
            "max_score": float(run.max_score),
            "visible_score": float(run.visible_score),
            "visible_max_score": float(run.visible_max_score),
            "review": [{"check": r.check_id, "status": r.status, "reason": r.review or r.status}
                       for r in run.to_review()],
        },
        "tests": tests,
    }


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())  # the rename below must never expose a half-written file after a crash
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(run: GradingRun, path: Path) -> dict[str, Any]:
    data = to_results(run)
    try:
        jsonschema.validate(data, schema())
    except jsonschema.ValidationError as exc:  # a grader bug: still leave a valid file behind
        return write_failure(path, f"internal error: results did not match the Gradescope format ({exc.message})")
    write_atomic(path, data)
    return data


DID_NOT_FINISH = "grading did not finish"


def write_failure(path: Path, message: str, execution_time: float = 0.0) -> dict[str, Any]:
    """A valid results file saying grading could not run (score 0), for when nothing else can be written.

    Marked in ``extra_data`` as a grader-side failure, for review: a score of 0
    here is not a verdict on the submission.
    """
    data = {"score": 0.0, "execution_time": round(execution_time, 3), "visibility": "visible",
            "output": f"The autograder could not grade this submission: {clean_text(message)} "
                      "Please contact the course staff.",
            "extra_data": {"statuses": {s: 0 for s in STATUSES}, "grading_failed": clean_text(message),
                           "review": [{"check": "*", "status": "undecided", "reason": clean_text(message)}]},
            "tests": []}
    write_atomic(path, data)
    return data


def write_not_finished(path: Path) -> dict[str, Any]:
    """Written before grading starts, replaced atomically at the end: what is left if the grader is killed."""
    return write_failure(path, f"{DID_NOT_FINISH} (the grading process was stopped before it could write "
                               "its results).")


__all__ = ["DID_NOT_FINISH", "GRADESCOPE_STATUS", "REVIEW_STATUSES", "schema", "summary_lines", "to_results",
           "write_atomic", "write_failure", "write_not_finished", "write_results"]

"""Gradescope ``results.json``, per Gradescope's autograder specification.

The file is validated against the schema kept in grader/schemas before it is
written; it is written atomically (temp file + rename) and, whatever
happened, a valid file is written (`write_failure` for when grading itself
could not run).
"""
from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from grader.results import GradingRun

MAX_OUTPUT = 20000


def schema() -> dict[str, Any]:
    return json.loads(resources.files("grader").joinpath("schemas/gradescope_results.schema.json").read_text())


def _cut(text: str, limit: int = MAX_OUTPUT) -> str:
    """Long output keeps its head and tail with a visible marker (nbgrader's habit)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n[... {len(text) - limit} characters cut ...]\n" + text[-half:]


def test_output(result) -> str:
    lines = [f"{item.label()}" for item in result.items]
    lines += result.feedback
    if result.method:
        lines.append(f"(decided by: {result.method})")
    return _cut("\n".join(lines))


def to_results(run: GradingRun) -> dict[str, Any]:
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
            "status": "passed" if (r.passed or r.manual or r.skipped) else "failed",
            "output": test_output(r),
            "visibility": r.visibility,
        })
    header = [f"Assignment {run.assignment}: {run.score:g} / {run.max_score:g} points.",
              f"Student code ran isolated at level: {run.isolation}."]
    header += run.load_messages
    return {
        "score": float(run.score),
        "execution_time": round(float(run.seconds), 3),
        "output": _cut("\n".join(header)),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def write_results(run: GradingRun, path: Path) -> dict[str, Any]:
    data = to_results(run)
    try:
        jsonschema.validate(data, schema())
    except jsonschema.ValidationError as exc:  # a grader bug: still leave a valid file behind
        return write_failure(path, f"internal error: results did not match the Gradescope format ({exc.message})")
    write_atomic(path, data)
    return data


def write_failure(path: Path, message: str, execution_time: float = 0.0) -> dict[str, Any]:
    """A valid results file saying grading could not run (score 0), for when nothing else can be written."""
    data = {"score": 0.0, "execution_time": round(execution_time, 3), "visibility": "visible",
            "output": f"The autograder could not grade this submission: {message} Please contact the course staff.",
            "tests": []}
    write_atomic(path, data)
    return data

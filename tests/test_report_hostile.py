"""Hostile submissions aimed at the reports: hidden_leak and escape_sequences (submissions_example/hostile/).

Both are also graded by tests/test_hostile.py with the suite's rubric, like every hostile example; here
each is graded the way its attack needs: hidden_leak with a rubric whose p2 is hidden, beside the correct
solution; escape_sequences through the real command line, terminal report included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, gradescope_schema
from grader.report.text import is_clean
from grader.sandbox import isolation
from hostile_helpers import CORRECT, HOSTILE, SEED, grade_in_process, suite_course

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module", autouse=True)
def _bwrap():
    if not isolation.bwrap_works():
        pytest.skip("bubblewrap cannot start here; the hostile suite grades inside it")


def _visible(results: dict) -> dict:
    """What a student is shown now: the top-level output and the visible tests (Gradescope hides the others)."""
    return {"output": results["output"],
            "tests": [{k: t[k] for k in ("name", "number", "score", "max_score", "status", "output")}
                      for t in results["tests"] if t["visibility"] == "visible"]}


def test_a_hidden_check_cannot_be_read_off_any_visible_total(tmp_path):
    from grader.rubric.load import load_rubric

    rubric_path = suite_course(tmp_path / "course")
    data = yaml.safe_load(rubric_path.read_text())
    p2 = next(c for q in data["questions"] for c in q["checks"] if c["id"] == "p2")
    p2["visibility"] = "hidden"
    rubric_path.write_text(yaml.safe_dump(data, sort_keys=False))
    rubric = load_rubric(rubric_path)
    leak = grade_in_process("hidden_leak", "bubblewrap", workdir=tmp_path / "leak", rubric=rubric)
    right = grade_in_process("correct", "bubblewrap", workdir=tmp_path / "right", rubric=rubric, source=CORRECT)
    for g in (leak, right):
        jsonschema.validate(g.results, gradescope_schema())
    # The recorded grade counts the hidden check: the instructor's total.
    assert right.results["score"] - leak.results["score"] == p2["points"] == 15
    hidden = next(t for t in leak.results["tests"] if t["name"].startswith("p2 "))
    assert hidden["visibility"] == "hidden" and hidden["score"] == 0 and "differs from the expected" in hidden["output"]
    # Everything a student reads is the same whether the hidden check passed or failed.
    assert _visible(leak.results) == _visible(right.results)
    assert leak.results["output"].startswith("Assignment hw4: 75 / 75 points on the checks shown here")
    for text in (leak.results["output"], *[t["output"] for t in _visible(leak.results)["tests"]]):
        assert "p2" not in text and "/ 90" not in text

    from io import StringIO

    from rich.console import Console

    from grader.report.terminal import print_run
    from grader.results import GradingRun

    def student_view(record: dict) -> str:
        console = Console(file=StringIO(), width=160, color_system=None)
        print_run(GradingRun.from_dict({**record, "submission": "submission"}), console, student=True)
        return console.file.getvalue().rsplit("(isolation", 1)[0]  # the wall time differs

    assert student_view(leak.record) == student_view(right.record)
    assert "Total: 75 / 75" in student_view(leak.record)


def test_escape_sequences_from_a_submission_never_reach_a_report_or_the_terminal(tmp_path):
    submission = tmp_path / "submission"
    import shutil

    shutil.copytree(HOSTILE / "escape_sequences", submission)
    results, record = tmp_path / "results" / "results.json", tmp_path / "record.json"
    rubric = suite_course(tmp_path / "course")
    proc = subprocess.run([sys.executable, "-m", "grader", "check", str(submission), "--rubric", str(rubric), "--seed",
                           str(SEED), "--results", str(results), "--json", str(record), "--skip-training", "-v",
                           "--isolation", "bubblewrap"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "GRADER_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(results.read_text())
    jsonschema.validate(data, gradescope_schema())
    tests = {t["name"].split()[0]: t for t in data["tests"]}
    assert tests["p3"]["status"] == "failed" and "ValueError" in tests["p3"]["output"]
    assert "All tests passed: 90 / 90" in tests["p3"]["output"]  # shown, as inert text
    assert data["score"] == sum(t["max_score"] for t in data["tests"]) - tests["p3"]["max_score"]
    assert "p4 graded: 10 / 10" in tests["p4"]["output"]

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from strings(k)
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    dirty = [s for s in strings(data) if not is_clean(s)] + [s for s in strings(json.loads(record.read_text()))
                                                             if not is_clean(s)]
    assert dirty == []
    assert is_clean(proc.stdout) and is_clean(proc.stderr)
    assert "All tests passed: 90 / 90" in proc.stdout and "\x1b" not in proc.stdout and "\u202e" not in proc.stdout

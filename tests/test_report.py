"""Result statuses, text cleaning and hidden checks, from `finish` through every reporter."""
from __future__ import annotations

import csv
import io
import json
import types

import jsonschema
import pytest
from rich.console import Console

from conftest import gradescope_schema
from grader.checks.base import Check, Context, GraderFault, Outcome, finish, grader_side, timed_run
from grader.report import gradescope, table, terminal
from grader.report.text import MARK, clean_text, is_clean
from grader.results import CheckResult, GradingRun
from grader.rubric.model import CheckSpec, RubricItem
from grader.sandbox.client import Reply

ESCAPES = "\x1b[2J\x1b[31mAll tests passed\x1b[0m \u202egnp.exe\u202c \x1b]0;owned\x07 \rback \x9b1m \x00 \x7f"


def spec(check_id: str = "p1", points: float = 10, visibility: str = "visible", **kw) -> CheckSpec:
    return CheckSpec(id=check_id, kind="numeric", question=check_id.split(".")[0], title=f"Check {check_id}",
                     points=points, visibility=visibility, **kw)


# --- clean_text -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,clean", [
    ("plain text, tabs\tand\nnewlines stay", "plain text, tabs\tand\nnewlines stay"),
    ("héllo, 日本語, ∑ x² stay", "héllo, 日本語, ∑ x² stay"),
    ("\x1b[2J\x1b[31mAll tests passed", f"{MARK}{MARK}All tests passed"),  # CSI sequences go whole
    ("\x1b]0;window title\x07after", f"{MARK}after"),  # OSC up to BEL
    ("\x1b]8;;http://x\x1b\\link", f"{MARK}link"),  # OSC up to ST
    ("\x9b31mred", f"{MARK}red"),  # the 8-bit CSI
    ("over\rwrite", f"over{MARK}write"),
    ("bell\x07 null\x00 del\x7f", f"bell{MARK} null{MARK} del{MARK}"),
    ("ab\u202ecd\u202c", f"ab{MARK}cd{MARK}"),  # RLO ... PDF
    ("\u2066x\u2069 \u200fy", f"{MARK}x{MARK} {MARK}y"),  # isolates, RLM
    ("trailing escape\x1b", f"trailing escape{MARK}"),
])
def test_clean_text_removes_sequences_and_controls_and_marks_the_spot(raw, clean):
    assert clean_text(raw) == clean
    assert is_clean(clean_text(raw)) and clean_text(clean_text(raw)) == clean_text(raw)


# --- statuses from finish ---------------------------------------------------------------------


def test_finish_gives_each_outcome_its_status_and_score():
    s = spec(rubric_items=(RubricItem("incorrect", -4, "Wrong value"),))
    assert (finish(s, Outcome(passed=True)).status, finish(s, Outcome(passed=True)).score) == ("passed", 10)
    failed = finish(s, Outcome.fail("incorrect", "got 3, expected 4"))
    assert (failed.status, failed.score, [i.label() for i in failed.items]) == ("failed", 6, ["-4 pts Wrong value"])
    skipped = finish(s, Outcome(passed=False, skipped=True))
    assert (skipped.status, skipped.score, skipped.max_score, skipped.passed) == ("skipped", 0, 0, True)
    manual = finish(s, Outcome(passed=False, manual=True))
    assert manual.status == "manual" and manual.manual and not manual.needs_review
    error = finish(s, Outcome.grader_error("The grader failed.", review="grader error: KeyError: 'x'"))
    assert (error.status, error.score, error.items, error.review) == ("grader_error", 10, [], "grader error: KeyError: 'x'")
    undecided = finish(s, Outcome.undecided("Not run: the time budget ran out."))
    assert (undecided.status, undecided.score, undecided.max_score) == ("undecided", 0, 10) and undecided.needs_review


class _Raises(Check):
    """A check that reads what the test says it reads, then raises what the test says."""

    kind = "raises_for_test"

    def __init__(self, s: CheckSpec, *, touch: str | None, exc: BaseException) -> None:
        super().__init__(s)
        self.touch, self.exc = touch, exc

    def run(self, ctx: Context) -> Outcome:
        if self.touch == "request":
            reply = ctx.request(self.spec, {"op": "call", "target": "f", "args": []})
            _ = reply.value["value"] + 1.0  # the parent's own arithmetic on the student's value
        elif self.touch == "answers":
            _ = float(ctx.answers["q1"])
        elif self.touch == "grader_side":
            reply = ctx.request(self.spec, {"op": "call", "target": "f", "args": []})
            with grader_side("the reference on the grader's inputs"):
                raise self.exc
        raise self.exc


class _FakeSandbox:
    def __init__(self, value) -> None:
        self.value = value

    def request(self, message, timeout):
        return Reply(ok=True, value={"value": self.value})


def _ctx(*, value=None, answers=None) -> Context:
    rubric = types.SimpleNamespace(limits={})
    return Context(rubric=rubric, reference=types.ModuleType("ref"), sandbox=_FakeSandbox(value), load=None,
                   answers=answers or {}, seed=1)


def test_an_exception_before_any_student_value_is_a_grader_error_that_keeps_the_points():
    result = timed_run(_Raises(spec(), touch=None, exc=KeyError("cases")), _ctx())
    assert (result.status, result.score) == ("grader_error", 10)
    assert "not your fault" in result.feedback[0] and "KeyError" not in "\n".join(result.feedback)
    assert result.review == "grader error: KeyError: 'cases'"  # the exception is for the instructor only


@pytest.mark.parametrize("touch,value,answers", [
    ("request", "a string where a number belongs", None),  # the parent's `+ 1.0` raises TypeError on it
    ("answers", None, {"q1": "not a number"}),  # float() raises ValueError on the student's answer
])
def test_an_exception_on_a_student_value_is_the_students_wrong_type_and_flagged(touch, value, answers):
    result = timed_run(_Raises(spec(), touch=touch, exc=RuntimeError("unreached")), _ctx(value=value, answers=answers))
    assert (result.status, result.score) == ("failed", 0)
    assert result.items[0].id == "wrong_type"
    assert "could not use what your code supplied" in result.feedback[0]
    assert result.review and "raised on this submission's value" in result.review  # for review, never for points


def test_a_grader_fault_declared_by_the_check_is_a_grader_error_even_after_student_values():
    result = timed_run(_Raises(spec(), touch="grader_side", exc=ZeroDivisionError("division by zero")), _ctx(value=1.0))
    assert (result.status, result.score) == ("grader_error", 10)
    assert "ZeroDivisionError" in result.review
    explicit = timed_run(_Raises(spec(), touch="request", exc=GraderFault("x")), _ctx(value=1.0))
    assert explicit.status == "grader_error"


def test_a_record_without_statuses_reads_back_with_them():
    old = {"check_id": "p4", "title": "t", "question": "p4", "score": 0, "max_score": 0, "manual": True, "skipped": False}
    assert CheckResult.from_dict(old).status == "manual"
    old |= {"manual": False, "score": 2, "max_score": 5}
    assert CheckResult.from_dict(old).status == "failed"
    new = finish(spec(), Outcome.undecided("x")).to_dict()
    assert CheckResult.from_dict(json.loads(json.dumps(new))) == CheckResult.from_dict(new)


# --- reporters --------------------------------------------------------------------------------


def _run() -> GradingRun:
    """Four visible checks (passed, failed, grader error, undecided) and a hidden one the student failed."""
    results = [
        finish(spec("p1", 10), Outcome(passed=True)),
        finish(spec("p2", 10), Outcome.fail("incorrect", f"raised ValueError('{ESCAPES}')")),
        finish(spec("p3", 10), Outcome.grader_error("The grader failed on this check.", review="grader error: KeyError")),
        finish(spec("p4", 5), Outcome.undecided("Not run: the grader's overall time budget ran out.")),
        finish(spec("p5.hidden", 7, visibility="hidden"), Outcome.fail("incorrect", "hidden feedback: got 1, expected 2")),
    ]
    return GradingRun(assignment="hw4", submission=f"student\x1b[8m", results=results, isolation="bubblewrap",
                      load_messages=[f"hw4.py, line 3: {ESCAPES}"], seed=3)


def test_results_json_carries_statuses_and_never_a_hidden_checks_points_in_visible_text(tmp_path):
    run = _run()
    assert (run.score, run.max_score, run.visible_score, run.visible_max_score) == (20, 42, 20, 35)
    data = gradescope.write_results(run, tmp_path / "results.json")
    jsonschema.validate(data, gradescope_schema())
    assert data == json.loads((tmp_path / "results.json").read_text())
    assert data["score"] == 20  # the recorded grade counts every check
    tests = {t["name"].split()[0]: t for t in data["tests"]}
    assert [tests[c]["status"] for c in ("p1", "p2", "p3", "p4", "p5.hidden")] == ["passed", "failed", "failed", "failed", "failed"]
    assert [tests[c]["extra_data"]["status"] for c in ("p3", "p4")] == ["grader_error", "undecided"]
    assert tests["p3"]["score"] == 10 and tests["p3"]["output"].startswith("Status: grader error (points kept")
    assert tests["p4"]["output"].startswith("Status: not decided") and tests["p5.hidden"]["visibility"] == "hidden"
    assert data["output"].startswith("Assignment hw4: 20 / 35 points on the checks shown here")
    assert "Grader errors (points kept until the course staff review them): p3." in data["output"]
    assert "Not decided (0 for now; the course staff will review them): p4." in data["output"]
    # The visible top-level text knows nothing of the hidden check: not its id, its points or the whole total.
    for leak in ("p5", "42", "/ 42", "27", "hidden feedback"):
        assert leak not in data["output"], leak
    assert data["extra_data"]["statuses"] == {"passed": 1, "failed": 2, "grader_error": 1, "undecided": 1, "manual": 0, "skipped": 0}
    assert [r["check"] for r in data["extra_data"]["review"]] == ["p3", "p4"]


def test_no_control_character_reaches_results_json_the_terminal_the_csv_or_the_record(tmp_path):
    run = _run()
    data = gradescope.to_results(run)
    strings = [data["output"]] + [t["output"] for t in data["tests"]] + [t["name"] for t in data["tests"]]
    assert all(is_clean(s) for s in strings) and "All tests passed" in data["tests"][1]["output"]
    record = json.dumps(run.to_dict(), ensure_ascii=False)
    assert is_clean(json.loads(record)["load_messages"][0]) and "\x1b" not in record and "\u202e" not in record
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    terminal.print_run(run, console, verbose=True)
    table.print_summary([run], ["student\x1b[2J"], console)
    shown = console.file.getvalue()
    assert is_clean(shown) and "All tests passed" in shown
    table.write_csv([run], tmp_path / "grades.csv", ["student\x1b[2J"])
    assert is_clean((tmp_path / "grades.csv").read_text())


def _printed(run: GradingRun, **kwargs) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    terminal.print_run(run, console, **kwargs)
    return console.file.getvalue()


def test_terminal_student_view_leaves_hidden_checks_out_and_instructor_view_flags_reviews():
    run = _run()
    student = _printed(run, student=True)
    assert "Total: 20 / 35" in student and "p5.hidden" not in student and "42" not in student
    assert "review:" not in student
    instructor = _printed(run)
    assert "Total: 20 / 42 (students see 20 / 35: hidden checks left out)" in instructor
    assert "p5.hidden" in instructor and "(hidden)" in instructor
    assert "grader error" in instructor and "undecided" in instructor
    assert "to review: p3 (grader_error), p4 (undecided)" in instructor


def test_grades_csv_counts_grader_errors_and_lists_the_checks_to_review(tmp_path):
    clean = GradingRun(assignment="hw4", submission="b", results=[finish(spec("p1"), Outcome(passed=True))])
    table.write_csv([_run(), clean], tmp_path / "grades.csv", ["alice", "bob"])
    rows = {r["submission"]: r for r in csv.DictReader(open(tmp_path / "grades.csv"))}
    assert (rows["alice"]["grader_errors"], rows["alice"]["undecided"], rows["alice"]["review"]) == \
        ("1", "1", "p3:grader_error p4:undecided")
    assert (rows["bob"]["grader_errors"], rows["bob"]["review"]) == ("0", "")
    assert rows["alice"]["p3"] == "10" and rows["alice"]["score"] == "20"
    assert table.review_summary([_run(), _run(), clean]) == (
        "2 grader errors in 2 submissions (see grades.csv column grader_errors); 2 undecided checks in 2 submissions "
        "(see grades.csv column undecided); the column review lists the checks.")
    assert table.review_summary([clean]) == "0 grader errors in 0 submissions; 0 undecided checks in 0 submissions."


def test_the_failure_file_is_valid_and_marked_for_review(tmp_path):
    data = gradescope.write_not_finished(tmp_path / "r.json")
    jsonschema.validate(data, gradescope_schema())
    assert "grading did not finish" in data["output"] and data["extra_data"]["review"][0]["status"] == "undecided"

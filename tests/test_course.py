"""A course is a folder (grader.course): one built outside the repository, with its own assignment, reference
and check kind, is validated, graded (command line and engine), protected from the child, packaged for
Gradescope, and gets a handout; the repository's handouts are what `grader handout` writes today."""
from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

REFERENCE = '''
"""Reference of the tiny assignment (a course outside the grader's repository)."""
import torch


def scaled_sum(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Return sum(w * x) times 3: one number."""
    return 3.0 * (w * x).sum()


ANSWERS_NUM = {"q2.value": 42.0}
'''

# An extra check kind of the course's own, registered exactly as the built-in ones are.
KIND = '''
from grader.checks import register
from grader.checks.answer_keys import lookup_answer
from grader.checks.base import Check, Outcome
from grader.checks.options import Option


@register
class KeywordCheck(Check):
    """The answer must name a word (a course's own kind)."""

    kind = "tiny_keyword"
    needs_code = False
    needs_reference = False
    options = (Option("word", {"type": "string"}, "the word the answer must contain", "chain"),)

    def run(self, ctx):
        answer, missing = lookup_answer(ctx, self.spec.target or "")
        if missing is not None:
            return missing
        if self.params["word"] in str(answer):
            return Outcome(passed=True, feedback=["Names the rule."])
        return Outcome.fail("incorrect", f"Your answer should name the {self.params['word']} rule.")
'''

RUBRIC = '''
schema_version: 1
assignment: tiny
title: "Tiny: one function, one number, one word"
handout: docs/assignments/tiny.md
reference: tiny
submission:
  code: [tiny.py]
  answers: [answers.yaml]
limits:
  timeout_s: 30
questions:
  - id: q1
    points: 5
    checks:
      - id: q1
        kind: tensor_function
        target: scaled_sum
        reference: scaled_sum
        points: 5
        params:
          cases: [{N: 3}, {N: 8}]
          args: [{tensor: [N]}, {tensor: [N]}]
          rtol: 1.0e-5
  - id: q2
    points: 3
    checks:
      - id: q2
        kind: numeric
        target: q2.value
        reference: ANSWERS_NUM[q2.value]
        points: 3
  - id: q3
    points: 2
    checks:
      - id: q3
        kind: tiny_keyword
        target: q3.why
        points: 2
        params: {word: chain}
'''

RIGHT_CODE = "import torch\n\ndef scaled_sum(x, w):\n    return 3 * torch.dot(x, w)\n"
PARTIAL_ANSWERS = "q2.value: 41\nq3.why: by the chain rule\n"


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory) -> Path:
    """my-course/ in a temporary folder: rubrics/, reference/, checks/, no link to the repository."""
    root = tmp_path_factory.mktemp("outside") / "my-course"
    for sub in ("rubrics", "reference", "checks"):
        (root / sub).mkdir(parents=True)
    (root / "rubrics" / "tiny.yaml").write_text(textwrap.dedent(RUBRIC))
    (root / "reference" / "tiny.py").write_text(REFERENCE)
    (root / "checks" / "tiny_keyword.py").write_text(KIND)
    assert not str(root.resolve()).startswith(str(ROOT))
    return root


@pytest.fixture(scope="module")
def course(course_dir):
    from grader.course import Course

    return Course.load(course_dir)


@pytest.fixture(scope="module")
def rubric(course):
    from grader.rubric.load import load_rubric

    return load_rubric(course.rubric_path("tiny"), course=course)


def _main(*argv: str, capsys) -> tuple[int, str, str]:
    from grader.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_course_resolves_its_own_paths_and_kinds(course, course_dir, rubric):
    from grader.checks import REGISTRY

    assert rubric.reference_path == course_dir.resolve() / "reference" / "tiny.py"
    assert rubric.reference.scaled_sum.__doc__.startswith("Return sum(w * x)")
    assert "tiny_keyword" in REGISTRY and course.assignments() == ["tiny"]
    assert [c.kind for c in rubric.checks] == ["tensor_function", "numeric", "tiny_keyword"]


def test_an_unknown_assignment_in_the_course_gets_a_suggestion(course):
    from grader.errors import RubricError

    with pytest.raises(RubricError) as info:
        course.rubric_path("tinny")
    assert "did you mean 'tiny'" in str(info.value) and str(course.rubrics_dir) in str(info.value)


def test_a_folder_without_rubrics_is_refused_with_what_to_make(tmp_path):
    from grader.course import Course
    from grader.errors import UsageError

    with pytest.raises(UsageError, match="no rubrics/ folder"):
        Course.load(tmp_path)


def test_rubric_validate_and_kinds_take_the_course(course_dir, capsys):
    code, out, _ = _main("rubric", "validate", "--course", str(course_dir), capsys=capsys)
    assert code == 0 and "tiny.yaml: ok (tiny: 3 questions, 3 checks, 10 points)" in out, out
    code, out, _ = _main("rubric", "kinds", "tiny_keyword", "--course", str(course_dir), capsys=capsys)
    assert code == 0 and "word  string  (default 'chain')  the word the answer must contain" in out, out


def test_a_bad_option_of_the_course_kind_is_named_with_its_path(course_dir, tmp_path, capsys):
    bad = tmp_path / "bad-course"
    (bad / "rubrics").mkdir(parents=True)
    (bad / "reference").symlink_to(course_dir / "reference")
    (bad / "checks").symlink_to(course_dir / "checks")
    (bad / "rubrics" / "tiny.yaml").write_text(textwrap.dedent(RUBRIC).replace("{word: chain}", "{wrd: chain}"))
    code, _, err = _main("rubric", "validate", "--course", str(bad), capsys=capsys)
    assert code == 3, err
    assert "questions[2].checks[0].params.wrd: check kind tiny_keyword has no option 'wrd'" in err, err
    assert "did you mean 'word'?" in err, err


def test_the_command_line_grades_a_submission_with_the_course(course_dir, tmp_path, capsys):
    """`grader check --course DIR`: the right function, a wrong number and the course kind's word."""
    sub = tmp_path / "student"
    sub.mkdir()
    (sub / "tiny.py").write_text(RIGHT_CODE)
    (sub / "answers.yaml").write_text(PARTIAL_ANSWERS)
    results = tmp_path / "results.json"
    code, _, err = _main("check", str(sub), "--course", str(course_dir), "--results", str(results), "--seed", "5", "-q",
                         capsys=capsys)
    assert code == 0, err
    data = json.loads(results.read_text())
    by_name = {t["name"].split(" ")[0]: t for t in data["tests"]}
    assert (by_name["q1"]["score"], by_name["q2"]["score"], by_name["q3"]["score"]) == (5, 0, 2), data
    assert data["score"] == 7
    assert "not correct" in by_name["q2"]["output"]


def test_the_course_reference_is_protected_from_the_child(course, rubric, tmp_path):
    """The child never reads the course's reference, rubrics or check kinds: a submission that needs the
    reference's file to answer gets nothing, at the bubblewrap level (the level these machines use)."""
    from conftest import grade
    from grader.engine import protected_paths

    protected = protected_paths(rubric, [])
    assert {course.reference_dir, course.rubrics_dir, course.checks_dir} <= set(protected), protected
    ref = course.reference_dir / "tiny.py"
    sub = tmp_path / "peek"
    sub.mkdir()
    (sub / "tiny.py").write_text(textwrap.dedent(f'''
        import torch

        def scaled_sum(x, w):
            source = open({str(ref)!r}).read()  # only works where the reference is readable
            return 3 * torch.dot(x, w) if "ANSWERS_NUM" in source else torch.zeros(())
    '''))
    run = grade(sub, rubric, isolation="bubblewrap", skip_training=True)
    q1 = next(r for r in run.results if r.check_id == "q1")
    assert run.isolation == "bubblewrap"
    assert not q1.passed and q1.score == 0, q1.feedback
    assert "FileNotFoundError" in "\n".join(q1.feedback) or "PermissionError" in "\n".join(q1.feedback), q1.feedback


def test_gradescope_build_packages_the_course(course_dir, tmp_path, capsys):
    out = tmp_path / "tiny.zip"
    code, _, err = _main("gradescope", "build", "--assignment", "tiny", "--course", str(course_dir), "-o", str(out),
                         capsys=capsys)
    assert code == 0, err
    names = zipfile.ZipFile(out).namelist()
    assert {"rubrics/tiny.yaml", "reference/tiny.py", "checks/tiny_keyword.py", "run_autograder", "setup.sh"} <= set(names)
    assert not any(n.startswith(("rubrics/hw4", "reference/hw4", "tests/", "submissions_example/")) for n in names)
    assert zipfile.ZipFile(out).read("reference/tiny.py").decode() == (course_dir / "reference" / "tiny.py").read_text()


def test_handout_of_the_course_assignment(course_dir, capsys):
    code, out, err = _main("handout", "--assignment", "tiny", "--course", str(course_dir), capsys=capsys)
    assert code == 0, err
    text = (course_dir / "docs" / "assignments" / "tiny.md").read_text()
    assert "def scaled_sum(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor: ..." in text
    assert "Return sum(w * x) times 3" in text  # the docstring
    assert "3.0 *" not in text and "(w * x).sum()" not in text  # never the body
    assert "rtol 1e-05, atol 1e-06" in text  # the given rtol and the declared default atol
    assert "| `q2.value` | a number | 3 |" in text and "**q3** (2 pts)" in text


@pytest.mark.parametrize("assignment", ["hw4", "a2", "tricks", "ds5220"])
def test_committed_handouts_are_what_grader_handout_writes(assignment):
    """docs/assignments/*.md are generated: a rubric or reference change must come with `grader handout`."""
    from grader.handout import handout_markdown
    from grader.rubric.load import load_rubric

    rubric = load_rubric(ROOT / "rubrics" / f"{assignment}.yaml")
    committed = (ROOT / "docs" / "assignments" / f"{assignment}.md").read_text(encoding="utf-8")
    assert handout_markdown(rubric) == committed, f"regenerate: grader handout --assignment {assignment}"
    assert rubric.handout == f"docs/assignments/{assignment}.md"

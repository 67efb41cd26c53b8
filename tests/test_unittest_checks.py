"""Check kind ``unittest`` (grader.checks.unittest_kind): an instructor's gradescope-utils test file, run in the parent.

One small course in a temporary folder (rubric, reference, test files) and
one submission, graded once for the whole module: a passing test, an answer
read through the proxy, a partial-credit test whose subTests fail in two
cases (both reported), a hidden test, a test that times out in the student's
code, a test whose own code fails before reaching the submission (grader
error, points kept), a test file that does not import and one whose weights
do not add up to the check's points (grader errors, points kept). The hw4
example (p6.relu) is graded right and wrong in tests/test_examples_hw4.py.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, grade
from grader.rubric.load import load_rubric

pytestmark = pytest.mark.slow  # one grading with a sandbox restart after a timeout (about 10 s when the machine is quiet)

RUBRIC = """\
schema_version: 1
assignment: ut
reference: ut
submission:
  code: [ut.py]
  answers: [answers.yaml]
limits:
  timeout_s: 20
questions:
  - id: q1
    points: 7
    checks:
      - id: q1.main
        kind: unittest
        points: 7
        params: {file: ut_tests/test_main.py}
  - id: q2
    points: 3
    checks:
      - id: q2.slow
        kind: unittest
        points: 3
        params: {file: ut_tests/test_slow.py, test_timeout_s: 2}
  - id: q3
    points: 3
    checks:
      - id: q3.broken
        kind: unittest
        points: 3
        params: {file: ut_tests/test_broken.py}
      - id: q3.weights
        kind: unittest
        points: 0
        params: {file: ut_tests/test_weights.py}
"""

REFERENCE = """\
import torch

def add(a, b):
    return a + b

def scale(x, k):
    return k * x
"""

TEST_MAIN = '''\
import unittest

import numpy as np
import torch
from gradescope_utils.autograder_utils.decorators import number, partial_credit, visibility, weight


class TestMain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):  # class fixtures run as under unittest's own runner
        cls.factors = (1.0, 2.0, -1.0, -3.0)

    @weight(1)
    @number("1.1")
    def test_add(self):
        """add returns the sum"""
        a, b = self.rng.standard_normal(3), self.rng.standard_normal(3)
        got = self.student.call("add", torch.tensor(a), b)
        np.testing.assert_allclose(got, self.reference.add(torch.tensor(a), torch.tensor(b)).numpy())

    @weight(1)
    @number("1.2")
    def test_answer(self):
        self.assertAlmostEqual(float(self.student.answer("q2.dL_dw3")), 0.5)

    @partial_credit(3)
    @number("1.3")
    def test_scale(self, set_score=None):
        """scale multiplies by k, for each k"""
        right = 0
        for k in self.factors:
            with self.subTest(k=k):
                got = self.student.call("scale", np.ones(2, dtype=np.float32), k)
                np.testing.assert_allclose(got, k * np.ones(2), err_msg=f"scale(x, {k}) is wrong")
                right += 1
        set_score(3 * right / 4)

    @weight(1)
    @number("1.4")
    @visibility("hidden")
    def test_hidden(self):
        self.assertEqual(self.student.call("add", 1, 2), 3)

    @weight(1)
    @number("1.5")
    def test_grader_bug(self):
        undefined_helper()  # the course's own bug, before any call into the submission
'''

TEST_SLOW = '''\
import time
import unittest

from gradescope_utils.autograder_utils.decorators import weight


class TestSlow(unittest.TestCase):
    @weight(1)
    def test_a_spin(self):
        self.student.call("spin")

    @weight(1)
    def test_b_after(self):
        """the sandbox is usable again after a timeout"""
        self.assertEqual(self.student.call("add", 2, 2), 4)

    @weight(1)
    def test_c_stuck(self):
        time.sleep(60)  # the course's own code stuck (sleeping: an abandoned thread must not eat the CPU)
'''

TEST_BROKEN = '''\
import unittest
from gradescope_utils.autograder_utils.decorators import weight

class TestBroken(unittest.TestCase)   # a syntax error
    @weight(3)
    def test_x(self):
        pass
'''

TEST_WEIGHTS = '''\
import unittest
from gradescope_utils.autograder_utils.decorators import weight

class TestWeights(unittest.TestCase):
    @weight(2)
    def test_x(self):
        self.assertEqual(self.student.call("add", 1, 1), 2)
'''

SUBMISSION = """\
import time

def add(a, b):
    return a + b

def scale(x, k):
    return abs(k) * x   # wrong for negative k

def spin():
    while True:
        time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("course")
    (root / "rubrics" / "ut_tests").mkdir(parents=True)
    (root / "reference").mkdir()
    (root / "rubrics" / "ut.yaml").write_text(RUBRIC)
    (root / "reference" / "ut.py").write_text(REFERENCE)
    for name, text in (("main", TEST_MAIN), ("slow", TEST_SLOW), ("broken", TEST_BROKEN), ("weights", TEST_WEIGHTS)):
        (root / "rubrics" / "ut_tests" / f"test_{name}.py").write_text(text)
    return root


@pytest.fixture(scope="module")
def run(course: Path, tmp_path_factory: pytest.TempPathFactory):
    sub = tmp_path_factory.mktemp("submission")
    (sub / "ut.py").write_text(SUBMISSION)
    (sub / "answers.yaml").write_text(textwrap.dedent("""\
        q2:
          dL_dw3: 0.5
        """))
    return grade(sub, load_rubric(course / "rubrics" / "ut.yaml"), skip_training=True)


def by_id(run) -> dict:
    return {r.check_id: r for r in run.results}


def test_each_test_is_one_result_with_its_weight_number_and_visibility(run) -> None:
    results = by_id(run)
    assert [i for i in results if i.startswith("q1.")] == [
        "q1.main.add", "q1.main.answer", "q1.main.scale", "q1.main.hidden", "q1.main.grader_bug"]  # by @number
    add = results["q1.main.add"]
    assert (add.status, add.score, add.max_score, add.title) == ("passed", 1.0, 1.0, "[1.1] add returns the sum")
    assert results["q1.main.answer"].status == "passed"
    assert results["q1.main.hidden"].visibility == "hidden" and results["q1.main.hidden"].passed
    assert results["q1.main.add"].visibility == "visible"


def test_partial_credit_and_every_failing_subtest_reported(run) -> None:
    scale = by_id(run)["q1.main.scale"]
    assert scale.status == "failed"
    assert scale.score == pytest.approx(1.5) and scale.max_score == 3.0  # set_score(3 * 2/4)
    failed = [f for f in scale.feedback if f.startswith("Failed")]
    assert len(failed) == 2, scale.feedback
    assert "(k=-1.0)" in failed[0] and "scale(x, -1.0) is wrong" in failed[0]
    assert "(k=-3.0)" in failed[1] and "scale(x, -3.0) is wrong" in failed[1]


def test_a_test_that_fails_before_reaching_the_submission_is_a_grader_error(run) -> None:
    bug = by_id(run)["q1.main.grader_bug"]
    assert (bug.status, bug.score, bug.max_score) == ("grader_error", 1.0, 1.0)  # points kept, listed for review
    assert "NameError" in bug.review and "undefined_helper" in bug.review
    assert "NameError" not in " ".join(bug.feedback)  # the course's internals stay out of the student's view


def test_timeout_in_student_code_fails_that_test_only(run) -> None:
    results = by_id(run)
    spin = results["q2.slow.a_spin"]
    assert (spin.status, spin.score) == ("failed", 0.0)
    assert "time limit" in " ".join(spin.feedback)
    assert spin.seconds < 12  # the 2 s per-test limit, not the rubric's 20 s
    after = results["q2.slow.b_after"]
    assert after.status == "passed", after.feedback
    stuck = results["q2.slow.c_stuck"]  # stuck in the course's code, never calling the submission: points kept
    assert (stuck.status, stuck.score) == ("grader_error", 1.0) and "never called the submission" in stuck.review


def test_a_broken_test_file_is_a_grader_error_not_a_deduction(run) -> None:
    results = by_id(run)
    broken = results["q3.broken"]
    assert (broken.status, broken.score, broken.max_score) == ("grader_error", 3.0, 3.0)
    assert "failed to import" in broken.review and "SyntaxError" in broken.review
    weights = results["q3.weights"]
    assert weights.status == "grader_error" and "add up to 2, but the rubric gives check q3.weights 0 points" in weights.review


def test_total_is_the_rubric_total(run) -> None:
    # 1 + 1 + 1.5 + 1 + 1 (kept) | 0 + 1 + 1 (kept) | 3 (kept) + 0
    assert run.max_score == 13.0 and run.score == pytest.approx(10.5)


def test_rubric_rejects_bad_options(course: Path, tmp_path: Path) -> None:
    from grader.errors import RubricErrors

    bad = tmp_path / "rubrics" / "ut.yaml"
    bad.parent.mkdir()
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "ut.py").write_text(REFERENCE)
    # An unknown option is caught by the schema built from the kind's declared options (with a "did you mean");
    # a path outside the rubric's folder by the kind's own meaning check.
    for params, expected in [("{file: ut_tests/test_main.py, tmeout: 3}", "no option 'tmeout' (did you mean 'test_timeout_s'?)"),
                             ("{file: ../x.py}", "must be inside the rubric's folder"),
                             ("{file: ut_tests/test_main.py, test_timeout_s: -1}", "params.test_timeout_s")]:
        bad.write_text(RUBRIC.replace("params: {file: ut_tests/test_main.py}", f"params: {params}"))
        with pytest.raises(RubricErrors) as err:
            load_rubric(bad)
        assert expected in str(err.value), str(err.value)


def test_rubric_validate_and_gradescope_build_report_a_broken_test_file(course: Path, tmp_path: Path, capsys) -> None:
    """What grading reports as a grader error for each student (test_a_broken_test_file_...), `grader rubric
    validate` reports once, before grading: the weights that do not add up and the file that does not import,
    each at its place in the rubric. `grader gradescope build` refuses to write the zip for the same reasons."""
    from grader.cli import main

    code = main(["rubric", "validate", str(course / "rubrics" / "ut.yaml")])
    err = capsys.readouterr().err
    assert code == 3 and "ut.yaml: INVALID" in err, err
    assert "add up to 2, but the rubric gives check q3.weights 0 points" in err and ".params.file" in err, err
    assert "test_broken.py failed to import" in err, err
    zip_path = tmp_path / "ut.zip"
    code = main(["gradescope", "build", "--assignment", "ut", "--course", str(course), "-o", str(zip_path)])
    err = capsys.readouterr().err
    assert code == 3 and "add up to 2" in err and not zip_path.exists(), err
    # The shipped hw4 rubric, with its p6.relu test file, is valid.
    assert main(["rubric", "validate", str(ROOT / "rubrics" / "hw4.yaml")]) == 0

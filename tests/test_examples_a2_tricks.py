"""The bundled a2 and tricks examples grade exactly as documented.

The correct examples use forms that differ from the reference on purpose
(q5 through exp(log(1/g - 1)), q6 through sigmoid identities, q3 and q4 with
thousands separators and the 1998 paper's reading, batch norm with a dict
cache, dropout with torch.bernoulli); the partial ones make the mistakes
listed below, and lose exactly those points.
"""
from __future__ import annotations

import pytest

from conftest import EXAMPLES, ROOT, grade
from grader.report.gradescope import to_results


@pytest.fixture(scope="module")
def a2_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "a2.yaml")


@pytest.fixture(scope="module")
def tricks_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "tricks.yaml")


# check id -> (score kept, phrase in its feedback)
A2_PARTIAL_FAILED = {
    "q1.W_eff": (0, "wrong order"),                              # a**2*W1*W2
    "q3.conv_flops": (2, "multiply-accumulates"),                # 576,000 MACs: half credit
    "q4.c3": (0, "one bias, not one per input map"),             # 2,496
    "q4.total": (0, "one bias, not one per input map"),          # 61,786
    "q6.tanh": (0, "is not correct"),                            # 2*sigmoid(x) - 1
    "q7.dropout": (0, "still active at evaluation"),             # F.dropout without training=
}
TRICKS_PARTIAL_FAILED = {
    "bn.jacobian": (0, "the slide is wrong there"),              # the slide's cross term
    "bn.inference": (0, "times the expected one"),               # no B/(B-1)
    "dropout": (4, "non-inverted (classic) dropout"),            # no 1/keep_prob
    "early": (0, "an equal loss is not an improvement"),         # >= min_delta
    "div.kl": (0, "0 log 0 = 0"),                                # d*log(d) gives NaN
}


def test_a2_correct_gets_full_marks(a2_rubric):
    run = grade(EXAMPLES / "a2" / "correct", a2_rubric, skip_training=True)
    assert run.score == run.max_score == 82, [(r.check_id, r.feedback) for r in run.results if not r.passed]
    feedback = {r.check_id: "\n".join(r.feedback) for r in run.results}
    assert "1998 paper" in feedback["q4.total"] and "includes one add per output for the bias" in feedback["q3.total_flops"]


def test_a2_partial_loses_exactly_the_documented_points(a2_rubric):
    run = grade(EXAMPLES / "a2" / "partial", a2_rubric, skip_training=True)
    failed = {r.check_id: r for r in run.results if not r.passed and not r.skipped}
    assert set(failed) == set(A2_PARTIAL_FAILED)
    for check_id, (score, phrase) in A2_PARTIAL_FAILED.items():
        assert failed[check_id].score == score, check_id
        assert phrase in "\n".join(failed[check_id].feedback), check_id
    assert run.score == 62 and run.max_score == 82  # the optional q2 keys are unanswered: skipped, worth 0
    assert [r.check_id for r in run.results if r.skipped] == ["q2.dL_dw1", "q2.dL_dw5", "q7.train"]
    failed_tests = [t for t in to_results(run)["tests"] if t["status"] == "failed"]
    assert sorted(t["name"].split(" ", 1)[0] for t in failed_tests) == sorted(A2_PARTIAL_FAILED)


def test_tricks_correct_gets_full_marks(tricks_rubric):
    run = grade(EXAMPLES / "tricks" / "correct", tricks_rubric)
    assert run.score == run.max_score == 90, [(r.check_id, r.feedback) for r in run.results if not r.passed]


def test_tricks_partial_loses_exactly_the_documented_points(tricks_rubric):
    run = grade(EXAMPLES / "tricks" / "partial", tricks_rubric)
    failed = {r.check_id: r for r in run.results if not r.passed}
    assert set(failed) == set(TRICKS_PARTIAL_FAILED)
    for check_id, (score, phrase) in TRICKS_PARTIAL_FAILED.items():
        assert failed[check_id].score == score, check_id
        assert phrase in "\n".join(failed[check_id].feedback), check_id
        assert failed[check_id].name.startswith(check_id + " ")  # the Gradescope test name leads with the id
    assert run.score == 59


@pytest.mark.slow
def test_a2_with_training_adds_q7_train(a2_rubric):
    """q7.train trains build_mlp in the sandbox; both examples' MLPs learn, so only the total changes."""
    correct = grade(EXAMPLES / "a2" / "correct", a2_rubric)
    assert correct.score == correct.max_score == 86, [(r.check_id, r.feedback) for r in correct.results if not r.passed]
    partial = grade(EXAMPLES / "a2" / "partial", a2_rubric)
    q7 = next(r for r in partial.results if r.check_id == "q7.train")
    assert q7.passed and partial.score == 66

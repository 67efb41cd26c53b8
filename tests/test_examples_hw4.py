"""The bundled hw4 examples grade exactly as documented (README, `make demo`)."""
from __future__ import annotations

import time

import pytest

from conftest import EXAMPLES, grade, scores

# What the partial example gets wrong, and nothing else.
PARTIAL_FAILED = {
    "p2": "mixes channels",
    "p6.identity": "transpose of the Jacobian",
    "p6.sigmoid": "transpose of the Jacobian",
    "p6.tanh": "transpose of the Jacobian",
    "p6.relu.shapes": "J_y should be 3×4",  # p6.relu is a unittest check: one result per test
    "p6.relu.values": "transpose of the Jacobian",
    "p7.C3_layer.connections": "that is a full convolution",
    "p7.C3_layer.structure": "2,416 trainable parameters; expected 1,516",
    "p7.LeNet.structure": "61,706 trainable parameters; expected 60,806",
}


def test_correct_gets_full_marks(hw4_rubric):
    run = grade(EXAMPLES / "hw4" / "correct", hw4_rubric, skip_training=True)
    assert run.score == run.max_score == 90
    manual = [r for r in run.results if r.manual]
    assert [r.check_id for r in manual] == ["p4"] and "Needs manual grading" in manual[0].feedback[0]
    assert "Cross-correlation with the 3x3 filter" in "\n".join(manual[0].feedback)


def test_partial_loses_exactly_the_documented_points(hw4_rubric):
    run = grade(EXAMPLES / "hw4" / "partial", hw4_rubric, skip_training=True)
    failed = {r.check_id: r for r in run.results if not r.passed and not r.manual}
    assert set(failed) == set(PARTIAL_FAILED)
    for check_id, phrase in PARTIAL_FAILED.items():
        assert phrase in "\n".join(failed[check_id].feedback), check_id
    assert run.score == 38


def test_broken_scores_zero_and_says_where_the_syntax_error_is(hw4_rubric):
    run = grade(EXAMPLES / "hw4" / "broken", hw4_rubric, skip_training=True)
    assert run.score == 0
    assert any("hw4.py, line 11: syntax error" in m for m in run.load_messages)
    code_checks = [r for r in run.results if not r.manual and not r.skipped]  # skipped: p5.train, p7.train
    assert all("syntax error" in "\n".join(r.feedback) for r in code_checks)


def test_notebook_gets_full_marks_without_running_its_training_cell(hw4_rubric):
    started = time.perf_counter()
    run = grade(EXAMPLES / "hw4" / "notebook", hw4_rubric, skip_training=True)
    assert run.score == run.max_score == 90
    # the training cell sleeps 60 s per epoch: it must have been skipped, and said so
    assert time.perf_counter() - started < 60
    assert any("model = LeNet()" in m for m in run.load_messages)
    p4 = next(r for r in run.results if r.check_id == "p4")
    assert "Cross-correlation with w gives" in "\n".join(p4.feedback)  # read from the ANSWERS cell


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_correct_passes_for_any_seed(hw4_rubric, seed):
    """Inputs vary per run: a correct submission must not depend on them."""
    run = grade(EXAMPLES / "hw4" / "correct", hw4_rubric, skip_training=True, seed=seed)
    assert scores(run) and run.score == 90

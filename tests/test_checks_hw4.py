"""Each hw4 check on right and wrong answers, graded through the real sandbox in one run.

The table maps (check id, student variant) to the expected verdict and a
phrase the feedback must contain, so a check that cannot fail, or fails
without saying why, shows up here.
"""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from conftest import ROOT, grade

# (check id in rubrics/hw4.yaml, variant name in tests/data/hw4_variants.py, passes?, phrase in feedback)
CASES = [
    ("p1", "fd_ok_float64", True, "Correct"),
    ("p1", "fd_swapped", False, "output channels 0 and 1 are swapped"),
    ("p1", "fd_swapped_student", False, "Your filters are right but output channels 0 and 1 are swapped"),
    ("p1", "fd_dict_padding", True, "Correct"),
    ("p1", "fd_alternating", False, "another order for another case of the same size"),
    ("p1", "fd_huge_padding", False, "padded input far larger than the expected convolution's"),
    ("p1", "fd_both_vertical", False, "differs from the expected value"),
    ("p1", "fd_sign", False, "differs from the expected value"),
    ("p1", "fd_shape", False, "4 dimensions"),
    ("p1", "fd_raises", False, "RuntimeError: not implemented yet"),
    ("p1", "not_defined_anywhere", False, "is not defined in the submission"),
    ("p2", "avg_groups", True, "Correct"),
    ("p2", "avg_single", False, "mixes channels"),
    ("p2", "avg_stride1", False, "has shape"),
    ("p2", "avg_returns_list", False, "should be a tensor"),
    ("p2", "avg_huge_stride", False, "far larger than the expected convolution's"),
    ("p2", "avg_zero_stride", False, "the stride must be at least 1, got 0"),
    # p2 accepts no permutation: named, no credit
    ("p2", "avg_rolled", False, "your channel 0 is expected channel 1"),
    ("p3", "gray_rounded", True, "Correct"),
    ("p3", "gray_mean", False, "tolerance 0.001"),
    ("p3", "gray_bgr", False, "tolerance 0.001"),
    # the ½-less form of the handout's loss (twice ℓ): a constant factor, full credit with a note
    ("p5.loss_function", "loss_no_half", True, "is 2 times the expected function on every case"),
    ("p5.loss_function", "loss_ignores_y", False, "but the gradient is not scaled alike"),
    ("p5.loss_function", "loss_numpy", False, "not connected to the inputs"),
    ("p5.loss_function", "loss_mean", True, "returns the mean over the batch instead of one value per sample"),
    ("p5.loss_function", "loss_mean_no_factor", True, "returns the mean over the batch instead of one value per "
     "sample and is 2 times the expected function"),
    ("p5.loss_function", "loss_keepdim", False, "loss has shape (1, 1), expected (1). Return one loss per sample (shape (1)), or the mean over the batch (shape ())"),
    ("p5.loss_function", "loss_random_sign", False, "gave a factor of 2, this one gives ratios from -2 to 2"),
    ("p5.loss_function", "loss_times_batch", False, "every value is 7 times the expected one"),
    ("p5.loss_function", "loss_half_gradient", False, "are 2 times the expected ones, but the gradient is not"),
    ("p5.logistic_loss", "logistic_unstable", True, "Correct values and gradients"),
    ("p5.logistic_loss", "logistic_mean", True, "returns the mean over the batch"),
    ("p5.logistic_loss", "logistic_no_half_factor_wrong", False, "differs from the expected value"),
    ("p5.logistic_loss", "logistic_wrong_sign", False, "differs"),
    ("p5.LR", "LRTwoOutputs", False, "1,570 trainable parameters; expected 785"),
    ("p6.tanh", "jac_transposed", False, "transpose of the Jacobian"),
    ("p6.identity", "jac_no_activation", True, "Correct"),
    ("p6.sigmoid", "jac_no_activation", False, "J_b differs"),
    ("p7.C3_layer.connections", "C3WrongMap", False, "output map 12 sees {0, 1, 2, 3}, expected {0, 1, 3, 4}"),
    ("p7.C3_layer.connections", "C3Masked", True, "exactly the right input maps"),
    # issue 13, cause 7: not "its connection table has shape (6, 1)", but what is wrong
    ("p7.C3_layer.connections", "C3BatchConcat", False, "so it mixes the samples of the batch"),
    ("p7.C3_layer.structure", "C3Masked", False, "2,416 trainable parameters; expected 1,516"),
    ("p7.LeNet.structure", "LeNetNoPad", False, "RuntimeError"),
]


# Rows that keep part of the points (an accepted form with the rubric's partial credit).
PARTIAL = {("p1", "fd_swapped"): 5.0, ("p1", "fd_swapped_student"): 5.0}


@pytest.fixture(scope="module")
def graded(hw4_rubric, tmp_path_factory):
    """One submission holding every variant; one check per table row."""
    folder = tmp_path_factory.mktemp("variants")
    shutil.copy(ROOT / "tests" / "data" / "hw4_variants.py", folder / "hw4.py")
    by_id = {c.id: c for c in hw4_rubric.checks}
    specs = tuple(dataclasses.replace(by_id[cid], id=f"{cid}#{variant}", target=variant)
                  for cid, variant, _, _ in CASES)
    question = dataclasses.replace(hw4_rubric.questions[0], checks=specs, points=sum(s.points for s in specs))
    rubric = dataclasses.replace(hw4_rubric, questions=[question])
    run = grade(folder, rubric)
    return {r.check_id: r for r in run.results}


@pytest.mark.parametrize("check_id,variant,passes,phrase", CASES, ids=[f"{c}-{v}" for c, v, _, _ in CASES])
def test_check_verdict_and_feedback(graded, check_id, variant, passes, phrase):
    result = graded[f"{check_id}#{variant}"]
    text = "\n".join(result.feedback)
    assert result.passed is passes, text
    assert phrase in text
    assert result.score == PARTIAL.get((check_id, variant), result.max_score if passes else 0.0), text
    if not passes:
        assert result.items, "a failed check names the rubric item it lost points for"


def test_a_student_exception_names_the_students_line(graded):
    source = (ROOT / "tests" / "data" / "hw4_variants.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, start=1) if "not implemented yet" in text)
    assert f"hw4.py, line {line}" in "\n".join(graded["p1#fd_raises"].feedback)


def test_equivalent_forms_example_notebook_keeps_the_forms_credit(hw4_rubric):
    """submissions_example/hw4/forms: both losses return the batch mean (full credit, with a note) and the
    two finite-difference channels are swapped (half of p1): 85 of 90 without training."""
    from conftest import EXAMPLES

    run = grade(EXAMPLES / "hw4" / "forms", hw4_rubric, skip_training=True)
    by_id = {r.check_id: r for r in run.results}
    assert run.score == 85 and run.max_score == 90, [(r.check_id, r.score, r.feedback) for r in run.results]
    assert by_id["p1"].score == 5 and "output channels 0 and 1 are swapped" in by_id["p1"].feedback[0]
    for check_id in ("p5.loss_function", "p5.logistic_loss"):
        assert by_id[check_id].passed and "returns the mean over the batch" in by_id[check_id].feedback[0]
    assert {r.check_id for r in run.results if not r.passed and not r.manual} == {"p1"}


def test_partial_examples_half_less_loss_is_a_constant_factor_with_full_credit(hw4_rubric):
    """submissions_example/hw4/partial writes p5's loss without the ½ factors (twice ℓ): full credit and a note."""
    from conftest import EXAMPLES

    spec = next(c for c in hw4_rubric.checks if c.id == "p5.loss_function")
    question = dataclasses.replace(hw4_rubric.questions[0], checks=(spec,), points=spec.points)
    run = grade(EXAMPLES / "hw4" / "partial", dataclasses.replace(hw4_rubric, questions=[question]))
    (result,) = run.results
    assert result.score == result.max_score == 6
    assert "is 2 times the expected function on every case, values and gradients" in result.feedback[0]

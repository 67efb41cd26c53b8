"""Each tricks check on right and wrong implementations, graded through the real sandbox in one run.

The table maps (check id, student variant) to the expected score and a phrase
the feedback must contain; the variants live in tests/data/tricks_variants.py.
A check that cannot fail, or fails without saying why, shows up here.
"""
from __future__ import annotations

import dataclasses
import math
import shutil

import pytest

from conftest import ROOT, grade
from grader.checks.dropout import DEFAULT_DELTA, hoeffding_tolerance

# (check id in rubrics/tricks.yaml, variant, params overridden, expected score, phrase in feedback)
CASES = [
    ("bn.forward", "bn_forward_objcache", {}, 6, "Correct values"),
    ("bn.forward", "bn_forward_unbiased", {}, 0, "out differs from the expected value"),
    ("bn.forward", "bn_forward_out_only", {}, 0, "should return a tuple"),
    ("bn.backward", "bn_backward_objcache", {"forward": "bn_forward_objcache"}, 10, "using your own cache"),
    ("bn.backward", "bn_backward_no_var_term", {"forward": "bn_forward_objcache"}, 0, "dz differs"),
    ("bn.backward", "bn_backward_dgamma_wrong", {"forward": "bn_forward_objcache"}, 0, "dgamma differs"),
    ("bn.backward", "bn_backward_objcache", {"forward": "bn_forward_unbiased"}, 0, "output is not correct either"),
    # NumPy implementations (array_api: [torch, numpy]): graded on float64 arrays, and told so
    ("bn.forward", "bn_forward_numpy", {}, 6, "fails on torch tensors (TypeError"),
    ("bn.forward", "bn_forward_numpy", {"array_api": ["torch"]}, 0, "TypeError"),
    ("bn.forward", "bn_forward_numpy_unbiased", {}, 0, "out differs from the expected value"),
    ("bn.forward", "bn_forward_broken_everywhere", {}, 0, "called again with NumPy float64 arrays it failed too"),
    ("bn.backward", "bn_backward_numpy", {"forward": "bn_forward_numpy"}, 10, "graded on NumPy arrays"),
    ("bn.backward", "bn_backward_numpy_no_dvar", {"forward": "bn_forward_numpy"}, 0, "dz differs"),
    ("bn.jacobian", "jac_numpy", {}, 8, "it was graded on NumPy arrays"),
    ("bn.jacobian", "jac_autograd", {}, 8, "Correct values"),
    ("bn.jacobian", "jac_slide", {}, 0, "the right cross term is -(z_i-mu)(z_j-mu)"),
    ("bn.jacobian", "jac_no_cross", {}, 0, "differs from the expected value"),
    ("bn.inference", "inf_ok_loop", {}, 6, "Correct values"),
    ("bn.inference", "inf_no_correction", {}, 0, "times the expected one"),
    ("dropout", "dropout_ok", {}, 10, "probability below 1e-06"),
    # inputs and masks differ per row (the rng is seeded by the row's id): a correct dropout passes them all
    ("dropout", "dropout_ok", {"keep_probs": [0.9, 0.1]}, 10, "keep_prob in {0.9, 0.1}"),
    ("dropout", "dropout_ok", {"keep_probs": [0.6, 0.35]}, 10, "keep_prob in {0.6, 0.35}"),
    ("dropout", "dropout_non_inverted", {}, 4, "This is non-inverted (classic) dropout"),
    ("dropout", "dropout_drop_prob", {}, 5, "probability of KEEPING"),
    ("dropout", "dropout_fixed_mask", {}, 6, "draw a new random mask on every call"),
    ("dropout", "dropout_ignores_generator", {}, 9, "generators seeded alike"),
    ("dropout", "dropout_no_generator_param", {}, 9, "Accept a torch.Generator"),
    ("dropout", "dropout_eval_scaled", {}, 6, "should be x unchanged"),
    ("l2", "l2_forgets_lr", {}, 0, "differs from the expected value"),
    ("clip.norm", "clip_norm_ok", {}, 3, "Correct values"),
    ("clip.norm", "clip_norm_always", {}, 0, "theta=100.0"),
    ("clip.norm", "clip_norm_as_value", {}, 0, "g = [0.9, 100], theta = 1"),
    ("sched.power", "power_default_c2", {}, 0, "t=20, eta0=0.5, s=20: got 0.125, expected 0.25"),
    ("sched.exponential", "exp_natural", {}, 0, "expected"),
    ("sched.performance", "PerfNonStrict", {}, 0, "an equal loss is not an improvement"),
    ("sched.performance", "PerfTorchCounting", {}, 0, "expected 0.05"),
    ("act.relu", "relu_max", {}, 2, "Correct values and gradients"),
    ("act.leaky_relu", "leaky_default_wrong", {}, 0, "with N=10"),
    ("act.elu", "elu_detached", {}, 0, "not connected to the inputs"),
    ("act.selu", "selu_torch", {}, 2, "Correct values and gradients"),
    ("act.selu", "selu_rounded", {}, 0, "differs from the expected value"),
    ("early", "EarlyNonStrict", {}, 0, "an equal loss is not an improvement"),
    ("early", "EarlyNoMinDelta", {}, 0, "With EarlyNoMinDelta(patience=2, min_delta=0.25)"),
    ("early", "EarlySticky", {}, 6, "Same results as the reference"),
    ("transfer", "freeze_every_child", {}, 0, "including those without parameters"),
    ("transfer", "freeze_returns_copy", {}, 6, "The right parameters are frozen"),
    ("transfer", "freeze_only_unfreezes", {}, 0, "trainable but should be frozen"),
    ("div.l2", "l2div_no_half", {}, 0, "differs from the expected value"),
    ("div.l2", "l2div_float", {}, 0, "not connected to the inputs"),
    ("div.kl", "kl_xlogy", {}, 5, "Correct values and gradients"),
    ("div.kl", "kl_naive", {}, 0, "0 log 0 = 0"),
    ("div.kl", "kl_reversed", {}, 0, "contains NaN or infinite values"),
    ("div.kl", "not_defined_anywhere", {}, 0, "is not defined in the submission"),
]


@pytest.fixture(scope="module")
def tricks_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "tricks.yaml")


@pytest.fixture(scope="module")
def graded(tricks_rubric, tmp_path_factory):
    """One submission holding every variant; one check per table row."""
    folder = tmp_path_factory.mktemp("tricks_variants")
    shutil.copy(ROOT / "tests" / "data" / "tricks_variants.py", folder / "tricks.py")
    by_id = {c.id: c for c in tricks_rubric.checks}
    specs = tuple(dataclasses.replace(by_id[cid], id=f"{cid}#{variant}#{i}", target=variant,
                                      params={**by_id[cid].params, **params})
                  for i, (cid, variant, params, _, _) in enumerate(CASES))
    question = dataclasses.replace(tricks_rubric.questions[0], checks=specs, points=sum(s.points for s in specs))
    rubric = dataclasses.replace(tricks_rubric, questions=[question])
    run = grade(folder, rubric)
    return {r.check_id: r for r in run.results}


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_check_score_and_feedback(graded, i):
    check_id, variant, _, score, phrase = CASES[i]
    result = graded[f"{check_id}#{variant}#{i}"]
    text = "\n".join(result.feedback)
    assert result.score == score, text
    assert phrase in text, text
    if score < result.max_score:
        assert result.items, "a failed check names the rubric item it lost points for"


def test_dropout_tolerances_keep_a_correct_implementation_failing_below_one_in_a_million():
    # The rate test at N = 100,000 with m = 6 tests: the margin must be tight enough to catch a
    # keep probability off by 0.01, and the bound on failing a correct implementation is delta/m each.
    n, m = 100_000, 6
    t = hoeffding_tolerance(n, n, DEFAULT_DELTA / m)
    assert 0.005 < t < 0.01
    assert m * 2 * math.exp(-2 * n * t * t) == pytest.approx(DEFAULT_DELTA)


def test_zero_dimensional_results_keep_their_shape_across_the_sandbox_boundary():
    """Regression (found by div.l2): np.ascontiguousarray made a 0-d array shape (1,) on the wire."""
    import os

    import numpy as np

    from grader import protocol

    read_end, write_end = os.pipe()
    try:
        protocol.write_message(write_end, {"value": np.array(2.5), "row": np.arange(6.0)[::2]})
        message = protocol.read_message(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert message["value"].shape == () and message["value"] == 2.5
    assert message["row"].tolist() == [0.0, 2.0, 4.0]


def test_numpy_batchnorm_example_gets_full_marks_and_is_told_it_was_graded_on_arrays(tricks_rubric):
    """submissions_example/tricks/numpy_batchnorm: CS231n-style NumPy batch norm, the rest in torch."""
    from conftest import EXAMPLES

    run = grade(EXAMPLES / "tricks" / "numpy_batchnorm", tricks_rubric, skip_training=True)
    assert run.score == run.max_score == 90, [(r.check_id, r.feedback) for r in run.results if not r.passed]
    for r in run.results:
        if r.check_id.startswith("bn."):
            assert "graded on NumPy arrays" in r.feedback[0], r.check_id
        else:
            assert "NumPy" not in "\n".join(r.feedback), r.check_id

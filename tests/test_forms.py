"""Equivalent forms (grader/checks/forms.py): rubric validation, and recognisers that a wrong answer cannot pass.

The checks that use them are graded end to end through the sandbox in
tests/test_checks_hw4.py and tests/test_checks_tricks.py; here the rules
themselves are pinned on plain arrays, with no student code involved.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from grader.checks.conv_filter import BadParameters, conv_cost, conv_params, cost_limit
from grader.checks.forms import Candidate, channel_permutation, describe_permutation
from grader.errors import RubricErrors
from grader.rubric.load import load_rubric

# --- rubric syntax ------------------------------------------------------------------------------


def _rubric_with(tmp_path: Path, question: int, check: int, params: dict) -> Path:
    data = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    data["questions"][question]["checks"][check]["params"].update(params)
    (tmp_path / "rubrics").mkdir(exist_ok=True)
    if not (tmp_path / "reference").exists():
        (tmp_path / "reference").symlink_to(ROOT / "reference")
    path = tmp_path / "rubrics" / "hw4.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _errors(path: Path) -> str:
    with pytest.raises(RubricErrors) as info:
        load_rubric(path)
    return str(info.value)


P1, P5_LOSS, P6 = (0, 0), (4, 0), (5, 0)  # (question, check) in rubrics/hw4.yaml


@pytest.mark.parametrize("where,params,message", [
    (P5_LOSS, {"accept": {"reductoin": ["mean"]}}, "'reductoin' was unexpected"),
    (P5_LOSS, {"accept": {"reduction": ["median"]}}, "params.accept.reduction"),
    (P5_LOSS, {"accept": {"constant_factor": {"credit": 1.5}}}, "1.5 is greater than the maximum of 1"),
    (P5_LOSS, {"accept": {"constant_factor": {"credit": "full"}}}, "'full' is not a number"),
    (P5_LOSS, {"accept": {"constant_factor": {}}}, "'credit' is a required property"),
    (P5_LOSS, {"accept": {"permuted_channels": {"credit": 0.5}}},
     "check kind tensor_function does not recognise the form 'permuted_channels' (it recognises: reduction, constant_factor)"),
    (P1, {"accept": {"constant_factor": {"credit": 1.0}}},
     "check kind conv_filter does not recognise the form 'constant_factor' (it recognises: permuted_channels)"),
    (P1, {"array_api": ["torch", "numpy"]}, "check kind conv_filter calls the student's code with torch only"),
    (P5_LOSS, {"array_api": ["numpy"]}, "params.array_api"),
    (P5_LOSS, {"array_api": ["torch", "jax"]}, "'jax' is not one of ['torch', 'numpy']"),
    (P5_LOSS, {"array_api": ["torch", "numpy"]}, "a check with grad_wrt compares gradients by autograd"),
    (P6, {"accept": {"constant_factor": {"credit": 1.0}}}, "this check names 2 outputs"),
])
def test_unknown_or_ill_typed_forms_are_rubric_errors_naming_the_path(tmp_path, where, params, message):
    text = _errors(_rubric_with(tmp_path, *where, params))
    assert f"questions[{where[0]}].checks[{where[1]}].params" in text, text
    assert message in text, text


def test_the_shipped_rubrics_declare_their_forms():
    hw4 = {c.id: c for c in load_rubric(ROOT / "rubrics" / "hw4.yaml").checks}
    assert hw4["p5.loss_function"].params["accept"] == {"reduction": ["none", "mean"], "constant_factor": {"credit": 1.0}}
    assert hw4["p1"].params["accept"] == {"permuted_channels": {"credit": 0.5}}
    tricks = {c.id: c for c in load_rubric(ROOT / "rubrics" / "tricks.yaml").checks}
    assert all(tricks[i].params["array_api"] == ["torch", "numpy"]
               for i in ("bn.forward", "bn.backward", "bn.jacobian", "bn.inference"))


# --- a constant factor and reductions -----------------------------------------------------------


def _cases(rng: np.random.Generator, sizes=(1, 7, 64)) -> list[np.ndarray]:
    return [rng.uniform(0.1, 2.0, n) for n in sizes]


def _survives(candidate: Candidate, pairs: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    return all(candidate.matches(got, expected, rtol=1e-5, atol=1e-6) for got, expected in pairs)


def test_one_positive_factor_across_all_cases_is_a_factor():
    rng = np.random.default_rng(0)
    c = Candidate("none", True)
    assert _survives(c, [(2.0 * e, e) for e in _cases(rng)]) and c.factor == pytest.approx(2.0)


@pytest.mark.parametrize("name,make", [
    ("random signs", lambda e, rng, k: 2.0 * e * rng.choice([-1.0, 1.0], e.shape)),
    ("a factor per case", lambda e, rng, k: (k + 2.0) * e),
    ("a negative factor", lambda e, rng, k: -2.0 * e),
    ("noise around a factor", lambda e, rng, k: 2.0 * e * (1 + 1e-3 * rng.standard_normal(e.shape))),
    ("a tiny factor of garbage", lambda e, rng, k: 1e-9 * rng.standard_normal(e.shape)),
    ("zeros", lambda e, rng, k: 0.0 * e),
    ("an implausible factor", lambda e, rng, k: 1e5 * e),
])
def test_wrong_answers_are_not_a_constant_factor(name, make):
    rng = np.random.default_rng(1)
    pairs = [(make(e, rng, k), e) for k, e in enumerate(_cases(rng))]
    assert not _survives(Candidate("none", True), pairs), name


def test_a_factor_must_hold_on_the_gradients_too():
    rng = np.random.default_rng(2)
    e = rng.uniform(0.1, 2.0, 7)
    c = Candidate("none", True)
    assert c.matches(2.0 * e, e, rtol=1e-5, atol=1e-6)
    g = [rng.standard_normal(7)]
    assert c.grads_match([2.0 * g[0]], g, rtol=1e-4, atol=1e-5)
    assert not c.grads_match([1.0 * g[0]], g, rtol=1e-4, atol=1e-5)


def test_a_reduction_must_match_exactly():
    rng = np.random.default_rng(3)
    e = rng.uniform(0.1, 2.0, 7)
    assert Candidate("mean", False).matches(np.asarray(e.mean()), e, rtol=1e-5, atol=1e-6)
    assert not Candidate("mean", False).matches(np.asarray(e.sum()), e, rtol=1e-5, atol=1e-6)
    assert not Candidate("mean", False).matches(np.asarray(e.mean() * 1.01), e, rtol=1e-5, atol=1e-6)
    assert not Candidate("mean", False).matches(e[:1].copy(), e, rtol=1e-5, atol=1e-6)  # shape (1,), not ()


# --- permuted channels ----------------------------------------------------------------------------


def test_a_channel_permutation_is_found_and_named():
    rng = np.random.default_rng(4)
    expected = rng.standard_normal((2, 3, 5, 5))
    assert describe_permutation(channel_permutation(expected[:, [1, 0, 2]], expected, rtol=1e-5, atol=1e-6)) == \
        "output channels 0 and 1 are swapped"
    assert channel_permutation(expected[:, [2, 0, 1]], expected, rtol=1e-5, atol=1e-6) == [2, 0, 1]
    # equal expected channels: a matching still exists
    tied = expected[:, [0, 0, 1]]
    assert channel_permutation(tied[:, [2, 0, 1]], tied, rtol=1e-5, atol=1e-6) is not None


def test_a_duplicated_or_altered_channel_is_not_a_permutation():
    rng = np.random.default_rng(5)
    expected = rng.standard_normal((2, 2, 4, 4))
    assert channel_permutation(expected[:, [0, 0]], expected, rtol=1e-5, atol=1e-6) is None
    assert channel_permutation(np.stack([expected[:, 1], -expected[:, 0]], 1), expected, rtol=1e-5, atol=1e-6) is None


# --- bounds on conv parameters (issue 8) ------------------------------------------------------------


def _limit(x_shape):
    ref = conv_params({"weight": np.zeros((2, 1, 3, 3), np.float32), "padding": 1}, {})
    return cost_limit([conv_cost(ref, x_shape)])


@pytest.mark.parametrize("value,message", [
    ({"weight": np.zeros((2, 1, 3, 3)), "padding": 10**15}, None),
    ({"weight": np.zeros((2, 1, 3, 3)), "padding": 20_000, "stride": 20_000}, None),
    ({"weight": np.zeros((2, 1, 3, 3)), "stride": 0}, "the stride must be at least 1"),
    ({"weight": np.zeros((2, 1, 3, 3)), "padding": -3}, "the padding cannot be negative"),
    ({"weight": np.zeros((2, 1, 3, 3)), "groups": 3}, "groups=3 must divide"),
    ({"weight": np.zeros((2, 4, 3, 3))}, "expects 4 input channels, but X has 1"),
    ({"weight": np.zeros((2, 1, 40, 3))}, "kernel is larger than the padded input"),
    ({"weight": np.zeros((8192, 1, 28, 28)), "padding": 0}, None),
])
def test_conv_parameters_are_bounded_by_arithmetic_before_any_tensor_op(value, message):
    x_shape = (2, 1, 28, 28)
    params = conv_params(value, {})
    if message:
        with pytest.raises(BadParameters, match=message):
            conv_cost(params, x_shape)
    else:
        assert conv_cost(params, x_shape).within(_limit(x_shape)) is not None


def test_legitimate_conv_parameters_are_within_bounds():
    x_shape = (2, 1, 28, 28)
    for value in ({"weight": np.zeros((2, 1, 3, 3)), "padding": 1}, {"weight": np.zeros((2, 1, 3, 3)), "padding": (2, 2)},
                  {"weight": np.zeros((2, 1, 5, 5)), "padding": 2, "stride": 2}):
        assert conv_cost(conv_params(value, {}), x_shape).within(_limit(x_shape)) is None

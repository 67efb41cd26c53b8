"""Tests for grader.mathexpr equivalence: a2 q1/q5/q6, the bn.jacobian slide error,
time limits, undecided handling and the numeric evaluator.

Each table row is (student answer, expected verdict). The numeric evaluator
is checked against numpy computing the same product by hand.
"""

from __future__ import annotations

import json
import multiprocessing
import time

import numpy as np
import pytest
import sympy

from grader.mathexpr import SymbolSpec, Verdict, compare, parse_expression, parse_reference, spec_table
from grader.mathexpr import symbolic
from grader.mathexpr.equivalence import _decide
from grader.mathexpr.numeric import Counterexample, NumericOutcome, evaluate
from grader.mathexpr.symbolic import SymbolicOutcome

Q5 = spec_table(SymbolSpec("w_i"), SymbolSpec("g", interval=(0, 1)))
Q6 = spec_table(SymbolSpec("x"))
Q1 = spec_table(
    *(SymbolSpec(name, commutative=False) for name in ("W1", "W2", "b1", "b2", "x")),
    SymbolSpec("a"),
    SymbolSpec("c"),
)
# tricks bn.jacobian, one entry J[j, i]: delta is the Kronecker delta (0 or 1).
BN = spec_table(
    SymbolSpec("z_i"),
    SymbolSpec("z_j"),
    SymbolSpec("mu"),
    SymbolSpec("var", positive=True),
    SymbolSpec("eps", positive=True),
    SymbolSpec("B", positive=True),
    SymbolSpec("delta", interval=(0, 1)),
)


def _verdict(answer: str, reference: str, symbols: dict[str, SymbolSpec], **kwargs: float) -> Verdict:
    parsed = parse_expression(answer, symbols)
    assert parsed.ok, parsed.error
    assert parsed.expr is not None
    return compare(parsed.expr, parse_reference(reference, symbols), symbols, **kwargs)


Q5_REF = "w_i*g*(1-g)"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("w_i*g - w_i*g^2", True),
        ("w_i*g*(1-g)", True),
        ("(1-g)*g*w_i", True),
        ("w_i*(1/(1+exp(log(1/g - 1))))*(1-g)", True),  # exp(log(1/g-1)) = 1/g-1 because g in (0, 1)
        ("w_i*g/(1/(1-g))", True),
        ("w_i*exp(-log(1/g))*(1-g)", True),
        ("w_i*g*(1+g)", False),
        ("g*(1-g)", False),
        ("w_i*g^2*(1-g)", False),
        ("w_i*g*(1-g)^2", False),
        ("-w_i*g*(1-g)", False),
    ],
)
def test_a2_q5_dg_dxi(answer: str, expected: bool) -> None:
    verdict = _verdict(answer, Q5_REF, Q5)
    assert verdict.equivalent is expected, verdict


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("tanh(x)", "2*sigmoid(2*x) - 1", True),
        ("(exp(x) - exp(-x))/(exp(x) + exp(-x))", "2*sigmoid(2*x) - 1", True),
        ("2*sigmoid(x) - 1", "2*sigmoid(2*x) - 1", False),
        ("tanh(2*x)", "2*sigmoid(2*x) - 1", False),
        ("4*sigmoid(2*x) - 4*sigmoid(2*x)^2", "4*sigmoid(2*x)*(1-sigmoid(2*x))", True),
        ("1 - tanh(x)^2", "4*sigmoid(2*x)*(1-sigmoid(2*x))", True),
        ("sigmoid(2*x)*(1-sigmoid(2*x))", "4*sigmoid(2*x)*(1-sigmoid(2*x))", False),
        ("1 - tanh(x)", "4*sigmoid(2*x)*(1-sigmoid(2*x))", False),
    ],
)
def test_a2_q6_tanh_via_sigmoid(answer: str, reference: str, expected: bool) -> None:
    verdict = _verdict(answer, reference, Q6)
    assert verdict.equivalent is expected, verdict


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("a^2*W2*W1", "a**2*W2*W1", True),
        ("a*W2*a*W1", "a**2*W2*W1", True),
        ("(a*W2)*(a*W1)", "a**2*W2*W1", True),
        ("a**2*W1*W2", "a**2*W2*W1", False),  # matrices do not commute
        ("W2*W1", "a**2*W2*W1", False),
        ("a**2*W2*b1 + a*W2*c + a*b2 + c", "a**2*W2*b1 + a*W2*c + a*b2 + c", True),
        ("c + a*b2 + a*W2*c + a^2*W2*b1", "a**2*W2*b1 + a*W2*c + a*b2 + c", True),
        ("a*(W2*(a*b1 + c) + b2) + c", "a**2*W2*b1 + a*W2*c + a*b2 + c", True),
        ("a**2*b1*W2 + a*W2*c + a*b2 + c", "a**2*W2*b1 + a*W2*c + a*b2 + c", False),
        ("a**2*W2*b1 + a*W2*c + b2 + c", "a**2*W2*b1 + a*W2*c + a*b2 + c", False),
    ],
)
def test_a2_q1_non_commutative(answer: str, reference: str, expected: bool) -> None:
    verdict = _verdict(answer, reference, Q1)
    assert verdict.equivalent is expected, verdict
    if expected is False:
        assert verdict.method == "random-points"


BN_REF = "(delta - 1/B)/sqrt(var + eps) - (z_i - mu)*(z_j - mu)/(B*(var + eps)^(3/2))"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (BN_REF, True),
        ("((delta - 1/B)*(var + eps) - (z_i - mu)*(z_j - mu)/B)/(var + eps)^1.5", True),
        ("(B*delta - 1)/(B*sqrt(var + eps)) - (z_j - mu)*(z_i - mu)*(var + eps)^(-3/2)/B", True),
        # The lecture slides' cross term: wrong, must not be accepted.
        ("(delta - 1/B)/sqrt(var + eps) - (z_i - mu)^2/(B*(var + eps)^(3/2))", False),
    ],
)
def test_tricks_bn_jacobian_entry(answer: str, expected: bool) -> None:
    verdict = _verdict(answer, BN_REF, BN)
    assert verdict.equivalent is expected, verdict


def test_wrong_answer_feedback_gives_expected_versus_actual() -> None:
    verdict = _verdict("w_i*g*(1+g)", Q5_REF, Q5)
    assert verdict.equivalent is False
    assert verdict.counterexample is not None
    assert set(verdict.counterexample.point) == {"g", "w_i"}
    assert 0 < verdict.counterexample.point["g"] < 1  # sampled inside the declared interval
    assert verdict.counterexample.student_value in verdict.explanation
    assert verdict.counterexample.expected_value in verdict.explanation


def test_matrix_feedback_mentions_order() -> None:
    verdict = _verdict("a**2*W1*W2", "a**2*W2*W1", Q1)
    assert "matrix products do not commute" in verdict.explanation


def test_reference_with_bare_sympy_symbols_is_matched_by_name() -> None:
    x = sympy.Symbol("x")  # no assumptions, unlike the parser's real x
    verdict = compare(parse_expression("2*sigmoid(2*x) - 1", Q6).expr, sympy.tanh(x), Q6)  # type: ignore[arg-type]
    assert verdict.equivalent is True


def test_same_seed_gives_same_verdict() -> None:
    first = _verdict("w_i*g*(1+g)", Q5_REF, Q5, seed=3)
    second = _verdict("w_i*g*(1+g)", Q5_REF, Q5, seed=3)
    assert first == second


def test_verdict_serialises_to_json() -> None:
    verdict = _verdict("w_i*g*(1+g)", Q5_REF, Q5)
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["equivalent"] is False
    assert data["method"] == "random-points"
    assert "g" in data["counterexample"]["point"]


# --- time limits and undecided -----------------------------------------------------

HARD = spec_table(SymbolSpec("x"), SymbolSpec("y"))
HARD_ANSWER = "sigmoid(x)^3*tanh(y)^2 + cos(2*x)"
HARD_REFERENCE = "(1-sigmoid(-x))^3*(2*sigmoid(2*y)-1)^2 + 1 - 2*sin(x)^2"  # simplify needs ~1 s


def test_tiny_timeout_on_hard_expression_is_not_silently_false() -> None:
    start = time.monotonic()
    verdict = _verdict(HARD_ANSWER, HARD_REFERENCE, HARD, timeout_s=0.05)
    assert time.monotonic() - start < 3.0
    assert verdict.equivalent is not False
    assert verdict.symbolic_status == "timeout"
    assert verdict.equivalent is True and verdict.method == "random-points"
    assert "timed out" in verdict.explanation


def _slow_steps(difference: sympy.Expr, noncommutative: bool) -> tuple[str, str, str]:
    time.sleep(60)  # a simplify that never finishes
    return "zero", "simplify", ""


def test_timeout_kills_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symbolic, "_steps", _slow_steps)  # inherited by the forked child
    children_before = set(multiprocessing.active_children())
    start = time.monotonic()
    verdict = _verdict("w_i*g - w_i*g^2", Q5_REF, Q5, timeout_s=0.5)
    assert time.monotonic() - start < 5.0
    assert verdict.equivalent is True and verdict.method == "random-points"
    assert set(multiprocessing.active_children()) <= children_before  # the worker was killed and reaped


def test_timeout_plus_failed_evaluation_is_undecided(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symbolic, "_steps", _slow_steps)
    symbols = spec_table(SymbolSpec("x", positive=True))
    # sqrt(-x) is not real for x > 0: no sample point lies in the reference's real domain.
    verdict = _verdict("sqrt(-x)*(x + 1) - sqrt(-x)", "sqrt(-x)*x", symbols, timeout_s=0.3)
    assert verdict.equivalent is None
    assert verdict.method == "undecided"
    assert "checked by hand" in verdict.explanation
    assert "timed out" in verdict.explanation


def test_expressions_that_cannot_be_evaluated_are_undecided_not_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symbolic, "_steps", _slow_steps)
    symbols = spec_table(SymbolSpec("W", commutative=False))
    # exp of a matrix is outside the numeric evaluator: no verdict either way.
    verdict = _verdict("exp(W)*W", "W*exp(W) + W - W", symbols, timeout_s=0.3)
    assert verdict.equivalent is None
    assert verdict.method == "undecided"


Z = SymbolicOutcome("zero", "simplify", "", 0.1)
NZ = SymbolicOutcome("nonzero", "simplify", "", 0.1)
NZC = SymbolicOutcome("nonzero-constant", "simplify", "2", 0.1)
TO = SymbolicOutcome("timeout", None, "", 5.0)
ERR = SymbolicOutcome("error", None, "MemoryError", 0.1)
AGREE = NumericOutcome("agree", 8)
FAILED = NumericOutcome("failed", 0, detail="the expected answer is undefined")
DISAGREE = NumericOutcome("disagree", 1, counterexample=Counterexample({"x": 0.5}, (), "1", "2", 0.5))


@pytest.mark.parametrize(
    ("sym", "num", "equivalent", "method"),
    [
        (Z, AGREE, True, "simplify"),
        (Z, FAILED, True, "simplify"),
        (Z, DISAGREE, None, "undecided"),
        (NZC, AGREE, None, "undecided"),
        (NZC, FAILED, False, "simplify"),
        (NZC, DISAGREE, False, "simplify"),
        (NZ, DISAGREE, False, "random-points"),
        (TO, DISAGREE, False, "random-points"),
        (ERR, DISAGREE, False, "random-points"),
        (NZ, AGREE, True, "random-points"),
        (TO, AGREE, True, "random-points"),
        (ERR, AGREE, True, "random-points"),
        (NZ, FAILED, None, "undecided"),
        (TO, FAILED, None, "undecided"),
        (ERR, FAILED, None, "undecided"),
    ],
)
def test_decision_table(sym: SymbolicOutcome, num: NumericOutcome, equivalent: bool | None, method: str) -> None:
    verdict = _decide(sym, num, rtol=1e-8)
    assert (verdict.equivalent, verdict.method) == (equivalent, method)
    assert verdict.explanation


# --- numeric evaluator against numpy ---------------------------------------------------


def test_matrix_evaluation_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    w1, w2, b1, b2 = (rng.standard_normal((3, 3)) for _ in range(4))
    a_val, c_val = 0.7, -1.3
    expr = parse_reference("a**2*W2*b1 + a*W2*c + a*b2 + c", Q1)
    got = evaluate(expr, {"W1": w1, "W2": w2, "b1": b1, "b2": b2, "a": a_val, "c": c_val})
    eye = np.eye(3)
    # A scalar meeting matrices is c*I: the algebra sympy uses for commutative symbols.
    expected = a_val**2 * w2 @ b1 + a_val * w2 @ (c_val * eye) + a_val * b2 + c_val * eye
    np.testing.assert_allclose(np.asarray(got).real, expected, rtol=1e-12, atol=1e-12)


def test_scalar_evaluation_matches_math() -> None:
    expr = parse_reference("4*sigmoid(2*x)*(1-sigmoid(2*x))", Q6)
    value = evaluate(expr, {"x": 0.3})
    assert abs(value - (1 - np.tanh(0.3) ** 2)) < 1e-12

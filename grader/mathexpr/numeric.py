"""Numeric spot-check: evaluate two expressions at random points and compare.

Scalar symbols get random real numbers inside their declared range;
non-commutative (matrix) symbols get random square real matrices of one size,
so every product is defined and order matters. A commutative scalar ``c``
meeting a matrix is read as ``c*I``: that is the algebra sympy itself uses
(scalars commute with everything), so both sides are evaluated consistently.

The evaluator walks the sympy tree by hand instead of using ``lambdify``:
lambdify generates Python source and ``exec``s it, which this project avoids
on principle, and it has no notion of "scalar means c*I" for matrix symbols.
Only the node types our parser can produce (plus a few common functions a
course reference might use) are supported; anything else raises
``EvaluationError``, which the caller reports as "could not evaluate".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Union

import numpy as np
import sympy

from .symbols import POSITIVE_SAMPLE_RANGE, REAL_SAMPLE_RANGE, SymbolSpec

# A value during evaluation: a complex scalar or a complex (n, n) matrix.
Value = Union[complex, np.ndarray]

# The reference must be this close to real at a point for the point to count:
# a complex reference means the point is outside the expression's real domain.
_IMAG_TOL = 1e-9

_FUNCTIONS: dict[type[sympy.Basic], Callable[[complex], complex]] = {
    sympy.exp: np.exp,
    sympy.log: np.log,
    sympy.tanh: np.tanh,
    sympy.sinh: np.sinh,
    sympy.cosh: np.cosh,
    sympy.sin: np.sin,
    sympy.cos: np.cos,
    sympy.tan: np.tan,
    sympy.atan: np.arctan,
    sympy.asin: np.arcsin,
    sympy.acos: np.arccos,
    sympy.Abs: np.abs,
}


class EvaluationError(Exception):
    """The expression cannot be evaluated numerically with the given values."""


def _as_matrix(value: Value, size: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    return value * np.eye(size, dtype=complex)


def _mul(a: Value, b: Value) -> Value:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a @ b
    return a * b


def _add(a: Value, b: Value, size: int) -> Value:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return _as_matrix(a, size) + _as_matrix(b, size)
    return a + b


def evaluate(expr: sympy.Basic, values: Mapping[str, Value], *, matrix_size: int = 3) -> Value:
    """Evaluate ``expr`` with symbols (by name) replaced by ``values``.

    Raises EvaluationError for unsupported nodes, matrix powers that are not
    integers, functions of matrices, and unknown symbols.
    """
    with np.errstate(all="ignore"):  # inf/nan are detected by the caller
        return _eval(expr, values, matrix_size)


def _eval(expr: sympy.Basic, values: Mapping[str, Value], size: int) -> Value:
    if isinstance(expr, sympy.Symbol):
        if expr.name not in values:
            raise EvaluationError(f"no value for symbol {expr.name}")
        return values[expr.name]
    if expr is sympy.I:
        return 1j
    if expr.is_Number or isinstance(expr, sympy.NumberSymbol):
        if expr in (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
            return complex(np.nan, np.nan)
        try:
            return complex(float(expr))
        except OverflowError:
            return complex(np.inf, 0.0)
    if isinstance(expr, sympy.Add):
        total: Value = complex(0.0)
        for arg in expr.args:
            total = _add(total, _eval(arg, values, size), size)
        return total
    if isinstance(expr, sympy.Mul):
        # Mul.args keep the order of non-commutative factors; commutative
        # factors are scalars, so their position does not matter.
        product: Value = complex(1.0)
        for arg in expr.args:
            product = _mul(product, _eval(arg, values, size))
        return product
    if isinstance(expr, sympy.Pow):
        base = _eval(expr.base, values, size)
        exponent = _eval(expr.exp, values, size)
        if isinstance(exponent, np.ndarray):
            raise EvaluationError("matrix in an exponent")
        if isinstance(base, np.ndarray):
            if not expr.exp.is_Integer:
                raise EvaluationError("non-integer power of a matrix")
            try:
                return np.linalg.matrix_power(base, int(expr.exp))
            except np.linalg.LinAlgError:
                return np.full((size, size), np.nan, dtype=complex)
        return complex(np.power(complex(base), complex(exponent)))
    fn = _FUNCTIONS.get(type(expr))
    if fn is not None and len(expr.args) == 1:
        arg = _eval(expr.args[0], values, size)
        if isinstance(arg, np.ndarray):
            raise EvaluationError(f"{type(expr).__name__} of a matrix")
        return complex(fn(complex(arg)))
    raise EvaluationError(f"cannot evaluate {type(expr).__name__} numerically")


def _finite(value: Value) -> bool:
    return bool(np.all(np.isfinite(value)))


def _real(value: Value) -> bool:
    arr = np.asarray(value)
    return bool(np.all(np.abs(arr.imag) <= _IMAG_TOL * (1.0 + np.abs(arr.real))))


def _norm(value: Value) -> float:
    return float(np.linalg.norm(np.asarray(value)))


def _describe(value: Value) -> str:
    """Short display of a value: a real number where possible."""
    if isinstance(value, np.ndarray):
        return f"a {value.shape[0]}x{value.shape[1]} matrix"
    if abs(value.imag) <= _IMAG_TOL * (1.0 + abs(value.real)):
        return f"{value.real:.6g}"
    return f"{value.real:.6g}{value.imag:+.6g}i"


@dataclass(frozen=True)
class Counterexample:
    """A point where the answer and the reference differ.

    point: values of the scalar symbols; matrix symbols are listed in
    ``matrices`` (random real matrices, not shown). student_value and
    expected_value are short displays of the two results ("a 3x3 matrix"
    for matrices). relative_difference: |s - r| / max(|s|, |r|).
    """

    point: Mapping[str, float]
    matrices: tuple[str, ...]
    student_value: str
    expected_value: str
    relative_difference: float

    @property
    def involves_matrices(self) -> bool:
        return bool(self.matrices)

    def describe_point(self) -> str:
        parts = [f"{name} = {value:.4g}" for name, value in self.point.items()]
        if self.matrices:
            parts.append("random matrices for " + ", ".join(self.matrices))
        return ", ".join(parts) if parts else "a sample point"


@dataclass(frozen=True)
class NumericOutcome:
    """Result of the spot-check.

    status: "agree" (every usable point agreed), "disagree" (a counterexample
    was found) or "failed" (too few usable points). points: usable points
    compared. detail: why points were unusable, for the explanation.
    """

    status: Literal["agree", "disagree", "failed"]
    points: int
    detail: str = ""
    counterexample: Counterexample | None = field(default=None)


def _range_for(symbol: sympy.Symbol, specs: Mapping[str, SymbolSpec]) -> tuple[float, float] | None:
    spec = specs.get(symbol.name)
    if spec is not None:
        return spec.sample_range()
    # A symbol nobody declared (e.g. in a hand-built reference): go by sympy's assumptions.
    if symbol.is_commutative is False:
        return None
    if symbol.is_positive:
        return POSITIVE_SAMPLE_RANGE
    return REAL_SAMPLE_RANGE


def compare_at_points(
    student: sympy.Expr,
    reference: sympy.Expr,
    specs: Mapping[str, SymbolSpec],
    *,
    n_points: int = 8,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    seed: int = 0,
    matrix_size: int = 3,
) -> NumericOutcome:
    """Compare ``student`` and ``reference`` at up to ``n_points`` random points.

    A point is usable when the reference is finite and real there (otherwise
    it lies outside the reference's domain) and the student's value is
    finite. Values agree when ``|s - r| <= rtol * max(|s|, |r|) + atol``
    (Frobenius norm for matrices).
    """
    rng = np.random.default_rng(seed)
    free = sorted(student.free_symbols | reference.free_symbols, key=lambda s: s.name)
    names: dict[str, sympy.Symbol] = {}
    for sym in free:  # the same name is one variable, whatever its assumptions
        names.setdefault(sym.name, sym)
    ranges = {name: _range_for(sym, specs) for name, sym in names.items()}
    matrices = tuple(name for name, rng_ in ranges.items() if rng_ is None)

    usable = 0
    reference_unusable = student_undefined = 0
    errors: list[str] = []
    needed = min(3, n_points)
    for _ in range(4 * n_points):  # retry points outside the domain, within reason
        if usable >= n_points:
            break
        values: dict[str, Value] = {}
        for name, bounds in ranges.items():
            if bounds is None:
                values[name] = rng.standard_normal((matrix_size, matrix_size)).astype(complex)
            else:
                values[name] = complex(rng.uniform(bounds[0], bounds[1]))
        try:
            expected = evaluate(reference, values, matrix_size=matrix_size)
        except EvaluationError as exc:
            errors.append(f"the expected answer: {exc}")
            break  # structural: every point would fail the same way
        if not (_finite(expected) and _real(expected)):
            reference_unusable += 1
            continue
        try:
            got = evaluate(student, values, matrix_size=matrix_size)
        except EvaluationError as exc:
            errors.append(f"your answer: {exc}")
            break
        if not _finite(got):
            student_undefined += 1
            continue
        if isinstance(got, np.ndarray) or isinstance(expected, np.ndarray):
            got_cmp, exp_cmp = _as_matrix(got, matrix_size), _as_matrix(expected, matrix_size)
        else:
            got_cmp, exp_cmp = got, expected
        diff = _norm(got_cmp - exp_cmp)
        if diff > rtol * max(_norm(got_cmp), _norm(exp_cmp)) + atol:
            point = {n: float(np.real(v)) for n, v in values.items() if not isinstance(v, np.ndarray)}
            scale = max(_norm(got_cmp), _norm(exp_cmp))
            relative = diff / scale if scale > 0 else float("inf")
            return NumericOutcome(
                "disagree",
                usable + 1,
                counterexample=Counterexample(point, matrices, _describe(got), _describe(expected), relative),
            )
        usable += 1

    if usable >= needed:
        return NumericOutcome("agree", usable)
    reasons = list(errors)
    if reference_unusable:
        reasons.append(f"the expected answer is undefined or not real at {reference_unusable} sampled points")
    if student_undefined:
        reasons.append(f"your answer is undefined (division by zero or overflow) at {student_undefined} sampled points")
    return NumericOutcome("failed", usable, detail="; ".join(reasons) or "no usable sample points")

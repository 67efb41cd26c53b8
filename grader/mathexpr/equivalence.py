"""Decide whether a student's expression is equivalent to the reference.

Two independent checks, combined so that an answer is never marked wrong
when we simply do not know:

* symbolic (``symbolic.py``): ``expand``/``simplify`` of the difference in a
  worker process with a time limit; "0" is a proof of equivalence, a nonzero
  *number* is a proof of difference, anything else proves nothing;
* numeric (``numeric.py``): both sides at random points that respect the
  symbols' assumptions (random matrices for non-commutative symbols); one
  clear disagreement proves difference, agreement everywhere is strong
  evidence of equivalence.

The numeric check runs in this process while sympy works in the child.

| symbolic            | numeric   | verdict                                  |
|---------------------|-----------|------------------------------------------|
| zero                | agree     | True  (method of the symbolic step)      |
| zero                | failed    | True  (symbolic proof alone)             |
| zero                | disagree  | None  (contradiction: needs a human)     |
| nonzero-constant    | agree     | None  (contradiction: needs a human)     |
| nonzero-constant    | otherwise | False (method "simplify")                |
| nonzero/timeout/err | disagree  | False (method "random-points")           |
| nonzero/timeout/err | agree     | True  (method "random-points")           |
| nonzero/timeout/err | failed    | None  (method "undecided")               |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping

import sympy

from .numeric import Counterexample, NumericOutcome, compare_at_points
from .symbolic import SymbolicJob, SymbolicOutcome
from .symbols import SymbolSpec, check_table

Method = Literal["identical", "expand", "simplify", "random-points", "undecided"]


@dataclass(frozen=True)
class Verdict:
    """Outcome of ``compare``.

    equivalent: True, False, or None when it could not be decided (never
        silently False: callers should route None to manual review).
    method: what decided it: "identical" (equal after sympy's automatic
        canonicalisation), "expand", "simplify", "random-points", "undecided".
    explanation: one or two sentences for feedback and logs.
    symbolic_status: the symbolic check's status ("zero", "nonzero",
        "nonzero-constant", "timeout", "error").
    points_checked: usable random points compared (0 if skipped).
    counterexample: where the two differ, when the numeric check found it.
    """

    equivalent: bool | None
    method: Method
    explanation: str
    symbolic_status: str
    points_checked: int = 0
    counterexample: Counterexample | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the counterexample becomes a nested dict)."""
        data = asdict(self)
        if self.counterexample is not None:
            data["counterexample"]["point"] = dict(self.counterexample.point)
            data["counterexample"]["matrices"] = list(self.counterexample.matrices)
        return data


def _canonical(expr: sympy.Expr, symbols: Mapping[str, SymbolSpec]) -> sympy.Expr:
    """Replace each free symbol by the declared one of the same name.

    A reference built with a bare ``sympy.Symbol("x")`` and an answer parsed
    with ``x`` real are different sympy symbols; without this their
    difference would never simplify to 0.
    """
    mapping = {s: symbols[s.name].to_sympy() for s in expr.free_symbols if isinstance(s, sympy.Symbol) and s.name in symbols}
    return expr.xreplace(mapping) if mapping else expr


def _symbolic_phrase(outcome: SymbolicOutcome) -> str:
    if outcome.status == "timeout":
        return f"symbolic simplification timed out after {outcome.seconds:.1f} s"
    if outcome.status == "error":
        return f"symbolic simplification failed ({outcome.detail})"
    return "sympy could not reduce the difference to 0"


def _difference_sentence(ce: Counterexample) -> str:
    if ce.involves_matrices:
        return (
            f"with {ce.describe_point()}, your answer and the expected one give different matrices "
            f"(relative difference {ce.relative_difference:.2g}); note that matrix products do not commute, so the order of factors matters"
        )
    return (
        f"at {ce.describe_point()} your answer evaluates to {ce.student_value}, "
        f"but the expected answer evaluates to {ce.expected_value}"
    )


def _decide(sym: SymbolicOutcome, num: NumericOutcome, *, rtol: float) -> Verdict:
    points = num.points
    ce = num.counterexample
    if sym.status == "zero":
        how = "they are identical in sympy's standard form" if sym.method == "identical" else (
            f"sympy's {sym.method}() reduces their difference to 0"
        )
        method: Method = sym.method or "simplify"
        if num.status == "agree":
            return Verdict(True, method, f"Equivalent: {how}, and they agree at {points} random points.", sym.status, points)
        if num.status == "failed":
            return Verdict(
                True, method, f"Equivalent: {how} (the numeric spot-check could not run: {num.detail}).", sym.status, points
            )
        return Verdict(
            None,
            "undecided",
            f"Undecided: {how}, but numerically {_difference_sentence(ce) if ce else 'they differ'}. "
            "This needs to be checked by hand.",
            sym.status,
            points,
            ce,
        )
    if sym.status == "nonzero-constant":
        if num.status == "agree":
            return Verdict(
                None,
                "undecided",
                f"Undecided: sympy finds the difference is the constant {sym.detail}, yet the values agree at "
                f"{points} random points. This needs to be checked by hand.",
                sym.status,
                points,
            )
        return Verdict(
            False,
            "simplify",
            f"Not equivalent: your answer differs from the expected one by the constant {sym.detail}.",
            sym.status,
            points,
            ce,
        )
    phrase = _symbolic_phrase(sym)
    if num.status == "disagree" and ce is not None:
        return Verdict(
            False,
            "random-points",
            f"Not equivalent: {_difference_sentence(ce)}.",
            sym.status,
            points,
            ce,
        )
    if num.status == "agree":
        return Verdict(
            True,
            "random-points",
            f"Equivalent: {phrase}, but your answer and the expected one agree at {points} random points "
            f"(relative tolerance {rtol:g}).",
            sym.status,
            points,
        )
    return Verdict(
        None,
        "undecided",
        f"Undecided: {phrase}, and the numeric check could not run ({num.detail}). "
        "This answer needs to be checked by hand.",
        sym.status,
        points,
    )


def compare(
    student: sympy.Expr,
    reference: sympy.Expr,
    symbols: Mapping[str, SymbolSpec],
    *,
    timeout_s: float = 5.0,
    n_points: int = 8,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    seed: int = 0,
    matrix_size: int = 3,
) -> Verdict:
    """Decide whether ``student`` equals ``reference`` for all admissible symbol values.

    ``symbols`` are the question's declarations (assumptions and sampling
    ranges). ``timeout_s`` bounds the symbolic step (wall time); the numeric
    step is cheap and runs meanwhile. ``seed`` makes the random points, hence
    the verdict, reproducible.
    """
    if not isinstance(student, sympy.Basic) or not isinstance(reference, sympy.Basic):
        raise TypeError("compare() takes sympy expressions; parse answers with parse_expression first")
    if timeout_s <= 0 or n_points < 1:
        raise ValueError("timeout_s must be > 0 and n_points >= 1")
    check_table(symbols)
    student = _canonical(student, symbols)
    reference = _canonical(reference, symbols)
    difference = student - reference
    if difference == 0:
        # Same expression after sympy's automatic canonicalisation (term and
        # factor order, exp(log(y)) -> y, ...): nothing left to check.
        return Verdict(True, "identical", "Equivalent: sympy brings both to the same standard form.", "zero")
    job = SymbolicJob(difference, timeout_s=timeout_s)
    try:
        numeric = compare_at_points(
            student, reference, symbols, n_points=n_points, rtol=rtol, atol=atol, seed=seed, matrix_size=matrix_size
        )
        return _decide(job.result(), numeric, rtol=rtol)
    finally:
        job.close()

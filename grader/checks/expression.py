"""Kind ``expression``: a math answer string, judged equivalent to the reference expression or not.

The answer (``answers.yaml`` or the notebook's ANSWERS cell) is parsed by
`grader.mathexpr` through an AST whitelist against the symbols the rubric
declares, with their assumptions::

    params:
      symbols:
        W1: {commutative: false}     # a matrix: products keep their order
        a: {}                        # a real scalar (the default)
        g: {interval: [0, 1]}        # sampled in (0, 1); positive for sympy
        eta: {positive: true}

then compared with the reference (``reference: ANSWERS_EXPR[q5.dg_dxi]``, a
sympy expression or a string in answer syntax): simplification of the
difference under a time limit, confirmed at random points. The feedback says
which method decided. When neither can decide, the check says so and reports
``undecided`` (credit ``params.undecided_credit``, default 0) for a human to
look at, rather than calling the answer wrong. ``params.timeout_s`` bounds
the simplification (default 5 s). ``params.must_use: [sigmoid]`` and
``params.must_not_use: [tanh]`` require the answer to be written in terms of
some functions and not others ("tanh written with sigmoid"): an answer that
breaks them reports ``wrong_form`` and gets no credit even when it is equal
to the reference (``tanh(x)`` restates the question), with a sentence saying
which function to use or avoid. Known mistakes are
expressions in answer syntax (``known_mistakes: [{expression: ..., feedback: ...}]``)
recognised by the same comparison.

No student string reaches ``eval``, ``sympify`` or ``parse_expr``.
"""
from __future__ import annotations

import difflib
from types import ModuleType
from typing import Any, Mapping

import sympy

from grader.checks import register
from grader.checks.answer_keys import lookup_answer
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome
from grader.checks.options import MAPPING, POSITIVE, REQUIRED, Option
from grader.mathexpr import (FUNCTIONS, ReferenceExpressionError, SymbolSpec, SymbolSpecError, compare, format_error,
                             parse_expression, parse_reference)
from grader.rubric.model import CheckSpec
from grader.rubric.references import resolve_reference

FINDINGS = ("parse_error", "undecided", "known_mistake", "wrong_form")
FORM_OPTIONS = ("must_use", "must_not_use")
SYMBOL_OPTIONS = ("positive", "real", "interval", "commutative")
DEFAULT_TIMEOUT_S = 5.0
MISTAKE_TIMEOUT_S = 2.0


def symbol_table(declared: Any) -> dict[str, SymbolSpec]:
    """``params.symbols`` -> name -> SymbolSpec; raises SymbolSpecError (worded for staff) when malformed."""
    if not isinstance(declared, Mapping) or not declared:
        raise SymbolSpecError("params.symbols must map each symbol name to its assumptions, e.g. {g: {interval: [0, 1]}}")
    table: dict[str, SymbolSpec] = {}
    for name, options in declared.items():
        options = options or {}
        if not isinstance(options, Mapping):
            raise SymbolSpecError(f"the assumptions of {name!r} must be a mapping such as {{positive: true}}")
        unknown = sorted(set(options) - set(SYMBOL_OPTIONS))
        if unknown:
            raise SymbolSpecError(f"{name!r} has unknown assumption(s) {', '.join(unknown)} (known: {', '.join(SYMBOL_OPTIONS)})")
        interval = options.get("interval")
        if interval is not None and (not isinstance(interval, (list, tuple)) or len(interval) != 2):
            raise SymbolSpecError(f"the interval of {name!r} must be two numbers [lo, hi]")
        table[str(name)] = SymbolSpec(str(name), positive=bool(options.get("positive", False)), real=bool(options.get("real", True)),
                                      interval=tuple(interval) if interval is not None else None,
                                      commutative=bool(options.get("commutative", True)))
    return table


def function_list_problems(spec: CheckSpec) -> list[tuple[str, str]]:
    """Rubric problems of ``params.must_use`` / ``params.must_not_use`` (lists of function names the parser knows)."""
    problems: list[tuple[str, str]] = []
    lists: dict[str, list[str]] = {}
    for option in FORM_OPTIONS:
        if option not in spec.params:
            continue
        value = spec.params[option]
        if not isinstance(value, list) or not value or not all(isinstance(n, str) for n in value):
            problems.append((f"params.{option}", f"{option} is a non-empty list of function names, e.g. [sigmoid]"))
            continue
        for name in value:
            if name not in FUNCTIONS:
                close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(FUNCTIONS)})"
                problems.append((f"params.{option}", f"{name!r} is not a function answers can use{hint}"))
        lists[option] = value
    both = sorted(set(lists.get("must_use", [])) & set(lists.get("must_not_use", [])))
    if both:
        problems.append(("params.must_not_use", f"{', '.join(both)} cannot be both required and forbidden"))
    return problems


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


def form_problem(key: str, used: frozenset[str], must_use: list[str], must_not_use: list[str]) -> str | None:
    """A sentence when the answer is not written with the functions the question asks for; None when it is."""
    forbidden = [n for n in must_not_use if n in used]
    missing = [n for n in must_use if n not in used]
    if forbidden:
        instead = f"in terms of {_names(must_use)}" if must_use else "without it"
        return (f"Write {_names(forbidden)} {instead}; your answer to '{key}' uses {_names(forbidden)} itself, "
                "which restates the question instead of answering it.")
    if missing:
        return f"Write your answer to '{key}' in terms of {_names(must_use)}, as the question asks; it does not use {_names(missing)}."
    return None


def reference_expression(value: Any, symbols: Mapping[str, SymbolSpec]) -> sympy.Expr:
    """The reference as a sympy expression: given as one, or as a string in answer syntax."""
    if isinstance(value, sympy.Basic):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return parse_reference(value, symbols)
    raise TypeError(f"the reference is a {type(value).__name__}; a sympy expression or a string was expected")


@register
class ExpressionCheck(Check):
    kind = "expression"
    findings = COMMON_FINDINGS + FINDINGS
    needs_code = False
    options = (
        Option("symbols", MAPPING, "each symbol the answer may use, with its assumptions, e.g. {W1: {commutative: false}}",
               REQUIRED),
        Option("must_use", {"$ref": "#/$defs/function_names"}, "functions the answer must be written with, e.g. [sigmoid]"),
        Option("must_not_use", {"$ref": "#/$defs/function_names"},
               "functions the answer may not use, e.g. [tanh] (restating the question)"),
        Option("undecided_credit", {"type": "number", "minimum": 0, "maximum": 1},
               "credit kept when equivalence cannot be decided (the answer is listed for review)", 0.0),
        Option("timeout_s", POSITIVE, "time limit of the symbolic simplification, in seconds", DEFAULT_TIMEOUT_S),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        if "symbols" not in spec.params:
            return problems
        try:
            symbols = symbol_table(spec.params["symbols"])
        except SymbolSpecError as exc:
            return problems + [("params.symbols", str(exc))]
        problems += function_list_problems(spec)
        credit = cls.params_of(spec)["undecided_credit"]
        if not isinstance(credit, (int, float)) or not 0 <= credit <= 1:
            problems.append(("params.undecided_credit", "undecided_credit is a fraction of the points, between 0 and 1"))
        for i, mistake in enumerate(spec.known_mistakes):
            if not mistake.expression:
                problems.append((f"known_mistakes[{i}]", "a known mistake of an expression check needs an 'expression'"))
                continue
            try:
                parse_reference(mistake.expression, symbols)
            except ReferenceExpressionError as exc:
                problems.append((f"known_mistakes[{i}].expression", str(exc)))
        return problems

    @classmethod
    def validate_with_reference(cls, spec: CheckSpec, reference: ModuleType) -> list[tuple[str, str]]:
        if not spec.reference or "symbols" not in spec.params:
            return []
        try:
            symbols = symbol_table(spec.params["symbols"])
            expr = reference_expression(resolve_reference(reference, spec.reference), symbols)
        except (SymbolSpecError, ReferenceExpressionError, TypeError) as exc:
            return [("reference", str(exc))]
        problems = []
        for s in sorted(expr.free_symbols, key=lambda s: s.name):
            declared = symbols.get(s.name)
            if declared is None:
                problems.append(("params.symbols", f"the reference {spec.reference} uses {s.name!r}, which is not declared"))
            elif bool(s.is_commutative) != declared.commutative:
                problems.append((f"params.symbols.{s.name}", f"{s.name!r} is {'' if s.is_commutative else 'non-'}commutative in "
                                 f"the reference but declared {'' if declared.commutative else 'non-'}commutative"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        key = self.spec.target or ""
        answer, missing = lookup_answer(ctx, key)
        if missing is not None:
            return missing
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            return Outcome.fail("wrong_type", f"The answer to '{key}' should be one expression written as text "
                                f"(e.g. \"2*x + 1\"), not a {type(answer).__name__}.")
        text = answer if isinstance(answer, str) else repr(answer)
        symbols = symbol_table(p["symbols"])
        parsed = parse_expression(text, symbols)
        if not parsed.ok:
            return Outcome.fail("parse_error", f"Your answer to '{key}' could not be read as math.\n"
                                + format_error(parsed.error, text, symbols))  # type: ignore[arg-type]
        reference = reference_expression(resolve_reference(ctx.reference, self.spec.reference or ""), symbols)
        seed = int(ctx.rng(self.spec).integers(2**31))
        timeout = float(p["timeout_s"])
        verdict = compare(parsed.expr, reference, symbols, timeout_s=timeout, seed=seed)  # type: ignore[arg-type]
        decided = f"(decided by {verdict.method})"
        wrong_form = form_problem(key, parsed.functions, list(p["must_use"] or []), list(p["must_not_use"] or []))
        if wrong_form:
            # The value alone cannot tell a derivation from a restatement of the question: the form decides.
            if verdict.equivalent:
                value = "It is equal to the expected expression, but not in the form the question asks for."
            elif verdict.equivalent is None:
                value = "Whether it is equal to the expected expression was not decided either."
            else:
                value = f"It is not equal to the expected expression either. {verdict.explanation}"
            return Outcome(passed=False, findings=["wrong_form"], method=verdict.method,
                           feedback=[wrong_form, f"{value} {decided}"])
        if verdict.equivalent:
            return Outcome(passed=True, feedback=[f"Correct. {verdict.explanation} {decided}"], method=verdict.method)
        if verdict.equivalent is None:
            credit = float(p["undecided_credit"])
            return Outcome(passed=False, findings=["undecided"], credit=credit, method=verdict.method, feedback=[
                f"The grader could not decide whether your answer to '{key}' is correct: {verdict.explanation}",
                "This is not a verdict that you are wrong: a member of the course staff will look at this answer "
                "by hand and your score for it may change."])
        for mistake in self.spec.known_mistakes:
            wrong = parse_reference(mistake.expression or "", symbols)
            match = compare(parsed.expr, wrong, symbols, timeout_s=MISTAKE_TIMEOUT_S, seed=seed)  # type: ignore[arg-type]
            if match.equivalent:
                return Outcome.from_mistake(mistake, f"{verdict.explanation} {decided}", method=verdict.method)
        return Outcome(passed=False, findings=["incorrect"], method=verdict.method,
                       feedback=[f"Your answer to '{key}' is not correct. {verdict.explanation} {decided}"])

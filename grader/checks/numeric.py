"""Kind ``numeric``: a number in the answers, judged against the reference with stated tolerances.

The expected value comes from the reference (``reference: ANSWERS_NUM[q3.conv_flops]``),
never from the rubric. Other values the reference names (``params.variants:
VARIANTS[q3.conv_flops]``, each a ``Variant(name, value, kind, explanation)``)
are recognised and explained: an "alternative" convention gets the credit
``params.variant_credit[name]`` gives it (the rubric must decide one for every
alternative), a "mistake" gets 0 unless ``variant_credit`` says otherwise.
The rubric's ``known_mistakes`` (by ``value`` or ``reference``) add more.

An answer is a YAML number, or a plain numeric string: ``1151280``,
``1,151,280`` (commas between groups of three digits), ``1.15128e6``,
``-9.24e-5``. Anything else (units, words, arithmetic) is refused with a
sentence saying how to write it, not guessed at.

Params: ``rtol`` (default 1e-9) and ``atol`` (default 0) as in ``math.isclose``;
``optional: true`` (only with ``points: 0``) skips the check when the key is absent; ``show_expected:
true`` puts the expected value in the feedback of a wrong answer.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from grader.checks import register
from grader.checks.answer_keys import lookup_answer
from grader.checks.options import BOOL, NONNEG, STRING, Option
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome
from grader.rubric.model import CheckSpec
from grader.rubric.references import ReferenceNameError, resolve_reference

FINDINGS = ("not_a_number", "other_convention", "known_mistake")
MAX_ANSWER_CHARS = 64
_PLAIN = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


class NotANumber(ValueError):
    """The answer is not a plain number; the message says how to write one."""


def parse_number(value: Any) -> float:
    """A YAML number or a plain numeric string -> float; raises NotANumber otherwise."""
    example = "e.g. 1151280, 1,151,280 or 1.15128e6"
    if isinstance(value, bool) or value is None:
        raise NotANumber(f"it is {value!r}, not a number ({example})")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_ANSWER_CHARS:
            raise NotANumber(f"it is {len(text)} characters long; write only the number ({example})")
        if _PLAIN.fullmatch(text):
            number = float(text)
        elif _GROUPED.fullmatch(text):
            number = float(text.replace(",", ""))
        else:
            raise NotANumber(f"{text!r} is not a plain number: write only the number, without units, words or "
                             f"arithmetic ({example}; commas only between groups of three digits)")
    else:
        raise NotANumber(f"it is a {type(value).__name__}; a single number was expected ({example})")
    if not math.isfinite(number):
        raise NotANumber("it is not a finite number")
    return number


def show(x: float) -> str:
    """1151280 -> '1,151,280'; -9.2427e-05 -> '-9.2427e-05'."""
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.6g}"


@dataclass(frozen=True)
class Candidate:
    """A value other than the primary answer, with what it means and what it is worth."""

    value: float
    finding: str
    credit: float
    feedback: str


def _variants(table: Any) -> list[Any]:
    if not isinstance(table, Sequence) or isinstance(table, str):
        raise TypeError(f"the variants must be a sequence of Variant(name, value, kind, explanation), got {type(table).__name__}")
    for v in table:
        if not all(hasattr(v, a) for a in ("name", "value", "kind", "explanation")):
            raise TypeError(f"{v!r} is not a Variant(name, value, kind, explanation)")
    return list(table)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@register
class NumericCheck(Check):
    kind = "numeric"
    findings = COMMON_FINDINGS + FINDINGS
    needs_code = False
    options = (
        Option("rtol", NONNEG, "relative tolerance, as in math.isclose", 1e-9),
        Option("atol", NONNEG, "absolute tolerance, as in math.isclose", 0.0),
        Option("optional", BOOL, "an unanswered key is skipped, not failed (only with points: 0)", False),
        Option("show_expected", BOOL, "a wrong answer's feedback states the expected value", False),
        Option("variants", STRING, "other values the reference names, e.g. VARIANTS[q3.conv_flops], recognised and "
               "explained"),
        Option("variant_credit", {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
               "credit of each variant by name (every alternative convention needs one)", {}),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        p = cls.params_of(spec)
        if p["optional"] and spec.points > 0:
            # An unanswered optional check counts 0/0: with points it would drop out of the maximum, a pass in effect.
            problems.append(("params.optional", "an optional check is feedback only: give it points: 0"))
        for name in ("rtol", "atol"):
            if not (_is_number(p[name]) and p[name] >= 0):
                problems.append((f"params.{name}", f"{name} must be a number >= 0"))
        credits = p["variant_credit"]
        if not isinstance(credits, dict):
            problems.append(("params.variant_credit", "variant_credit maps variant names to a credit between 0 and 1"))
        else:
            for name, credit in credits.items():
                if not _is_number(credit) or not 0 <= credit <= 1:
                    problems.append((f"params.variant_credit.{name}", "a credit is a fraction of the points, between 0 and 1"))
        if credits and p["variants"] is None:
            problems.append(("params.variant_credit", "variant_credit needs params.variants (e.g. VARIANTS[q3.conv_flops])"))
        for i, m in enumerate(spec.known_mistakes):
            if m.value is None and not m.reference:
                problems.append((f"known_mistakes[{i}]", "a known mistake of a numeric check needs a 'value' or a 'reference'"))
            elif m.value is not None and not _is_number(m.value):
                problems.append((f"known_mistakes[{i}].value", "the value of a known mistake must be a number"))
        return problems

    @classmethod
    def validate_with_reference(cls, spec: CheckSpec, reference: ModuleType) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if spec.reference and not _is_number(resolve_reference(reference, spec.reference)):
            problems.append(("reference", f"{spec.reference} is not a finite number"))
        for i, m in enumerate(spec.known_mistakes):
            if m.reference and not _is_number(resolve_reference(reference, m.reference)):
                problems.append((f"known_mistakes[{i}].reference", f"{m.reference} is not a finite number"))
        p = cls.params_of(spec)
        if p["variants"] is None:
            return problems
        try:
            variants = _variants(resolve_reference(reference, str(p["variants"])))
        except ReferenceNameError as exc:
            return problems + [("params.variants", str(exc))]
        except TypeError as exc:
            return problems + [("params.variants", str(exc))]
        names = {v.name for v in variants}
        credits = p["variant_credit"] or {}
        for name in credits:
            if name not in names:
                problems.append((f"params.variant_credit.{name}", f"{spec.params['variants']} has no variant {name!r} "
                                 f"(it has: {', '.join(sorted(names)) or 'none'})"))
        for v in variants:
            if v.kind == "alternative" and v.name not in credits:
                problems.append(("params.variant_credit", f"say what the alternative {v.name!r} of {spec.params['variants']} "
                                 f"is worth: add '{v.name}: <credit between 0 and 1>' to variant_credit"))
        return problems

    def _candidates(self, ctx: Context) -> list[Candidate]:
        p = self.params
        credits = p["variant_credit"] or {}
        out = []
        if p["variants"] is not None:
            for v in _variants(resolve_reference(ctx.reference, str(p["variants"]))):
                finding = "other_convention" if v.kind == "alternative" else "known_mistake"
                out.append(Candidate(float(v.value), finding, float(credits.get(v.name, 0.0)), v.explanation))
        for m in self.spec.known_mistakes:
            value = m.value if m.value is not None else resolve_reference(ctx.reference, m.reference or "")
            out.append(Candidate(float(value), m.finding, m.credit, m.feedback))
        return out

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        key = self.spec.target or ""
        answer, missing = lookup_answer(ctx, key)
        if missing is not None:
            if p["optional"] and not (ctx.load and ctx.load.answers_error):
                return Outcome(passed=False, skipped=True, feedback=[f"'{key}' is optional and was not answered."])
            return missing
        try:
            got = parse_number(answer)
        except NotANumber as exc:
            return Outcome.fail("not_a_number", f"Your answer to '{key}' is not a number: {exc}.")
        expected = float(resolve_reference(ctx.reference, self.spec.reference or ""))
        rtol, atol = float(p["rtol"]), float(p["atol"])
        tolerance = f"relative tolerance {rtol:g}" + (f", absolute tolerance {atol:g}" if atol else "")
        if math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
            return Outcome(passed=True, feedback=[f"Correct: {show(got)} (within {tolerance})."])
        for c in self._candidates(ctx):
            if math.isclose(got, c.value, rel_tol=rtol, abs_tol=atol):
                if c.credit >= 1:
                    return Outcome(passed=True, feedback=[f"Accepted: {show(got)}. {c.feedback}"])
                worth = f" This answer gets {c.credit:.0%} of the points." if c.credit > 0 else ""
                return Outcome(passed=False, findings=[c.finding], credit=c.credit,
                               feedback=[f"Your answer {show(got)} is not the expected one. {c.feedback}{worth}"])
        message = f"Your answer {show(got)} is not correct (compared with {tolerance})."
        if p["show_expected"]:
            message += f" The expected answer is {show(expected)}."
        elif expected != 0 and got != 0 and math.isclose(abs(got), abs(expected), rel_tol=rtol, abs_tol=atol):
            message += " Check the sign."
        return Outcome.fail("incorrect", message)

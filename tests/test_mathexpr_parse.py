"""Tests for grader.mathexpr parsing: accepted forms, rejected constructs, error wording.

Expected sympy objects are built directly with sympy (not with our parser),
so every accepted case is checked against an independent construction.
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
import sympy

from grader.mathexpr import (
    ErrorKind,
    ParseResult,
    ReferenceExpressionError,
    SymbolSpec,
    SymbolSpecError,
    format_error,
    parse_expression,
    parse_reference,
    spec_table,
)

# a2 q5: g = sigmoid(...) lies in (0, 1).
Q5 = spec_table(SymbolSpec("w_i"), SymbolSpec("g", interval=(0, 1)))
w, g = sympy.Symbol("w_i", real=True), sympy.Symbol("g", real=True, positive=True)

# a2 q1: matrices/vectors are non-commutative, a and c are scalars.
Q1 = spec_table(
    *(SymbolSpec(name, commutative=False) for name in ("W1", "W2", "b1", "b2", "x")),
    SymbolSpec("a"),
    SymbolSpec("c"),
)
W1, W2 = sympy.symbols("W1 W2", commutative=False)
a = sympy.Symbol("a", real=True)


def _sigmoid(z: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-z))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("w_i*g - w_i*g^2", w * g - w * g**2),
        ("w_i*g*(1-g)", w * g * (1 - g)),
        ("g^2", g**2),
        ("g**2", g**2),
        ("g^2^3", g**8),  # right-associative, like math notation
        ("-g^2", -(g**2)),
        ("2^-1", sympy.Rational(1, 2)),
        ("0.5*g", g / 2),  # decimals are exact rationals
        ("1e-3*g", g / 1000),
        ("0.1 + 0.2", sympy.Rational(3, 10)),
        ("e^g", sympy.exp(g)),
        ("pi*g", sympy.pi * g),
        ("sigmoid(g)", _sigmoid(g)),
        ("exp(g) + log(g) + tanh(g) + sqrt(g) + sin(g) + cos(g) + abs(w_i)",
         sympy.exp(g) + sympy.log(g) + sympy.tanh(g) + sympy.sqrt(g) + sympy.sin(g) + sympy.cos(g) + sympy.Abs(w)),
        ("w_i*(1/(1+exp(log(1/g - 1))))*(1-g)", w * g * (1 - g)),
        ("g \u2212 w_i", g - w),  # Unicode minus sign
        ("2\u00d7g", 2 * g),  # multiplication sign
        ("  g\n+\tw_i ", g + w),
        ("+g", g),
    ],
)
def test_accepted_answers_build_the_expected_sympy_expression(text: str, expected: sympy.Expr) -> None:
    result = parse_expression(text, Q5)
    assert result.ok, result.error
    assert result.expr is not None
    assert sympy.simplify(result.expr - expected) == 0


def test_non_commutative_products_keep_their_order() -> None:
    left = parse_expression("a^2*W2*W1", Q1)
    right = parse_expression("a**2*W1*W2", Q1)
    assert left.ok and right.ok
    assert left.expr == a**2 * W2 * W1
    assert left.expr != right.expr


INJECTIONS = [
    ("__import__('os').system('touch /tmp/pwned_mathexpr')", {ErrorKind.UNKNOWN_FUNCTION, ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("().__class__.__bases__[0].__subclasses__()", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("lambda: 1", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("9**9**9", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("9^9^9", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("10**100000", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("2**(10**4)", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("(10**50)**1000", {ErrorKind.NUMBER_TOO_LARGE}),
    ("g**1001", {ErrorKind.EXPONENT_TOO_LARGE}),
    # Cancellations the AST cannot see: sympy folds g - g to 0 before Pow/exp run.
    ("2**(g - g + 10**12)", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("exp(g + log(2)*10**12)", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("e^(g - g + log(2)*10**12)", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("sigmoid(g - g - log(9)*9**9)", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("exp(exp(exp(1000)))", {ErrorKind.EXPONENT_TOO_LARGE}),
    ("(g - g + 10**40)^900", {ErrorKind.NUMBER_TOO_LARGE, ErrorKind.EXPONENT_TOO_LARGE}),
    ("g.__class__", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("[g for g in ()]", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("'a'*10**9", {ErrorKind.BAD_CONSTANT}),
    ("b'x'", {ErrorKind.BAD_CONSTANT}),
    ("f'{g}'", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("(g := 1)", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("g if g else w_i", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("g < w_i", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("g and w_i", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("g[0]", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("exp(*g)", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("exp(x=1)", {ErrorKind.KEYWORD_ARGUMENT}),
    ("g, w_i", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("{g: 1}", {ErrorKind.FORBIDDEN_CONSTRUCT}),
    ("g // 2", {ErrorKind.FORBIDDEN_OPERATOR}),
    ("g % 2", {ErrorKind.FORBIDDEN_OPERATOR}),
    ("g @ w_i", {ErrorKind.FORBIDDEN_OPERATOR}),
    ("~g", {ErrorKind.FORBIDDEN_OPERATOR}),
    ("not g", {ErrorKind.FORBIDDEN_OPERATOR}),
    ("True", {ErrorKind.BAD_CONSTANT}),
    ("None", {ErrorKind.BAD_CONSTANT}),
    ("1j*g", {ErrorKind.BAD_CONSTANT}),
    ("1e400", {ErrorKind.NUMBER_TOO_LONG}),
    ("1" * 60, {ErrorKind.NUMBER_TOO_LONG}),
    ("3." + "1" * 60, {ErrorKind.NUMBER_TOO_LONG}),
    ("g/0", {ErrorKind.UNDEFINED}),
    ("log(0)*g", {ErrorKind.UNDEFINED}),
    ("exp(g, w_i)", {ErrorKind.WRONG_ARITY}),
    ("exp()", {ErrorKind.WRONG_ARITY}),
    ("foo(g)", {ErrorKind.UNKNOWN_FUNCTION}),
    ("os", {ErrorKind.UNKNOWN_NAME}),
    ("g(1-g)", {ErrorKind.NOT_A_FUNCTION}),
    ("(g+1)(g-1)", {ErrorKind.NOT_A_FUNCTION}),
    ("2(g+1)", {ErrorKind.NOT_A_FUNCTION}),
    ("2g", {ErrorKind.SYNTAX}),
    ("(g+1", {ErrorKind.SYNTAX}),
    ("import os", {ErrorKind.SYNTAX}),
    ("g\x00", {ErrorKind.BAD_CHARACTER}),
    ("g\u202e+1", {ErrorKind.BAD_CHARACTER}),  # bidi override hides text
    ("", {ErrorKind.EMPTY}),
    ("   ", {ErrorKind.EMPTY}),
    ("x" * 100_000, {ErrorKind.TOO_LONG}),
    ("(" * 5000 + "g" + ")" * 5000, {ErrorKind.TOO_LONG}),
    ("+".join(["g"] * 240), {ErrorKind.TOO_COMPLEX}),
    ("(" * 45 + "g" + ")" * 45, {ErrorKind.TOO_DEEP}),
]


@pytest.mark.parametrize(("text", "kinds"), INJECTIONS, ids=[repr(t[:30]) for t, _ in INJECTIONS])
def test_rejected_answers_give_a_typed_error(text: str, kinds: set[ErrorKind]) -> None:
    result = parse_expression(text, Q5)
    assert not result.ok
    assert result.error is not None
    assert result.error.kind in kinds, result.error
    # Every error renders to a sentence without raising.
    message = format_error(result.error, text, Q5)
    assert "Symbols in this question: g, w_i." in message


def test_injection_table_is_fast_and_executes_nothing() -> None:
    marker = Path("/tmp/pwned_mathexpr")
    if marker.exists():
        marker.unlink()
    start = time.monotonic()
    for text, _ in INJECTIONS:
        parse_expression(text, Q5)
    elapsed = time.monotonic() - start
    assert not marker.exists()
    assert elapsed < 2.0, f"rejecting the injection table took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "g" + ")" * 5000,  # deep brackets reach the bracket check
        "-" * 50_000 + "g",  # unary chain: CPython's parser gives up (MemoryError/RecursionError)
        "1+" * 20_000 + "1",  # long chain: RecursionError while building the AST
        "[" * 5000 + "]" * 5000,
    ],
    ids=["parens", "unary-chain", "sum-chain", "brackets"],
)
def test_pathological_nesting_is_a_clean_error_even_without_length_limit(text: str) -> None:
    result = parse_expression(text, Q5, max_length=10**6)
    assert not result.ok
    assert result.error is not None
    assert result.error.kind in {ErrorKind.TOO_DEEP, ErrorKind.TOO_COMPLEX, ErrorKind.SYNTAX}


@pytest.mark.parametrize(
    ("text", "construct_word"),
    [
        ("g.__class__", "Attribute"),
        ("lambda: 1", "lambda"),
        ("[g for g in ()]", "comprehension"),
        ("g[0]", "Indexing"),
        ("'a'*10**9", "Text in quotes"),
    ],
)
def test_feedback_names_the_construct(text: str, construct_word: str) -> None:
    result = parse_expression(text, Q5)
    assert result.error is not None
    assert construct_word in format_error(result.error, text, Q5)


def test_error_message_has_caret_under_the_problem_and_lists_symbols() -> None:
    text = "w_i*g*(1-g) + foo(g)"
    result = parse_expression(text, Q5)
    assert result.error is not None
    assert result.error.offset == text.index("foo")
    lines = format_error(result.error, text, Q5).splitlines()
    answer_line = next(line for line in lines if line.strip() == text)
    caret_line = lines[lines.index(answer_line) + 1]
    assert caret_line.strip() == "^"
    assert caret_line.index("^") == answer_line.index("foo")
    assert any("Symbols in this question: g, w_i." in line for line in lines)
    assert any("sigmoid(x)" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "symbols", "needle"),
    [
        ("g^2 + foo", Q5, "foo"),  # ^ -> ** shifts the parsed text; offsets must not shift
        ("g^2^2 + w_i.real", Q5, ".real"),
        ("θ^2 + foo", spec_table(SymbolSpec("θ")), "foo"),  # non-ASCII: ast offsets are UTF-8 bytes
        ("g\u00b72 + bar", Q5, "bar"),
    ],
)
def test_offsets_refer_to_the_original_answer(text: str, symbols: dict[str, SymbolSpec], needle: str) -> None:
    result = parse_expression(text, symbols)
    assert result.error is not None
    assert result.error.offset == text.index(needle)
    assert result.error.fragment.startswith(needle)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("sigmod(g)", "sigmoid"),
        ("ln(g)", "log"),
        ("G*w_i", "g"),
        ("w_j*g", "w_i"),
        ("tan(g)", "tanh"),
    ],
)
def test_unknown_names_get_did_you_mean(text: str, suggestion: str) -> None:
    result = parse_expression(text, Q5)
    assert result.error is not None
    assert result.error.suggestion == suggestion
    assert f"Did you mean `{suggestion}`?" in format_error(result.error, text, Q5)


def test_long_answers_are_not_echoed_whole() -> None:
    text = "g + " * 30 + "foo(g)" + " + g" * 60
    result = parse_expression(text, Q5)
    assert result.error is not None
    message = format_error(result.error, text, Q5)
    assert len(message) < 1000
    lines = message.splitlines()
    caret_line = next(line for line in lines if line.strip() == "^")
    excerpt = lines[lines.index(caret_line) - 1]
    assert excerpt[caret_line.index("^") :].startswith("foo")


def test_missing_multiplication_hints() -> None:
    result = parse_expression("2g", Q5)
    assert result.error is not None
    assert "*" in format_error(result.error, "2g", Q5)
    result = parse_expression("g(1-g)", Q5)
    assert result.error is not None
    assert "g*(" in format_error(result.error, "g(1-g)", Q5)


def test_incomplete_answer_points_at_its_end() -> None:
    text = "w_i*g +"
    result = parse_expression(text, Q5)
    assert result.error is not None
    assert result.error.kind is ErrorKind.SYNTAX
    assert result.error.offset == len(text)
    assert "missing at the end" in format_error(result.error, text, Q5)


def test_error_serialises_to_json() -> None:
    result = parse_expression("foo(g)", Q5)
    assert result.error is not None
    data = json.loads(json.dumps(result.error.to_dict()))
    assert data["kind"] == "unknown_function"
    assert data["offset"] == 0


def test_declared_symbol_shadows_constant_e() -> None:
    symbols = spec_table(SymbolSpec("e"))
    result = parse_expression("e^2", symbols)
    assert result.expr == sympy.Symbol("e", real=True) ** 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: SymbolSpec("g", interval=(1, 0)),
        lambda: SymbolSpec("g", interval=(0, float("inf"))),
        lambda: SymbolSpec("W", commutative=False, positive=True),
        lambda: SymbolSpec("exp"),
        lambda: SymbolSpec("lambda"),
        lambda: SymbolSpec("__x"),
        lambda: SymbolSpec("g", positive=True, interval=(-1, 1)),
        lambda: spec_table(SymbolSpec("g"), SymbolSpec("g")),
    ],
)
def test_bad_symbol_declarations_are_course_setup_errors(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SymbolSpecError, match="course setup"):
        make()


def test_symbol_table_key_must_match_name() -> None:
    with pytest.raises(SymbolSpecError, match="course setup"):
        parse_expression("g", {"h": SymbolSpec("g")})


def test_bad_reference_is_a_course_setup_error() -> None:
    with pytest.raises(ReferenceExpressionError, match="course setup") as info:
        parse_reference("w_i*q", Q5)
    assert info.value.error.kind is ErrorKind.UNKNOWN_NAME


def test_parse_result_holds_exactly_one_of_expr_and_error() -> None:
    with pytest.raises(ValueError):
        ParseResult()
    assert parse_expression("g", Q5).ok


def test_non_string_answer_is_a_caller_error() -> None:
    with pytest.raises(TypeError):
        parse_expression(b"g", Q5)  # type: ignore[arg-type]


def test_library_never_calls_evaluating_functions() -> None:
    """The trust boundary forbids evaluating student text; keep the source honest."""
    banned = {"eval", "exec", "compile", "sympify", "parse_expr", "S", "lambdify", "__import__"}
    package = Path(__file__).resolve().parents[1] / "grader" / "mathexpr"
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                assert name not in banned, f"{path.name}:{node.lineno} calls {name}"

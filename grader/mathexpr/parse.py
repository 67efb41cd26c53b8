"""Parse an untrusted student math answer into a sympy expression, safely.

The answer is never given to ``eval``, ``exec``, ``sympify``, ``parse_expr``
or ``sympy.S``. Instead:

1. cheap text checks (length, control characters, bracket depth) run first,
   so ``ast.parse`` only ever sees small inputs;
2. ``^`` becomes ``**`` (``^`` is never XOR in a math answer) and Python's
   own parser builds an AST (``mode="eval"``: one expression, no statements);
3. size checks (node count, depth) bound every later walk;
4. a whitelist pass rejects every node type, constant, name, function and
   call shape that is not plain arithmetic, reporting the leftmost problem;
5. a bound pass estimates how large constant numbers and exponents get, so
   ``9**9**9`` or ``(10**50)**1000`` are refused before sympy would try to
   compute them;
6. only then sympy objects are built node by node from the validated tree.

Every failure comes back as a ``ParseResult`` holding a typed ``ParseError``
(see ``errors.py``) with the character offset in the original answer, so the
caller can show a caret under the problem.
"""

from __future__ import annotations

import ast
import difflib
import math
import unicodedata
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterable, Mapping

import sympy

from .errors import ErrorKind, ParseError, ReferenceExpressionError
from .symbols import SymbolSpec, check_table
from .vocabulary import ALIASES, CONSTANT_VALUES, CONSTANTS, FUNCTIONS


@dataclass(frozen=True)
class ParseLimits:
    """Resource bounds applied before any sympy object is built.

    max_nodes: expression nodes in the AST (numbers, names, operations).
    max_depth: depth of the AST (also bounds our own recursion).
    max_bracket_depth: nesting of ( [ { in the text, checked before parsing.
    max_exponent: largest absolute value of a constant exponent.
    max_literal_digits: digits in one written number (1e-30 counts 31).
    max_constant_digits: estimated digits of any exact number sympy would
        compute while building (e.g. 2**400 has 121; the estimate is
        deliberately generous so it errs on the side of refusing).
    """

    max_nodes: int = 200
    max_depth: int = 100
    max_bracket_depth: int = 40
    max_exponent: int = 1000
    max_literal_digits: int = 50
    max_constant_digits: int = 500


DEFAULT_LIMITS = ParseLimits()


@dataclass(frozen=True)
class ParseResult:
    """Either a parsed expression or the error that stopped parsing.

    Exactly one of ``expr`` and ``error`` is set; test with ``ok``.
    """

    expr: sympy.Expr | None = None
    error: ParseError | None = None
    # Names of the functions the answer calls, as written (sigmoid is expanded into exp in ``expr``,
    # so "written in terms of sigmoid" can only be judged from the text's own calls).
    functions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (self.expr is None) == (self.error is None):
            raise ValueError("ParseResult needs exactly one of expr and error")

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        if self.error is not None:
            return f"ParseResult(error={self.error.kind.value}: {self.error.message!r} at {self.error.offset})"
        return f"ParseResult(expr={self.expr})"


# Single characters rewritten before parsing; each maps to one character (or,
# for ^, two) so that offsets can be mapped back to the original answer.
_WHITESPACE = {"\t": " ", "\n": " ", "\r": " ", "\f": " ", "\v": " ", "\u00a0": " "}
_LOOKALIKES = {"\u2212": "-", "\u00d7": "*", "\u00b7": "*", "\u22c5": "*", "\u2217": "*"}

# Node types a math answer may contain. Everything else is named in
# _CONSTRUCT_NAMES (or by its class name) and rejected.
_ALLOWED_NODES = (ast.Expression, ast.Constant, ast.Name, ast.BinOp, ast.UnaryOp, ast.Call, ast.Load)
_ALLOWED_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
}
_ALLOWED_UNARY = (ast.USub, ast.UAdd)
_OPERATOR_TEXT: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.Invert: "~",
    ast.Not: "not",
}
_CONSTRUCT_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "Attribute access (a dot, as in `x.y`)",
    ast.Subscript: "Indexing with [...]",
    ast.Slice: "Slicing with :",
    ast.Lambda: "A lambda function",
    ast.ListComp: "A comprehension",
    ast.SetComp: "A comprehension",
    ast.DictComp: "A comprehension",
    ast.GeneratorExp: "A comprehension",
    ast.List: "A list [...]",
    ast.Tuple: "A tuple (values separated by commas, or empty brackets)",
    ast.Set: "A set {...}",
    ast.Dict: "A dictionary {...}",
    ast.Compare: "A comparison (==, <, >, in, is, ...)",
    ast.BoolOp: "A logical operator (and/or)",
    ast.IfExp: "An if/else expression",
    ast.JoinedStr: "An f-string",
    ast.FormattedValue: "An f-string",
    ast.NamedExpr: "An assignment (:=)",
    ast.Starred: "Unpacking with *",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.keyword: "A keyword argument",
}


class _Reject(Exception):
    """Internal: carries a ParseError out of a recursive pass (never leaves this module)."""

    def __init__(self, error: ParseError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Source:
    """The original answer, the text given to ast.parse, and the offset maps between them."""

    text: str
    src: str
    char_to_text: list[int]  # index in src -> index in text (len(src)+1 entries)
    byte_to_char: list[int] | None  # UTF-8 byte offset in src -> char index; None if ASCII

    def offset(self, col: int | None) -> int:
        """Map an ast col_offset (UTF-8 bytes into src) to an offset in the original text."""
        if col is None:
            return 0
        char = col if self.byte_to_char is None else self.byte_to_char[min(col, len(self.byte_to_char) - 1)]
        return self.char_to_text[min(max(char, 0), len(self.char_to_text) - 1)]

    def char_offset(self, char: int) -> int:
        return self.char_to_text[min(max(char, 0), len(self.char_to_text) - 1)]

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(getattr(node, "col_offset", 0))
        end = self.offset(getattr(node, "end_col_offset", None) or getattr(node, "col_offset", 0))
        return start, max(start, end)

    def fragment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def src_char(self, col: int | None) -> int:
        if col is None:
            return 0
        return col if self.byte_to_char is None else self.byte_to_char[min(col, len(self.byte_to_char) - 1)]


# Fragments and messages are capped so that a 100 kB answer is never echoed whole.
_MAX_FRAGMENT = 120


def _short(text: str) -> str:
    return text if len(text) <= _MAX_FRAGMENT else text[: _MAX_FRAGMENT - 3] + "..."


def _error(kind: ErrorKind, message: str, *, fragment: str = "", offset: int | None = None, **extra: object) -> ParseError:
    return ParseError(kind=kind, message=_short(message), fragment=_short(fragment), offset=offset, **extra)  # type: ignore[arg-type]


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    """A close spelling among ``candidates`` ("did you mean"), case-insensitively."""
    if name in ALIASES and ALIASES[name] in candidates:
        return ALIASES[name]
    by_lower: dict[str, str] = {}
    for cand in candidates:
        by_lower.setdefault(cand.lower(), cand)
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


# --- step 1: text checks -------------------------------------------------------


def _prepare(text: str, max_length: int, limits: ParseLimits) -> _Source | ParseError:
    if not text.strip():
        return _error(ErrorKind.EMPTY, "empty answer")
    if len(text) > max_length:
        return _error(
            ErrorKind.TOO_LONG, f"answer has {len(text)} characters (limit {max_length})", offset=None, limit=max_length
        )
    out: list[str] = []
    char_to_text: list[int] = []
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            if depth > limits.max_bracket_depth:
                return _error(
                    ErrorKind.TOO_DEEP,
                    f"brackets nested deeper than {limits.max_bracket_depth}",
                    fragment=ch,
                    offset=i,
                    limit=limits.max_bracket_depth,
                )
        elif ch in ")]}":
            depth -= 1
        if ch == "^":
            # Math notation: ^ is a power. Two output characters map back to one.
            out.append("**")
            char_to_text.extend((i, i))
            continue
        rep = _WHITESPACE.get(ch) or _LOOKALIKES.get(ch)
        if rep is None:
            # Control, format (zero-width, bidi override) and surrogate
            # characters have no place in an answer and can hide text.
            if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
                return _error(ErrorKind.BAD_CHARACTER, f"character U+{ord(ch):04X}", fragment=ch, offset=i)
            rep = ch
        out.append(rep)
        char_to_text.append(i)
    char_to_text.append(len(text))
    src = "".join(out)
    # mode="eval" rejects leading whitespace as an "unexpected indent".
    lead = len(src) - len(src.lstrip(" "))
    src, char_to_text = src[lead:], char_to_text[lead:]
    byte_to_char: list[int] | None = None
    if not src.isascii():
        byte_to_char = []
        for ci, ch in enumerate(src):
            byte_to_char.extend([ci] * len(ch.encode("utf-8")))
        byte_to_char.append(len(src))
    return _Source(text=text, src=src, char_to_text=char_to_text, byte_to_char=byte_to_char)


def _syntax_hint(source: _Source, char: int, message: str) -> str | None:
    """A likely fix for a syntax error near src index ``char`` (None if no guess)."""
    src = source.src
    opens, closes = src.count("("), src.count(")")
    if "(" not in message and ")" not in message:  # CPython already names bracket problems
        if opens > closes:
            return "A bracket ( is never closed."
        if closes > opens:
            return "There is a ) without a matching (."
    window = src[max(0, char - 2) : char + 3]
    if any(a.isdigit() and (b.isalpha() or b == "_") for a, b in zip(window, window[1:])):
        return "Write every product with *, e.g. 2*x instead of 2x."
    before = src[:char].rstrip()
    if before and (before[-1].isalnum() or before[-1] in "_)") and char < len(src) and (src[char].isalnum() or src[char] in "_("):
        return "An operator seems to be missing here; write every product with *."
    return None


def _parse_ast(source: _Source) -> ast.Expression | ParseError:
    try:
        # SyntaxWarnings (e.g. about escape sequences) would go to stderr;
        # nothing here is compiled, so they carry no information for us.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source.src, mode="eval")
    except SyntaxError as exc:
        if not exc.offset:
            # CPython reports offset 0 when the input ends too early ("x +").
            char = len(source.src.rstrip())
            hint = _syntax_hint(source, char, exc.msg or "") or "Something is missing at the end of your answer."
        else:
            char = min(max(exc.offset - 1, 0), len(source.src))
            hint = _syntax_hint(source, char, exc.msg or "")
        return _error(
            ErrorKind.SYNTAX,
            exc.msg or "invalid syntax",
            fragment=source.text[source.char_offset(char) : source.char_offset(char) + 1],
            offset=source.char_offset(char),
            suggestion=hint,
        )
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        # CPython's parser can raise these on pathological nesting or input;
        # the text checks should prevent it, but a crash must never escape.
        return _error(ErrorKind.TOO_COMPLEX, f"parser gave up: {type(exc).__name__}", offset=None)
    if not isinstance(tree, ast.Expression):  # pragma: no cover - mode="eval" guarantees it
        return _error(ErrorKind.SYNTAX, "not an expression", offset=0)
    return tree


# --- step 3: size checks ---------------------------------------------------------


def _check_size(tree: ast.Expression, source: _Source, limits: ParseLimits) -> ParseError | None:
    # Both walks are iterative on purpose: the tree has not been bounded yet.
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.expr):
            count += 1
            if count > limits.max_nodes:
                return _error(
                    ErrorKind.TOO_COMPLEX, f"more than {limits.max_nodes} expression nodes", limit=limits.max_nodes
                )
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            return _error(
                ErrorKind.TOO_DEEP,
                f"expression nested deeper than {limits.max_depth}",
                fragment=source.fragment(node),
                offset=source.span(node)[0],
                limit=limits.max_depth,
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


# --- step 4: whitelist -------------------------------------------------------------


def _operator_offset(node: ast.BinOp, source: _Source) -> int:
    """Offset of the operator symbol of a BinOp (the node itself starts at its left operand)."""
    i = source.src_char(node.left.end_col_offset)
    stop = source.src_char(node.right.col_offset)
    while i < stop and source.src[i] in " )":
        i += 1
    return source.char_offset(i)


def _constant_problem(node: ast.Constant, source: _Source, limits: ParseLimits) -> ParseError | None:
    value = node.value
    start = source.span(node)[0]
    frag = source.fragment(node)
    # bool is a subclass of int, so it must be tested first.
    if isinstance(value, bool) or value is None or value is Ellipsis:
        return _error(ErrorKind.BAD_CONSTANT, f"constant {value!r}", fragment=frag, offset=start, construct=f"`{value!r}`")
    if isinstance(value, (str, bytes)):
        return _error(ErrorKind.BAD_CONSTANT, "string constant", fragment=frag, offset=start, construct="Text in quotes")
    if isinstance(value, complex):
        return _error(
            ErrorKind.BAD_CONSTANT, "complex constant", fragment=frag, offset=start, construct="An imaginary number"
        )
    if isinstance(value, (int, float)):
        # Count what was written (a 60-digit decimal would otherwise be
        # silently rounded to a float) and what it means (1e-300 needs 301).
        written = sum(ch.isdigit() for ch in frag.split("e")[0].split("E")[0])
        if written > limits.max_literal_digits or (
            isinstance(value, int) and len(str(abs(value))) > limits.max_literal_digits  # e.g. hex literals
        ):
            return _error(
                ErrorKind.NUMBER_TOO_LONG, "numeric literal has too many digits", fragment=frag, offset=start,
                limit=limits.max_literal_digits,
            )
        if isinstance(value, float):
            if not math.isfinite(value):
                return _error(
                    ErrorKind.NUMBER_TOO_LONG, "float literal overflows", fragment=frag, offset=start,
                    limit=limits.max_literal_digits,
                )
            num, den = Decimal(repr(value)).as_integer_ratio()
            if len(str(abs(num))) + len(str(den)) > limits.max_literal_digits + 1:
                return _error(
                    ErrorKind.NUMBER_TOO_LONG, "decimal literal needs too many digits", fragment=frag, offset=start,
                    limit=limits.max_literal_digits,
                )
        return None
    return _error(  # pragma: no cover - ast produces no other constant types
        ErrorKind.BAD_CONSTANT, f"constant of type {type(value).__name__}", fragment=frag, offset=start,
        construct="This value",
    )


def _call_problem(node: ast.Call, source: _Source, symbols: Mapping[str, SymbolSpec]) -> ParseError | None:
    start = source.span(node)[0]
    func = node.func
    if isinstance(func, (ast.Attribute, ast.Subscript, ast.Lambda)):
        return None  # the callee itself is reported as a forbidden construct
    if not isinstance(func, ast.Name):
        return _error(
            ErrorKind.NOT_A_FUNCTION,
            f"call of a {type(func).__name__}",
            fragment=source.fragment(node),
            offset=source.span(func)[1],
            suggestion="It looks like a * is missing before the bracket, e.g. (a+b)*(c+d) or 2*(x+1).",
        )
    name = func.id
    if name not in FUNCTIONS:
        if name in symbols or name in CONSTANTS:
            return _error(
                ErrorKind.NOT_A_FUNCTION,
                f"{name} is a symbol, not a function",
                fragment=source.fragment(node),
                offset=start,
                suggestion=f"To multiply, write {name}*(...).",
            )
        return _error(
            ErrorKind.UNKNOWN_FUNCTION,
            f"unknown function {name!r}",
            fragment=name,
            offset=start,
            suggestion=_suggest(name, FUNCTIONS),
        )
    if node.keywords:
        kw = node.keywords[0]
        return _error(
            ErrorKind.KEYWORD_ARGUMENT,
            f"keyword argument in call of {name}",
            fragment=source.fragment(kw),
            offset=source.span(kw)[0],
        )
    spec = FUNCTIONS[name]
    if len(node.args) != spec.arity:
        return _error(
            ErrorKind.WRONG_ARITY,
            f"{name} takes {spec.arity} argument(s), got {len(node.args)}",
            fragment=name,
            offset=start,
            expected_arity=spec.arity,
            given_arity=len(node.args),
        )
    return None


def _whitelist_problems(tree: ast.Expression, source: _Source, symbols: Mapping[str, SymbolSpec], limits: ParseLimits) -> list[ParseError]:
    problems: list[ParseError] = []
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):  # breadth-first: outer nodes before inner ones at equal offsets
        if isinstance(node, (ast.operator, ast.unaryop, ast.expr_context)):
            continue  # judged through their BinOp/UnaryOp parent
        if not isinstance(node, _ALLOWED_NODES):
            start, _ = source.span(node)
            frag = source.fragment(node)
            if isinstance(node, ast.Attribute):
                # Point at the dot, where the trouble starts.
                dot = source.src_char(node.value.end_col_offset)
                while dot < len(source.src) and source.src[dot] in " )":
                    dot += 1
                start = source.char_offset(dot)
                frag = source.text[start : source.span(node)[1]]
            construct = _CONSTRUCT_NAMES.get(type(node), f"Python syntax `{type(node).__name__}`")
            problems.append(
                _error(
                    ErrorKind.FORBIDDEN_CONSTRUCT,
                    f"forbidden construct {type(node).__name__}",
                    fragment=frag,
                    offset=start,
                    construct=construct,
                )
            )
            continue
        if isinstance(node, ast.BinOp) and type(node.op) not in _ALLOWED_BINOPS:
            text_op = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
            problems.append(
                _error(
                    ErrorKind.FORBIDDEN_OPERATOR,
                    f"forbidden operator {type(node.op).__name__}",
                    fragment=text_op,
                    offset=_operator_offset(node, source),
                    construct=f"The operator {text_op}",
                    suggestion="Matrix products are written with *." if isinstance(node.op, ast.MatMult) else None,
                )
            )
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.op, _ALLOWED_UNARY):
            text_op = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
            problems.append(
                _error(
                    ErrorKind.FORBIDDEN_OPERATOR,
                    f"forbidden operator {type(node.op).__name__}",
                    fragment=text_op,
                    offset=source.span(node)[0],
                    construct=f"The operator {text_op}",
                )
            )
        elif isinstance(node, ast.Constant):
            problem = _constant_problem(node, source, limits)
            if problem is not None:
                problems.append(problem)
        elif isinstance(node, ast.Name) and id(node) not in callees:
            if node.id not in symbols and node.id not in CONSTANTS:
                candidates = list(symbols) + list(CONSTANTS)
                problems.append(
                    _error(
                        ErrorKind.UNKNOWN_NAME,
                        f"unknown name {node.id!r}",
                        fragment=node.id,
                        offset=source.span(node)[0],
                        suggestion=None if node.id in FUNCTIONS else _suggest(node.id, candidates),
                    )
                )
        elif isinstance(node, ast.Call):
            problem = _call_problem(node, source, symbols)
            if problem is not None:
                problems.append(problem)
    return problems


# --- step 5: bounds on constants -----------------------------------------------------


@dataclass(frozen=True)
class _Bound:
    """What the bound pass knows about a sub-expression.

    constant: no symbols inside; value: its complex value if constant and
    computable in floating point (None otherwise); digits: a generous upper
    estimate of the digits of exact numbers sympy would compute for it.
    """

    constant: bool
    value: complex | None
    digits: int


def _safe(fn: Callable[..., complex], *args: complex) -> complex | None:
    try:
        result = complex(fn(*args))
    except (OverflowError, ZeroDivisionError, ValueError):
        return None
    if not (math.isfinite(result.real) and math.isfinite(result.imag)):
        return None
    return result


def _bound(node: ast.AST, source: _Source, symbols: Mapping[str, SymbolSpec], limits: ParseLimits) -> _Bound:
    """Post-order pass; raises _Reject when an exponent or constant grows too large.

    Recursion depth is bounded by ``limits.max_depth`` (checked earlier).
    """
    if isinstance(node, ast.Constant):
        value = node.value  # validated: int or finite float
        if isinstance(value, float):
            num, den = Decimal(repr(value)).as_integer_ratio()
            digits = len(str(abs(num))) + len(str(den))
        else:
            digits = len(str(abs(value)))
        return _Bound(True, complex(value), digits)
    if isinstance(node, ast.Name):
        if node.id in symbols:
            return _Bound(False, None, 0)
        return _Bound(True, CONSTANT_VALUES[node.id], 1)
    if isinstance(node, ast.UnaryOp):
        inner = _bound(node.operand, source, symbols, limits)
        value = None if inner.value is None else (-inner.value if isinstance(node.op, ast.USub) else inner.value)
        return _Bound(inner.constant, value, inner.digits)
    if isinstance(node, ast.Call):
        arg = _bound(node.args[0], source, symbols, limits)
        fn = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        value = _safe(fn.complex_value, arg.value) if arg.value is not None else None
        return _Bound(arg.constant, value, arg.digits + 1)
    if isinstance(node, ast.BinOp):
        left = _bound(node.left, source, symbols, limits)
        right = _bound(node.right, source, symbols, limits)
        constant = left.constant and right.constant
        if isinstance(node.op, ast.Pow):
            digits = left.digits + right.digits
            if right.constant:
                exponent = right.value
                if exponent is None or abs(exponent) > limits.max_exponent:
                    raise _Reject(
                        _error(
                            ErrorKind.EXPONENT_TOO_LARGE,
                            "constant exponent too large or not computable",
                            fragment=source.fragment(node.right),
                            offset=source.span(node.right)[0],
                            limit=limits.max_exponent,
                        )
                    )
                # (b)**n makes sympy compute about n times b's digits
                # (it also distributes integer powers over products).
                digits = left.digits * max(1, math.ceil(abs(exponent))) + right.digits
            value = None
            if left.value is not None and right.value is not None:
                value = _safe(lambda a, b: a**b, left.value, right.value)
        else:
            digits = left.digits + right.digits
            value = None
            if left.value is not None and right.value is not None:
                op = {ast.Add: complex.__add__, ast.Sub: complex.__sub__, ast.Mult: complex.__mul__, ast.Div: complex.__truediv__}[type(node.op)]  # type: ignore[index]
                value = _safe(op, left.value, right.value)
        if digits > limits.max_constant_digits:
            raise _Reject(
                _error(
                    ErrorKind.NUMBER_TOO_LARGE,
                    f"constant arithmetic would need over {limits.max_constant_digits} digits",
                    fragment=source.fragment(node),
                    offset=source.span(node)[0],
                    limit=limits.max_constant_digits,
                )
            )
        return _Bound(constant, value if constant else None, digits)
    raise _Reject(  # pragma: no cover - the whitelist admits nothing else
        _error(ErrorKind.BUILD_FAILED, f"unexpected node {type(node).__name__}", offset=source.span(node)[0])
    )


# --- step 6: building sympy ---------------------------------------------------------------


def _number(value: int | float) -> sympy.Expr:
    if isinstance(value, int):
        return sympy.Integer(value)
    # Decimals written by students are meant exactly: 0.5 is 1/2, not a binary
    # float. repr() gives the shortest decimal that round-trips.
    num, den = Decimal(repr(value)).as_integer_ratio()
    return sympy.Rational(num, den)


def _magnitude(expr: sympy.Expr) -> float | None:
    """|value| of a numeric sympy expression, or None if it has no finite value."""
    try:
        value = complex(expr.evalf(15))
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return None
    size = abs(value)
    return size if math.isfinite(size) else None


def _digits(expr: sympy.Expr) -> int:
    """Digits of all exact numbers inside ``expr`` (numerators and denominators)."""
    return sum(len(str(abs(r.p))) + (len(str(r.q)) if r.q != 1 else 0) for r in expr.atoms(sympy.Rational))


@dataclass
class _Builder:
    """Builds sympy from a validated tree, re-checking bounds on the built objects.

    The AST bound pass cannot see cancellations: in ``2**(x - x + 10**12)``
    the exponent looks symbolic in the tree, but sympy folds ``x - x`` to 0
    and would then compute 2**(10**12). So before each ``Pow`` and ``exp``
    the already-built (auto-simplified) operands are checked again.
    Recursion depth is bounded by ``limits.max_depth`` (checked earlier).
    """

    table: Mapping[str, sympy.Expr]
    source: _Source
    limits: ParseLimits

    def _reject(self, kind: ErrorKind, message: str, node: ast.AST) -> _Reject:
        return _Reject(
            _error(kind, message, fragment=self.source.fragment(node), offset=self.source.span(node)[0],
                   limit=self.limits.max_exponent if kind is ErrorKind.EXPONENT_TOO_LARGE else self.limits.max_constant_digits)
        )

    def _check_exponent_terms(self, exponent: sympy.Expr, node: ast.AST) -> None:
        # sympy evaluates exp(x + k*log(b)) to b**k*exp(x) on construction,
        # so every numeric term of an exponent must stay small.
        for term in sympy.Add.make_args(exponent):
            if term.is_number:
                size = _magnitude(term)
                if size is None or size > self.limits.max_exponent:
                    raise self._reject(ErrorKind.EXPONENT_TOO_LARGE, "numeric term of an exponent too large", node)

    def power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> sympy.Expr:
        self._check_exponent_terms(exponent, node)
        if exponent.is_number:
            size = _magnitude(exponent) or 0.0
            # (b)**n computes about n times b's digits (sympy also distributes
            # integer powers over products), and roots of huge integers are slow.
            if _digits(base) * max(1, math.ceil(size)) > self.limits.max_constant_digits:
                raise self._reject(ErrorKind.NUMBER_TOO_LARGE, "power would compute a huge number", node)
        return sympy.Pow(base, exponent)

    def build(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return _number(node.value)
        if isinstance(node, ast.Name):
            return self.table[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand)
            return sympy.Mul(sympy.Integer(-1), operand) if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            name = node.func.id  # type: ignore[attr-defined]
            arg = self.build(node.args[0])
            if name in ("exp", "sigmoid"):
                self._check_exponent_terms(arg, node)
            elif name == "sqrt" and _digits(arg) > self.limits.max_constant_digits:
                raise self._reject(ErrorKind.NUMBER_TOO_LARGE, "square root of a huge number", node)
            return FUNCTIONS[name].build(arg)
        if isinstance(node, ast.BinOp):
            left = self.build(node.left)
            right = self.build(node.right)
            if isinstance(node.op, ast.Add):
                return sympy.Add(left, right)
            if isinstance(node.op, ast.Sub):
                return sympy.Add(left, sympy.Mul(sympy.Integer(-1), right))
            if isinstance(node.op, ast.Mult):
                return sympy.Mul(left, right)  # order kept: matters for matrix symbols
            if isinstance(node.op, ast.Div):
                return sympy.Mul(left, sympy.Pow(right, sympy.Integer(-1)))
            return self.power(left, right, node)
        raise TypeError(f"unexpected node {type(node).__name__}")  # pragma: no cover


# --- public API ------------------------------------------------------------------------


def parse_expression(
    text: str,
    symbols: Mapping[str, SymbolSpec],
    *,
    max_length: int = 500,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> ParseResult:
    """Parse a student's answer against the question's symbols.

    Returns a ``ParseResult`` with either the sympy expression or a typed
    ``ParseError``; it does not raise for anything the student typed.
    ``TypeError``/``SymbolSpecError`` are raised only for caller mistakes
    (``text`` not a str, malformed symbol table).
    """
    if not isinstance(text, str):
        raise TypeError(f"answer must be a str, got {type(text).__name__}")
    check_table(symbols)
    prepared = _prepare(text, max_length, limits)
    if isinstance(prepared, ParseError):
        return ParseResult(error=prepared)
    tree = _parse_ast(prepared)
    if isinstance(tree, ParseError):
        return ParseResult(error=tree)
    size_problem = _check_size(tree, prepared, limits)
    if size_problem is not None:
        return ParseResult(error=size_problem)
    problems = _whitelist_problems(tree, prepared, symbols, limits)
    if problems:
        # Leftmost first (stable sort keeps outer-before-inner at equal offsets):
        # that is where a student reading left to right expects the fix.
        problems.sort(key=lambda p: -1 if p.offset is None else p.offset)
        return ParseResult(error=problems[0])
    try:
        _bound(tree.body, prepared, symbols, limits)
    except _Reject as rej:
        return ParseResult(error=rej.error)
    table: dict[str, sympy.Expr] = dict(CONSTANTS)
    table.update({name: spec.to_sympy() for name, spec in symbols.items()})  # declared symbols win over e/pi
    try:
        expr = _Builder(table, prepared, limits).build(tree.body)
    except _Reject as rej:
        return ParseResult(error=rej.error)
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        # Bounds make this unlikely; a sympy failure is still the answer's
        # problem to report, not a crash of the grader.
        return ParseResult(error=_error(ErrorKind.BUILD_FAILED, f"{type(exc).__name__}: {exc}", offset=None))
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, sympy.S.NegativeInfinity):
        # 1/0, log(0), 0/0: sympy turns these into zoo/nan, which would make
        # every later comparison meaningless ("differs by zoo").
        return ParseResult(error=_error(ErrorKind.UNDEFINED, f"answer evaluates to {expr}", offset=None))
    called = frozenset(n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
    return ParseResult(expr=expr, functions=called)


def parse_reference(
    text: str,
    symbols: Mapping[str, SymbolSpec],
    *,
    max_length: int = 2000,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> sympy.Expr:
    """Parse a *course* reference expression with the same rules as answers.

    Using the same parser guarantees the reference uses the same symbols and
    assumptions as student answers. Failure is the course's fault and raises
    ``ReferenceExpressionError`` (worded for staff).
    """
    result = parse_expression(text, symbols, max_length=max_length, limits=limits)
    if result.error is not None:
        raise ReferenceExpressionError(text, result.error)
    return result.expr  # type: ignore[return-value]

"""Typed errors for math answers, and the one function that words them.

Two families, worded differently on purpose (as in PrairieLearn):

* ``ParseError`` values describe a problem with the *student's* answer. They
  are returned inside a ``ParseResult``, never raised, and carry data (kind,
  offending fragment, character offset, limit, suggestion). ``format_error``
  is the only place that turns them into a sentence for the student.
* ``SymbolSpecError`` and ``ReferenceExpressionError`` are exceptions for
  mistakes in the *course's* setup (a bad symbol declaration, a reference
  answer that does not parse); their messages address course staff.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .vocabulary import CONSTANTS, FUNCTIONS

# How much of a long answer is echoed around the caret.
_WINDOW = 72


class ErrorKind(str, enum.Enum):
    """What went wrong with a student answer (stable names, safe to log/serialise)."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    BAD_CHARACTER = "bad_character"
    TOO_DEEP = "too_deep"
    TOO_COMPLEX = "too_complex"
    SYNTAX = "syntax"
    FORBIDDEN_CONSTRUCT = "forbidden_construct"
    FORBIDDEN_OPERATOR = "forbidden_operator"
    BAD_CONSTANT = "bad_constant"
    NUMBER_TOO_LONG = "number_too_long"
    NUMBER_TOO_LARGE = "number_too_large"
    EXPONENT_TOO_LARGE = "exponent_too_large"
    UNKNOWN_NAME = "unknown_name"
    UNKNOWN_FUNCTION = "unknown_function"
    NOT_A_FUNCTION = "not_a_function"
    WRONG_ARITY = "wrong_arity"
    KEYWORD_ARGUMENT = "keyword_argument"
    UNDEFINED = "undefined"
    BUILD_FAILED = "build_failed"


@dataclass(frozen=True)
class ParseError:
    """A problem with a student's answer, as data.

    kind: what went wrong.
    message: short technical description for logs and course staff.
    fragment: the offending part of the answer, as the student typed it.
    offset: 0-based character offset of the problem in the answer, or None
        when it concerns the answer as a whole (too long, too complex).
    construct: human name of the rejected construct ("attribute access (.)").
    suggestion: a replacement the student probably meant ("did you mean").
    limit: the limit that was exceeded, for the size/bound kinds.
    expected_arity, given_arity: for WRONG_ARITY.
    """

    kind: ErrorKind
    message: str
    fragment: str = ""
    offset: int | None = None
    construct: str | None = None
    suggestion: str | None = None
    limit: int | None = None
    expected_arity: int | None = None
    given_arity: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for results that cross process boundaries)."""
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


class SymbolSpecError(ValueError):
    """A symbol declaration in the course setup (rubric) is invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(f"course setup: {message}")


class ReferenceExpressionError(ValueError):
    """The course's reference expression does not parse with the given symbols."""

    def __init__(self, text: str, error: ParseError) -> None:
        self.text = text
        self.error = error
        where = f" at character {error.offset}" if error.offset is not None else ""
        super().__init__(
            f"course setup: the reference expression {text!r} is not valid{where}: {error.message}. "
            "Fix the rubric (and declare every symbol it uses)."
        )


def _code(fragment: str) -> str:
    """Quote a fragment for a sentence, shortened so a flood is not echoed."""
    fragment = " ".join(fragment.split())
    if len(fragment) > 40:
        fragment = fragment[:37] + "..."
    return f"`{fragment}`"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _sentence(err: ParseError, text: str) -> str:
    """The student-facing description of one error (without the caret block)."""
    k = err.kind
    frag = _code(err.fragment) if err.fragment else ""
    hint = f" Did you mean `{err.suggestion}`?" if err.suggestion else ""
    if k is ErrorKind.EMPTY:
        return "Your answer is empty: type an expression."
    if k is ErrorKind.TOO_LONG:
        return (
            f"Your answer is {len(text)} characters long; answers are limited to {err.limit}. "
            "Check that you pasted the right thing, or simplify it."
        )
    if k is ErrorKind.BAD_CHARACTER:
        return f"Your answer contains a character that cannot be part of a math expression ({err.fragment!r}). Remove it."
    if k is ErrorKind.TOO_DEEP:
        return f"Your answer nests brackets or operations more than {err.limit} levels deep. Write it more simply."
    if k is ErrorKind.TOO_COMPLEX:
        return f"Your answer has more than {err.limit} parts (numbers, symbols, operations). Simplify it."
    if k is ErrorKind.SYNTAX:
        extra = f" {err.suggestion}" if err.suggestion else ""
        return f"Your answer is not a well-formed expression: {err.message}.{extra}"
    if k is ErrorKind.FORBIDDEN_CONSTRUCT:
        return (
            f"{err.construct or 'This construct'} is not allowed in a math answer ({frag}). "
            "Use only numbers, the question's symbols, + - * / ^ (or **), brackets and the functions listed below."
        )
    if k is ErrorKind.FORBIDDEN_OPERATOR:
        extra = f" {err.suggestion}" if err.suggestion else ""
        return f"The operator {frag} is not allowed; use + - * / and ^ (or **).{extra}"
    if k is ErrorKind.BAD_CONSTANT:
        return f"{err.construct or 'This value'} cannot appear in a math answer ({frag}); use numbers and symbols only."
    if k is ErrorKind.NUMBER_TOO_LONG:
        return f"The number {frag} has more than {err.limit} digits. Use a shorter number."
    if k is ErrorKind.NUMBER_TOO_LARGE:
        return f"The numbers in {frag} get too large to work with (over {err.limit} digits). Simplify your answer."
    if k is ErrorKind.EXPONENT_TOO_LARGE:
        return (
            f"The exponent {frag} is too large: a numeric exponent must be at most {err.limit} in size "
            "(and cannot itself be a huge power)."
        )
    if k is ErrorKind.UNKNOWN_NAME:
        if err.fragment in FUNCTIONS:
            return f"{frag} is a function: write it with its argument in brackets, e.g. `{err.fragment}(x)`."
        return f"{frag} is not a symbol of this question.{hint}"
    if k is ErrorKind.UNKNOWN_FUNCTION:
        return f"{frag} is not a function you can use.{hint}"
    if k is ErrorKind.NOT_A_FUNCTION:
        extra = f" {err.suggestion}" if err.suggestion else ""
        return f"{frag} uses something that is not a function as if it were one.{extra}"
    if k is ErrorKind.WRONG_ARITY:
        return (
            f"`{err.fragment}` takes {_plural(err.expected_arity or 0, 'argument')}, "
            f"but your answer gives it {err.given_arity}."
        )
    if k is ErrorKind.UNDEFINED:
        return "Your answer is undefined: it divides by zero or takes log(0), for example. Check it."
    if k is ErrorKind.KEYWORD_ARGUMENT:
        return f"Functions take plain arguments, not `name=value` ({frag})."
    return f"Your answer could not be turned into a math expression ({err.message})."


def _excerpt(text: str, offset: int | None) -> tuple[str, int | None]:
    """A one-line excerpt of the answer and the caret column within it."""
    # Control characters and newlines would break the caret's alignment.
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    if len(flat) <= _WINDOW:
        return flat, offset
    pos = 0 if offset is None else min(max(offset, 0), len(flat))
    start = max(0, min(pos - _WINDOW // 2, len(flat) - _WINDOW))
    end = start + _WINDOW
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(flat) else ""
    caret = None if offset is None else len(prefix) + pos - start
    return prefix + flat[start:end] + suffix, caret


def format_error(err: ParseError, text: str, allowed_symbols: Iterable[str]) -> str:
    """Render a student-facing explanation of ``err`` in answer ``text``.

    The result is a sentence saying what is wrong, the answer (or the part
    around the problem, for long answers) with a caret under the spot, and
    the symbols, functions and constants this question accepts.
    """
    lines = [_sentence(err, text)]
    excerpt, caret = _excerpt(text, err.offset)
    if excerpt.strip():
        lines.append("    " + excerpt)
        if caret is not None:
            lines.append("    " + " " * caret + "^")
    symbols = sorted(allowed_symbols)
    if symbols:
        lines.append("Symbols in this question: " + ", ".join(symbols) + ".")
    else:
        lines.append("This question uses no symbols.")
    constants = [name for name in CONSTANTS if name not in symbols]
    lines.append(
        "Functions: "
        + ", ".join(f"{name}(x)" for name in FUNCTIONS)
        + (". Constants: " + ", ".join(constants) if constants else "")
        + ". Write powers as x^2 or x**2 and every product with *."
    )
    return "\n".join(lines)

"""Safe parsing of student math answers and equivalence with a reference.

A pure library (no dependency on the rest of ``grader``)::

    from grader.mathexpr import SymbolSpec, spec_table, parse_expression, parse_reference, compare, format_error

    symbols = spec_table(SymbolSpec("w_i"), SymbolSpec("g", interval=(0, 1)))
    reference = parse_reference("w_i*g*(1-g)", symbols)      # course text: raises on error
    result = parse_expression(answer, symbols)               # student text: never raises
    if not result.ok:
        feedback = format_error(result.error, answer, symbols)
    else:
        verdict = compare(result.expr, reference, symbols)   # verdict.equivalent: True/False/None

Student text is parsed through an AST whitelist (``parse.py``) and never
reaches ``eval``/``sympify``; simplification runs in a killable worker
process (``symbolic.py``); a numeric spot-check (``numeric.py``) confirms or
decides; ``equivalence.py`` combines the two without ever turning "unknown"
into "wrong".
"""

from .equivalence import Method, Verdict, compare
from .errors import ErrorKind, ParseError, ReferenceExpressionError, SymbolSpecError, format_error
from .numeric import Counterexample
from .parse import DEFAULT_LIMITS, ParseLimits, ParseResult, parse_expression, parse_reference
from .symbols import SymbolSpec, make_symbols, spec_table
from .vocabulary import CONSTANTS, FUNCTIONS

__all__ = [
    "CONSTANTS",
    "Counterexample",
    "DEFAULT_LIMITS",
    "ErrorKind",
    "FUNCTIONS",
    "Method",
    "ParseError",
    "ParseLimits",
    "ParseResult",
    "ReferenceExpressionError",
    "SymbolSpec",
    "SymbolSpecError",
    "Verdict",
    "compare",
    "format_error",
    "make_symbols",
    "parse_expression",
    "parse_reference",
    "spec_table",
]

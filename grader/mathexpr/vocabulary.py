"""The fixed vocabulary a student answer may use besides the question's symbols.

One table for functions and one for named constants, so the parser, the error
messages ("functions you can use: ...") and the bound checks all read the same
list. Every function here takes exactly one positional argument; the arity is
still stored per function so that adding e.g. a two-argument ``log(x, b)``
later is a one-line change.
"""

from __future__ import annotations

import cmath
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import sympy


def _sigmoid(x: sympy.Expr) -> sympy.Expr:
    # The course defines sigmoid(x) as 1/(1+exp(-x)); expanding it here means
    # sympy never sees an opaque function it cannot simplify through.
    return sympy.Pow(sympy.Add(sympy.Integer(1), sympy.exp(-x)), sympy.Integer(-1))


def _complex_sigmoid(z: complex) -> complex:
    return 1 / (1 + cmath.exp(-z))


@dataclass(frozen=True)
class FunctionSpec:
    """A function students may call: its name, arity and two implementations.

    ``build`` makes the sympy object; ``complex_value`` is used only to bound
    constant sub-expressions (e.g. an exponent) before any sympy object exists.
    """

    name: str
    arity: int
    build: Callable[..., sympy.Expr]
    complex_value: Callable[..., complex]
    description: str

    def __repr__(self) -> str:
        return f"FunctionSpec({self.name!r}, arity={self.arity})"


FUNCTIONS: Mapping[str, FunctionSpec] = MappingProxyType(
    {
        "sigmoid": FunctionSpec("sigmoid", 1, _sigmoid, _complex_sigmoid, "1/(1+exp(-x))"),
        "exp": FunctionSpec("exp", 1, sympy.exp, cmath.exp, "e to the power x"),
        "log": FunctionSpec("log", 1, sympy.log, cmath.log, "natural logarithm"),
        "tanh": FunctionSpec("tanh", 1, sympy.tanh, cmath.tanh, "hyperbolic tangent"),
        "sqrt": FunctionSpec("sqrt", 1, sympy.sqrt, cmath.sqrt, "square root"),
        "sin": FunctionSpec("sin", 1, sympy.sin, cmath.sin, "sine"),
        "cos": FunctionSpec("cos", 1, sympy.cos, cmath.cos, "cosine"),
        "abs": FunctionSpec("abs", 1, sympy.Abs, lambda z: complex(abs(z)), "absolute value"),
    }
)

CONSTANTS: Mapping[str, sympy.Expr] = MappingProxyType({"pi": sympy.pi, "e": sympy.E})

# Values of the named constants for the bound checks (same keys as CONSTANTS).
CONSTANT_VALUES: Mapping[str, complex] = MappingProxyType({"pi": complex(cmath.pi), "e": complex(cmath.e)})

# Names students often type for things we do support; used only to suggest the
# right spelling, never accepted silently (one spelling keeps answers uniform).
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "ln": "log",
        "Log": "log",
        "sigma": "sigmoid",
        "σ": "sigmoid",
        "sig": "sigmoid",
        "logistic": "sigmoid",
        "Abs": "abs",
        "E": "e",
        "Pi": "pi",
        "PI": "pi",
        "π": "pi",
    }
)

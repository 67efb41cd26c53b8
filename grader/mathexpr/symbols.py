"""Declarations of the symbols a question uses, and their sympy counterparts.

A ``SymbolSpec`` is written by course staff (from the rubric), so a bad one is
the course's mistake and raises ``SymbolSpecError`` at construction time,
worded for staff, instead of surfacing later as a confusing student error.

The same spec drives three things that must agree: the sympy assumptions used
by ``simplify``, the names the parser accepts, and the range the numeric
spot-check samples from.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import sympy

from .errors import SymbolSpecError
from .vocabulary import FUNCTIONS

# Where the spot-check samples symbols that only say "positive" or "real".
# Kept away from 0 for positive symbols so that log/1/x stay well conditioned.
POSITIVE_SAMPLE_RANGE: tuple[float, float] = (0.1, 3.0)
REAL_SAMPLE_RANGE: tuple[float, float] = (-2.0, 2.0)


@dataclass(frozen=True)
class SymbolSpec:
    """One symbol of a question.

    name: the identifier students type (``w_i``, ``g``, ``W1``).
    positive: the symbol is > 0.
    real: the symbol is real (default; deep-learning quantities are). Ignored
        for non-commutative symbols, whose numeric stand-ins are real matrices.
    interval: open interval ``(lo, hi)`` the symbol lies in, e.g. ``(0, 1)``
        for a sigmoid output. sympy has no interval assumption, so this maps
        to ``positive``/``negative`` when the interval allows it and is used
        in full by the numeric spot-check.
    commutative: False for matrix/vector symbols (products keep their order).
    """

    name: str
    positive: bool = False
    real: bool = True
    interval: tuple[float, float] | None = None
    commutative: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise SymbolSpecError(f"symbol name {self.name!r} is not a plain identifier students can type")
        if self.name.startswith("_"):
            raise SymbolSpecError(f"symbol name {self.name!r} must not start with an underscore")
        if self.name in FUNCTIONS:
            raise SymbolSpecError(
                f"symbol name {self.name!r} is also the name of a function; rename the symbol"
            )
        if self.interval is not None:
            lo, hi = self.interval
            if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))):
                raise SymbolSpecError(f"interval of {self.name!r} must be two numbers, got {self.interval!r}")
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise SymbolSpecError(
                    f"interval of {self.name!r} must be finite with lo < hi, got {self.interval!r}"
                )
            if self.positive and lo < 0:
                raise SymbolSpecError(f"{self.name!r} is declared positive but its interval {self.interval!r} is not")
        if not self.commutative and (self.positive or self.interval is not None):
            raise SymbolSpecError(
                f"{self.name!r} is non-commutative (a matrix); positive/interval only apply to scalars"
            )

    def to_sympy(self) -> sympy.Symbol:
        """The sympy symbol with the assumptions this spec implies."""
        if not self.commutative:
            # sympy treats real/positive as implying commutative, so a matrix
            # symbol carries no other assumption.
            return sympy.Symbol(self.name, commutative=False)
        assumptions: dict[str, bool] = {}
        if self.real or self.positive or self.interval is not None:
            assumptions["real"] = True
        if self.positive:
            assumptions["positive"] = True
        if self.interval is not None:
            lo, hi = self.interval
            if lo >= 0:
                assumptions["positive"] = True
            elif hi <= 0:
                assumptions["negative"] = True
        return sympy.Symbol(self.name, **assumptions)

    def sample_range(self) -> tuple[float, float] | None:
        """Range for numeric sampling; None for matrix symbols."""
        if not self.commutative:
            return None
        if self.interval is not None:
            return (float(self.interval[0]), float(self.interval[1]))
        if self.positive:
            return POSITIVE_SAMPLE_RANGE
        return REAL_SAMPLE_RANGE


def spec_table(*specs: SymbolSpec) -> dict[str, SymbolSpec]:
    """Build the ``name -> SymbolSpec`` mapping the parser and ``compare`` take."""
    table: dict[str, SymbolSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise SymbolSpecError(f"symbol {spec.name!r} is declared twice")
        table[spec.name] = spec
    return table


def check_table(symbols: Mapping[str, SymbolSpec]) -> None:
    """Raise SymbolSpecError if a mapping's keys and spec names disagree."""
    for key, spec in symbols.items():
        if not isinstance(spec, SymbolSpec):
            raise SymbolSpecError(f"symbol {key!r}: expected a SymbolSpec, got {type(spec).__name__}")
        if key != spec.name:
            raise SymbolSpecError(f"symbol table key {key!r} does not match the spec's name {spec.name!r}")


def make_symbols(symbols: Mapping[str, SymbolSpec] | Iterable[SymbolSpec]) -> dict[str, sympy.Symbol]:
    """``name -> sympy.Symbol`` for building reference expressions by hand.

    Use these (or ``parse_reference``) rather than bare ``sympy.Symbol(name)``
    so that the reference and the student's answer share assumptions.
    """
    specs = list(symbols.values()) if isinstance(symbols, Mapping) else list(symbols)
    return {spec.name: spec.to_sympy() for spec in specs}

"""Equivalent forms a rubric may accept, recognised the same way by every check kind that supports them.

A rubric declares them per check, under ``params``::

    accept:
      reduction: [mean, sum]            # or {forms: [mean], credit: 0.8}; per-sample is the reference's own form
      constant_factor: {credit: 1.0}    # one positive factor c, the same in every case, on values and gradients
      permuted_channels: {credit: 0.5}  # the output channels of a filter bank in another order
    array_api: [torch, numpy]           # call with torch tensors; if that raises, again with float64 numpy arrays

Each kind says which of these it recognises (`Check.accepted_forms`,
`Check.array_apis`); `validate_forms` turns anything else into a rubric error
at load. The recognisers here are written so that a wrong answer cannot pass
as a form: a reduction must match exactly; a factor is fitted once, must be
positive and between 1e-3 and 1e3, and every later value and gradient must be
that factor times the reference's within the check's tolerances (so random
signs or per-case factors fail); a channel permutation must map every output
channel onto exactly one expected channel, with the same permutation in every
case of the same size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

REDUCTIONS = ("none", "mean", "sum")
FORM_NAMES = ("reduction", "constant_factor", "permuted_channels")
ARRAY_APIS = ("torch", "numpy")
FACTOR_RANGE = (1e-3, 1e3)  # a factor outside this is not a plausible rewriting of the formula


@dataclass(frozen=True)
class AcceptedForms:
    """What ``params.accept`` and ``params.array_api`` allow for one check (defaults: nothing extra)."""

    reductions: tuple[str, ...] = ()  # "mean" and/or "sum" (the per-sample form is always accepted)
    reduction_credit: float = 1.0
    factor_credit: float | None = None  # None: a constant factor is not accepted
    permutation_credit: float | None = None  # None: permuted channels are not accepted
    array_api: tuple[str, ...] = ("torch",)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "AcceptedForms":
        """Read validated params (see `validate_forms`)."""
        accept = params.get("accept") or {}
        reduction = accept.get("reduction")
        if isinstance(reduction, dict):
            forms, credit = reduction.get("forms", []), float(reduction.get("credit", 1.0))
        else:
            forms, credit = reduction or [], 1.0
        factor = accept.get("constant_factor")
        perm = accept.get("permuted_channels")
        return cls(reductions=tuple(f for f in forms if f != "none"), reduction_credit=credit,
                   factor_credit=None if factor is None else float(factor.get("credit", 1.0)),
                   permutation_credit=None if perm is None else float(perm.get("credit", 1.0)),
                   array_api=tuple(params.get("array_api", ["torch"])))

    @property
    def numpy_fallback(self) -> bool:
        return "numpy" in self.array_api


def validate_forms(kind: str, params: dict[str, Any], accepted: tuple[str, ...], array_apis: tuple[str, ...]
                   ) -> list[tuple[str, str]]:
    """Rubric problems with ``params.accept`` / ``params.array_api`` for a check of `kind`, as (path, message).

    The JSON Schema has already checked the types; this says what a kind does not recognise.
    """
    problems: list[tuple[str, str]] = []
    accept = params.get("accept")
    if accept is not None:
        if not isinstance(accept, dict):
            return [("params.accept", "params.accept must be a mapping of form name to options")]
        for name in accept:
            if name not in accepted:
                known = ", ".join(accepted) if accepted else "none"
                problems.append((f"params.accept.{name}", f"check kind {kind} does not recognise the form {name!r} "
                                 f"(it recognises: {known})"))
    apis = params.get("array_api")
    if apis is not None:
        if not isinstance(apis, list) or not apis or any(a not in ARRAY_APIS for a in apis) or apis[0] != "torch":
            problems.append(("params.array_api", f"params.array_api must be a list starting with 'torch', of "
                             f"{', '.join(ARRAY_APIS)} (got {apis!r})"))
        elif len(apis) > 1 and len(array_apis) == 1:
            problems.append(("params.array_api", f"check kind {kind} calls the student's code with torch only; "
                             "it cannot accept numpy"))
    return problems


# --- reductions and a constant factor (tensor outputs) ---------------------------------------------


def reduce(values: np.ndarray, reduction: str) -> np.ndarray:
    """The reference's per-sample values reduced over the batch axis (axis 0)."""
    if reduction == "none" or values.ndim == 0:
        return values
    return values.mean(axis=0) if reduction == "mean" else values.sum(axis=0)


def describe_reduction(reduction: str) -> str:
    return {"mean": "the mean over the batch", "sum": "the sum over the batch"}.get(reduction, "one value per sample")


@dataclass
class Candidate:
    """One form the student's function may have: a reduction and a factor (None until fitted; 1.0 when exact)."""

    reduction: str
    scaled: bool  # True: any constant factor, fitted from the first case that shows one
    factor: float | None = None

    def __post_init__(self) -> None:
        if not self.scaled:
            self.factor = 1.0

    def matches(self, got: Any, expected: np.ndarray, *, rtol: float, atol: float) -> bool:
        """Whether `got` is this form of `expected` (fitting the factor on first sight)."""
        if not isinstance(got, np.ndarray) or got.dtype.kind not in "biuf":
            return False
        target = reduce(expected.astype(np.float64), self.reduction)
        if got.shape != target.shape:
            return False
        g = got.astype(np.float64)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(target))):
            return False
        if self.factor is None:
            scale = float(np.abs(target).max()) if target.size else 0.0
            if scale <= atol * 10:  # too small to read a factor from: it must simply be ~0 here
                return bool(np.allclose(g, 0.0, rtol=0.0, atol=atol))
            factor = float((g.ravel() @ target.ravel()) / (target.ravel() @ target.ravel()))
            if not FACTOR_RANGE[0] <= factor <= FACTOR_RANGE[1]:
                return False
            if not np.allclose(g / factor, target, rtol=rtol, atol=atol):
                return False
            self.factor = factor
            return True
        # The factor divides out so that the tolerances keep their meaning at any scale.
        return bool(np.allclose(g / self.factor, target, rtol=rtol, atol=atol))

    def grads_match(self, got: list[Any], expected: list[np.ndarray], *, rtol: float, atol: float) -> bool:
        """Gradients of the student's form equal `factor` times the reference's gradients of the same reduction."""
        factor = 1.0 if self.factor is None else self.factor
        if not isinstance(got, list) or len(got) != len(expected):
            return False
        for g, e in zip(got, expected):
            if not isinstance(g, np.ndarray) or g.shape != e.shape or g.dtype.kind not in "biuf":
                return False
            if not np.allclose(g.astype(np.float64) / factor, e, rtol=rtol, atol=atol):
                return False
        return True

    def note(self, target: str) -> str:
        parts = []
        if self.reduction != "none":
            parts.append(f"returns {describe_reduction(self.reduction)} instead of one value per sample")
        if self.has_factor():
            parts.append(f"is {self.factor:.6g} times the expected function on every case, values and gradients "
                         "(a constant factor: the same minimiser, the gradients scaled alike)")
        return f"Your {target} " + " and ".join(parts) + "."

    def is_exact(self) -> bool:
        return self.reduction == "none" and not self.has_factor()

    def has_factor(self) -> bool:
        """A fitted factor other than 1 (within 1e-6, far inside any check's tolerance)."""
        return self.scaled and self.factor is not None and not np.isclose(self.factor, 1.0, rtol=1e-6, atol=0.0)


def candidates(forms: AcceptedForms) -> list[Candidate]:
    """Every form a value may be matched against, the exact one first."""
    out = [Candidate("none", False)]
    out += [Candidate(r, False) for r in forms.reductions]
    if forms.factor_credit is not None:
        out += [Candidate("none", True)] + [Candidate(r, True) for r in forms.reductions]
    return out


def credit_of(candidate: Candidate, forms: AcceptedForms) -> float:
    """The rubric's credit for a form: the product of the credits of its parts."""
    credit = 1.0
    if candidate.reduction != "none":
        credit *= forms.reduction_credit
    if candidate.has_factor():
        credit *= forms.factor_credit if forms.factor_credit is not None else 0.0
    return credit


# --- permuted output channels -----------------------------------------------------------------------


def channel_permutation(got: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float) -> list[int] | None:
    """perm with got[:, i] == expected[:, perm[i]] for every output channel i (axis 1), or None.

    Ties (two equal expected channels) are resolved by a bipartite matching, so
    a permutation is found whenever one exists.
    """
    if got.shape != expected.shape or got.ndim < 2:
        return None
    n = got.shape[1]
    fits = [[j for j in range(n) if np.allclose(got[:, i], expected[:, j], rtol=rtol, atol=atol)] for i in range(n)]
    owner: dict[int, int] = {}  # expected channel -> student channel

    def assign(i: int, seen: set[int]) -> bool:  # Kuhn's augmenting path
        for j in fits[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    if not all(assign(i, set()) for i in range(n)):
        return None
    perm = [0] * n
    for j, i in owner.items():
        perm[i] = j
    return perm


def describe_permutation(perm: list[int]) -> str:
    """'channels 0 and 1 are swapped' for a transposition, the full mapping otherwise."""
    moved = [i for i, j in enumerate(perm) if i != j]
    if len(moved) == 2:
        return f"output channels {moved[0]} and {moved[1]} are swapped"
    return "the output channels are in another order: " + ", ".join(f"your channel {i} is expected channel {j}"
                                                                    for i, j in enumerate(perm) if i != j)


@dataclass
class PermutationTracker:
    """The same permutation in every case with the same number of channels."""

    seen: dict[int, list[int]] = field(default_factory=dict)

    def consistent(self, perm: list[int]) -> bool:
        previous = self.seen.setdefault(len(perm), perm)
        return previous == perm

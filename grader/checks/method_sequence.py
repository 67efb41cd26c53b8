"""Kind ``method_sequence``: a stateful object fed a sequence, every answer compared with the reference's.

For each scenario the sandbox builds ``target(**init)`` and calls
``.<method>(x)`` for each x of the inputs, returning every result; the
reference class does the same here. Scenarios are written in the rubric
(``params.scenarios: [{init: {...}, inputs: [...]}]``, e.g. loss sequences
with plateaus chosen to separate ``<`` from ``<=``), and ``params.random:
{count, length, inits}`` adds generated loss sequences with plateaus, on a
grid of 1/64 so that every comparison (with ``min_delta`` a multiple of 1/64
too) is exact in floating point. ``params.until: true`` stops each sequence
at the reference's first ``True`` (early stopping says stop once).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from grader.checks import register
from grader.checks.options import INIT, NAME, NONNEG, REQUIRED, Option, nested_defaults
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome, reply_failure

FINDINGS = ("wrong_sequence",)
GRID = 1 / 64


def plateau_sequence(rng: np.random.Generator, length: int) -> list[float]:
    """Losses that fall, stall on exact repeats, and bounce, on a 1/64 grid (exact in binary)."""
    value, out = 2.0, []
    for _ in range(length):
        r = rng.uniform()
        if r < 0.4:
            value = max(GRID, value - GRID * int(rng.integers(1, 9)))
        elif r > 0.75:
            value = value + GRID * int(rng.integers(1, 5))
        out.append(value)  # otherwise an exact repeat: a plateau
    return out


def _plain_result(x: Any) -> Any:
    if isinstance(x, np.ndarray) and x.shape == () and x.dtype.kind in "biuf":
        return x.item()
    return x


def same(got: Any, expected: Any, rtol: float) -> bool:
    got = _plain_result(got)
    if isinstance(expected, bool):
        return isinstance(got, bool) and got == expected
    if isinstance(expected, (int, float)):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and bool(np.isclose(got, expected, rtol=rtol, atol=0.0))
    return got == expected


def _show(values: list[Any], upto: int) -> str:
    shown = [f"{v:g}" if isinstance(v, float) else repr(v) for v in values[: upto + 1]]
    if len(shown) > 12:
        shown = ["..."] + shown[-12:]
    return ", ".join(shown)


@register
class MethodSequenceCheck(Check):
    kind = "method_sequence"
    findings = COMMON_FINDINGS + FINDINGS
    options = (
        Option("method", NAME, "the method called on each input in turn, e.g. step", REQUIRED),
        Option("scenarios", {"type": "array", "items": {"type": "object", "required": ["inputs"],
                                                        "properties": {"init": INIT, "inputs": {"type": "array"}}}},
               "fixed sequences: [{init: {...}, inputs: [...]}]", []),
        Option("random", {"type": "object", "additionalProperties": False, "properties": {
                   "count": {"type": "integer", "minimum": 1, "default": 3},
                   "length": {"type": "integer", "minimum": 1, "default": 30},
                   "inits": {"type": "array", "items": INIT, "minItems": 1, "default": [{}]}}},
               "random loss sequences with plateaus: {count: 3, length: 30, inits: [{...}]}"),
        Option("until", {}, "judge each sequence up to the reference's first result equal to this (e.g. true)"),
        Option("rtol", NONNEG, "relative tolerance on each result", 1e-9),
    )

    def scenarios(self, ctx: Context) -> list[tuple[dict[str, Any], list[Any]]]:
        p = self.params
        out = [(dict(s.get("init", {})), list(s["inputs"])) for s in p["scenarios"]]
        if p["random"] is not None:
            rng = ctx.rng(self.spec)
            random = nested_defaults(self.options, "random", p["random"])
            inits = random["inits"]
            for k in range(int(random["count"])):
                out.append((dict(inits[k % len(inits)]), plateau_sequence(rng, int(random["length"]))))
        return out

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        method, rtol = p["method"], float(p["rtol"])
        cls = getattr(ctx.reference, self.spec.reference)
        scenarios = self.scenarios(ctx)
        for init, inputs in scenarios:
            ref = cls(**init)
            expected = [getattr(ref, method)(x) for x in inputs]
            if p["until"] is not None and p["until"] in expected:
                # Judge up to the reference's first `until` (EarlyStopping's first True): what an
                # object answers after it has said stop is not part of the contract.
                cut = expected.index(p["until"]) + 1
                inputs, expected = inputs[:cut], expected[:cut]
            call = f"{self.spec.target}({', '.join(f'{k}={v!r}' for k, v in init.items())})"
            reply = ctx.request(self.spec, {"op": "method_sequence", "target": self.spec.target, "init": init,
                                            "method": method, "inputs": inputs})
            if not reply.ok:
                return reply_failure(reply, f"Calling {call}.{method}() over {len(inputs)} inputs")
            got = reply.value.get("results") if isinstance(reply.value, dict) else None
            if not isinstance(got, list) or len(got) != len(expected):
                # Fail closed: zip() would silently judge only the answers that came back.
                n = len(got) if isinstance(got, list) else 0
                return Outcome.fail("wrong_sequence", f"Calling {call}.{method}() over {len(inputs)} inputs gave {n} result(s) "
                                    f"instead of {len(expected)}, so the sequence could not be checked.")
            for k, (g, e) in enumerate(zip(got, expected)):
                if not same(g, e, rtol):
                    g = _plain_result(g)
                    message = (f"With {call}, after {method}() was called with {_show(inputs, k)} "
                               f"(call {k + 1}), it returned {g!r}; expected {e!r}.")
                    if any(x == min(inputs[:j]) for j, x in enumerate(inputs[: k + 1]) if j > 0):
                        message += (" Some of these losses exactly equal the best so far: an equal loss is not an "
                                    "improvement (compare with a strict <, and subtract min_delta where there is one).")
                    return Outcome.fail("wrong_sequence", message)
        n = sum(len(i) for _, i in scenarios)
        return Outcome(passed=True, feedback=[f"Same results as the reference on {len(scenarios)} sequences ({n} calls)."])

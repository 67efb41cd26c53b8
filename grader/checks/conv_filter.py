"""Kind ``conv_filter``: the student returns convolution parameters; judge what conv2d does with them.

The function under test returns either a weight tensor (applied with the
rubric's fixed ``conv`` options) or a dict ``weight/stride/padding/groups``.
Both the student's and the reference's parameters are applied to the same
random inputs with ``F.conv2d`` here in the grader, and the outputs compared:
any filter with the right effect is right, whatever its layout.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, case_label, compare_arrays, make_tensor, reply_failure, shape_str


class BadParameters(ValueError):
    """The returned conv parameters are not usable; the message says why."""


def _as_int_or_pair(value: Any, name: str) -> int | tuple[int, ...]:
    if type(value) is int:
        return value
    if isinstance(value, list) and all(type(v) is int for v in value) and len(value) in (1, 2):
        return tuple(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.size in (1, 2):
        return tuple(int(v) for v in value.reshape(-1)) if value.size == 2 else int(value.reshape(-1)[0])
    raise BadParameters(f"'{name}' should be an int (or a pair of ints), got {type(value).__name__}")


def conv_params(value: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """Plain data from the sandbox (or a reference value) -> kwargs for F.conv2d, type-checked."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, dict):
        value = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in value.items()}
        if "weight" not in value:
            raise BadParameters(f"the dict needs a 'weight' entry (it has: {', '.join(sorted(value)) or 'nothing'})")
        weight = value["weight"]
        params = {k: _as_int_or_pair(value[k], k) for k in ("stride", "padding", "groups") if k in value}
        if "groups" in params and type(params["groups"]) is not int:
            raise BadParameters("'groups' should be an int")
    else:
        weight, params = value, dict(fixed)
    if not isinstance(weight, np.ndarray) or weight.dtype.kind not in "biuf":
        raise BadParameters(f"the weight should be a tensor, got {type(weight).__name__}")
    if weight.ndim != 4:
        raise BadParameters(f"the weight should have 4 dimensions (C_out, C_in/groups, kH, kW), got shape {shape_str(weight.shape)}")
    return {"weight": torch.from_numpy(weight.astype(np.float64)), **params}


def apply(params: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    try:
        return F.conv2d(x, params["weight"], stride=params.get("stride", 1), padding=params.get("padding", 0),
                        groups=params.get("groups", 1))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BadParameters(f"F.conv2d cannot use these parameters on an input of shape {shape_str(x.shape)}: {first}") from None


@register
class ConvFilterCheck(Check):
    kind = "conv_filter"
    required_params = ("input",)

    def run(self, ctx: Context) -> Outcome:
        p = self.spec.params
        rng = ctx.rng(self.spec)
        cases: list[dict[str, Any]] = p.get("cases", [{}])
        rtol, atol = float(p.get("rtol", 1e-5)), float(p.get("atol", 1e-5))
        fixed = p.get("conv", {})
        reference = getattr(ctx.reference, self.spec.reference)
        for case in cases:
            call = [case[name] for name in p.get("call", [])]
            reply = ctx.request(self.spec, {"op": "call", "target": self.spec.target, "args": call})
            if not reply.ok:
                return reply_failure(reply, f"Calling {self.spec.target}({', '.join(map(str, call))})")
            student_value = reply.value["value"]
            ref_params = conv_params(reference(*call), fixed)
            try:
                params = conv_params(student_value, fixed)
            except BadParameters as exc:
                return Outcome.fail("wrong_type", f"{self.spec.target}({', '.join(map(str, call))}) returned unusable parameters: {exc}")
            if "weight_shape" in p and tuple(params["weight"].shape) != tuple(p["weight_shape"]):
                return Outcome.fail("wrong_shape", f"the filter has shape {shape_str(params['weight'].shape)}; "
                                    f"expected {shape_str(p['weight_shape'])}")
            if "weight_atol" in p:
                problem = compare_arrays(params["weight"].numpy(), ref_params["weight"].numpy(), rtol=0.0,
                                         atol=float(p["weight_atol"]), what="the filter")
                if problem:
                    return Outcome.fail("incorrect", problem + f" (tolerance {p['weight_atol']})")
            for _ in range(int(p.get("repeats", 2))):
                x = torch.from_numpy(make_tensor({"tensor": p["input"], **p.get("input_dist", {})}, case, rng).astype(np.float64))
                expected = apply(ref_params, x).numpy()
                try:
                    got = apply(params, x).numpy()
                except BadParameters as exc:
                    return self._explain(ctx, call, x, None, Outcome.fail("wrong_shape", f"For {case_label(case)}: {exc}"))
                problem = compare_arrays(got, expected, rtol=rtol, atol=atol,
                                         what=f"For {case_label(case)} and X of shape {shape_str(x.shape)}, conv2d with your filter")
                if problem:
                    return self._explain(ctx, call, x, got, Outcome.fail("incorrect", problem))
        return Outcome(passed=True, feedback=[f"Correct on {len(cases)} case(s) with random inputs."])

    def _explain(self, ctx: Context, call: list[Any], x: torch.Tensor, got: np.ndarray | None, outcome: Outcome) -> Outcome:
        """If the wrong output matches a known mistake, replace the generic sentence with its explanation."""
        for mistake in self.spec.known_mistakes:
            if not mistake.reference:
                continue
            wrong = apply(conv_params(getattr(ctx.reference, mistake.reference)(*call), self.spec.params.get("conv", {})), x).numpy()
            if got is not None and got.shape == wrong.shape and np.allclose(got, wrong, rtol=1e-5, atol=1e-5):
                return Outcome.from_mistake(mistake, *outcome.feedback)
        return outcome

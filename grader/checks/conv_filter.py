"""Kind ``conv_filter``: the student returns convolution parameters; judge what conv2d does with them.

The function under test returns either a weight tensor (applied with the
rubric's fixed ``conv`` options) or a dict ``weight/stride/padding/groups``.
Both the student's and the reference's parameters are applied to the same
random inputs with ``F.conv2d`` here in the grader, and the outputs compared:
any filter with the right effect is right, whatever its layout.

Every number the student returns (weight shape, stride, padding, groups) is
checked with integer arithmetic against the input size and against what the
reference's own convolution costs before the grader builds any tensor from
it (`conv_cost`, `cost_limit`): a huge padding or stride fails this check
with a sentence instead of exhausting the grader's memory.

With ``accept.permuted_channels`` a filter bank whose output channels are the
expected ones in another order (the same order in every case) is recognised,
named ("output channels 0 and 1 are swapped") and given the rubric's credit;
without it, the same words explain the failure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grader.checks import register
from grader.checks.options import (CASES, DIMS, MAPPING, NONNEG, POS_INT, REQUIRED, SHAPE, Option,
                                   accept_option)
from grader.checks.base import (COMMON_FINDINGS, Check, Context, Outcome, case_label, compare_arrays, make_tensor,
                                reply_failure, resolve_dims, shape_str)
from grader.checks.forms import AcceptedForms, PermutationTracker, channel_permutation, describe_permutation


class BadParameters(ValueError):
    """The returned conv parameters are not usable; the message says why."""


def _as_int_or_pair(value: Any, name: str) -> int | tuple[int, ...]:
    if type(value) is int:
        return value
    if isinstance(value, (list, tuple)) and all(type(v) is int for v in value) and len(value) in (1, 2):
        return tuple(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.size in (1, 2):
        return tuple(int(v) for v in value.reshape(-1)) if value.size == 2 else int(value.reshape(-1)[0])
    raise BadParameters(f"'{name}' should be an int (or a pair of ints), got {type(value).__name__}")


def conv_params(value: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """Plain data from the sandbox (or a reference value) -> conv2d options, type-checked.

    The weight stays a numpy array here: nothing is computed from the
    student's numbers until `check_bounds` has accepted them.
    """
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
    return {"weight": weight, **params}


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


@dataclass(frozen=True)
class ConvCost:
    """What F.conv2d would allocate and compute, counted in Python integers before running it."""

    weight: int  # elements of the weight
    padded_input: int  # elements of the zero-padded input
    output: int  # elements of the output
    macs: int  # multiply-accumulates

    def within(self, limit: "ConvCost") -> str | None:
        for name in ("weight", "padded_input", "output", "macs"):
            if getattr(self, name) > getattr(limit, name):
                return name.replace("_", " ")
        return None


def conv_cost(params: dict[str, Any], x_shape: tuple[int, ...]) -> ConvCost:
    """The cost of conv2d(x, **params), or BadParameters with a sentence when conv2d could not run at all.

    Every number here may be the student's (a padding of 10**12, a stride of 0):
    it is checked with integer arithmetic only, so nothing is allocated.
    """
    n, c, h, w = x_shape
    c_out, c_in_per_group, kh, kw = (int(d) for d in params["weight"].shape)
    stride, padding, groups = _pair(params.get("stride", 1)), _pair(params.get("padding", 0)), params.get("groups", 1)
    if min(c_out, c_in_per_group, kh, kw) < 1:
        raise BadParameters(f"the weight has an empty dimension: shape {shape_str(params['weight'].shape)}")
    if min(stride) < 1:
        raise BadParameters(f"the stride must be at least 1, got {params.get('stride')}")
    if min(padding) < 0:
        raise BadParameters(f"the padding cannot be negative, got {params.get('padding')}")
    if groups < 1 or c % groups or c_out % groups:
        raise BadParameters(f"groups={groups} must divide both the {c} input channels and the {c_out} output channels")
    if c_in_per_group * groups != c:
        raise BadParameters(f"a weight of shape {shape_str(params['weight'].shape)} with groups={groups} expects "
                            f"{c_in_per_group * groups} input channels, but X has {c}")
    ph, pw = h + 2 * padding[0], w + 2 * padding[1]
    if kh > ph or kw > pw:
        raise BadParameters(f"the {kh}×{kw} kernel is larger than the padded input ({ph}×{pw})")
    oh, ow = (ph - kh) // stride[0] + 1, (pw - kw) // stride[1] + 1
    output = n * c_out * oh * ow
    return ConvCost(weight=c_out * c_in_per_group * kh * kw, padded_input=n * c * ph * pw, output=output,
                    macs=output * c_in_per_group * kh * kw)


def cost_limit(costs: list[ConvCost]) -> ConvCost:
    """What the grader will compute for a student: 16 times the reference's (or a known mistake's), with a floor.

    A legitimate answer costs about what the reference does (a grouped or a
    full weight, a different layout); the floor (about 32 MB of float64, 10^8
    multiply-adds) keeps tiny reference convolutions from refusing reasonable work.
    """
    return ConvCost(weight=max(max(x.weight for x in costs) * 16, 1 << 22),
                    padded_input=max(max(x.padded_input for x in costs) * 16, 1 << 22),
                    output=max(max(x.output for x in costs) * 16, 1 << 22),
                    macs=max(max(x.macs for x in costs) * 16, 10**8))


def apply(params: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """conv2d in float64; call only with parameters `conv_cost` and `cost_limit` have accepted."""
    weight = torch.from_numpy(np.asarray(params["weight"], dtype=np.float64))
    try:
        return F.conv2d(x, weight, stride=params.get("stride", 1), padding=params.get("padding", 0),
                        groups=params.get("groups", 1))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BadParameters(f"F.conv2d cannot use these parameters on an input of shape {shape_str(x.shape)}: {first}") from None


@register
class ConvFilterCheck(Check):
    kind = "conv_filter"
    findings = COMMON_FINDINGS + ("permuted_channels", "too_large")
    accepted_forms = ("permuted_channels",)
    options = (
        Option("input", DIMS, "shape of the random input X; a dimension may name a case variable, e.g. [2, C, H, W]",
               REQUIRED),
        Option("cases", CASES, "the case variables, one mapping per case, e.g. [{H: 5, W: 7}]", [{}]),
        Option("call", {"type": "array", "items": {"type": "string"}},
               "case variables passed to the student's function, in order", []),
        Option("conv", MAPPING, "conv2d options (stride, padding, groups) applied to a returned weight tensor", {}),
        Option("input_dist", MAPPING, "how X is drawn: {dist: normal|uniform|sign|positive, scale, low, high}", {}),
        Option("weight_shape", SHAPE, "the shape the returned weight must have"),
        Option("weight_atol", NONNEG, "also compare the weight itself with the reference's, to this tolerance"),
        Option("rtol", NONNEG, "relative tolerance on conv2d's output", 1e-5),
        Option("atol", NONNEG, "absolute tolerance on conv2d's output", 1e-5),
        Option("repeats", POS_INT, "random inputs drawn per case", 2),
        accept_option(("permuted_channels",)),
    )

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        rng = ctx.rng(self.spec)
        cases: list[dict[str, Any]] = p["cases"]
        rtol, atol = float(p["rtol"]), float(p["atol"])
        fixed = p["conv"]
        forms = AcceptedForms.from_params(p)
        permutations = PermutationTracker()
        permuted: list[int] | None = None  # the permutation every case showed, when the rubric accepts one
        reference = getattr(ctx.reference, self.spec.reference)
        for case in cases:
            call = [case[name] for name in p["call"]]
            called = f"{self.spec.target}({', '.join(map(str, call))})"
            reply = ctx.request(self.spec, {"op": "call", "target": self.spec.target, "args": call})
            if not reply.ok:
                return reply_failure(reply, f"Calling {called}")
            student_value = reply.value["value"]
            ref_params = conv_params(reference(*call), fixed)
            try:
                params = conv_params(student_value, fixed)
            except BadParameters as exc:
                return Outcome.fail("wrong_type", f"{called} returned unusable parameters: {exc}")
            if p["weight_shape"] is not None and tuple(params["weight"].shape) != tuple(p["weight_shape"]):
                return Outcome.fail("wrong_shape", f"the filter has shape {shape_str(params['weight'].shape)}; "
                                    f"expected {shape_str(p['weight_shape'])}")
            if p["weight_atol"] is not None:
                problem = compare_arrays(params["weight"], ref_params["weight"], rtol=0.0,
                                         atol=float(p["weight_atol"]), what="the filter")
                if problem:
                    return Outcome.fail("incorrect", problem + f" (tolerance {p['weight_atol']})")
            x_shape = resolve_dims(p["input"], case)
            mistakes = [conv_params(getattr(ctx.reference, m.reference)(*call), fixed)
                        for m in self.spec.known_mistakes if m.reference]
            limit = cost_limit([conv_cost(q, x_shape) for q in [ref_params, *mistakes]])
            try:  # before any tensor is built from the student's numbers
                too_big = conv_cost(params, x_shape).within(limit)
            except BadParameters as exc:
                return self._explain(ctx, call, None, None, Outcome.fail(
                    "wrong_shape", f"For {case_label(case)} and X of shape {shape_str(x_shape)}: {exc}"))
            if too_big:
                return Outcome.fail("too_large", f"{called} returned parameters (weight {shape_str(params['weight'].shape)}, "
                                    f"stride {params.get('stride', 1)}, padding {params.get('padding', 0)}, groups "
                                    f"{params.get('groups', 1)}) whose convolution of X of shape {shape_str(x_shape)} "
                                    f"would need a {too_big} far larger than the expected convolution's (over 16 times), "
                                    "so the grader does not run it. Check the stride, the padding and the weight's shape.")
            for _ in range(int(p["repeats"])):
                x = torch.from_numpy(make_tensor({"tensor": p["input"], **p["input_dist"]}, case, rng).astype(np.float64))
                expected = apply(ref_params, x).numpy()
                try:
                    got = apply(params, x).numpy()
                except BadParameters as exc:
                    return self._explain(ctx, call, x, None, Outcome.fail("wrong_shape", f"For {case_label(case)}: {exc}"))
                what = f"For {case_label(case)} and X of shape {shape_str(x.shape)}, conv2d with your filter"
                problem = compare_arrays(got, expected, rtol=rtol, atol=atol, what=what)
                if not problem:
                    if not permutations.consistent(list(range(got.shape[1]))):
                        return Outcome.fail("incorrect", f"{what} gives the expected channels in the expected order here, "
                                            "but in another order for another case of the same size: the channels are "
                                            "not consistently permuted.")
                    continue
                perm = channel_permutation(got, expected, rtol=rtol, atol=atol)
                if perm is not None and forms.permutation_credit is not None:
                    if not permutations.consistent(perm):
                        return Outcome.fail("incorrect", problem + f" ({describe_permutation(perm)} here, but the "
                                            "channels are in another order for another case of the same size)")
                    permuted = perm
                    continue
                outcome = Outcome.fail("incorrect", problem + (f" ({describe_permutation(perm)})" if perm else ""))
                return self._explain(ctx, call, x, got, outcome)
        done = f"Correct on {len(cases)} case(s) with random inputs"
        if permuted is None:
            return Outcome(passed=True, feedback=[done + "."])
        credit = forms.permutation_credit or 0.0
        note = (f"Your filters are right but {describe_permutation(permuted)} (checked on every case): "
                "put them in the order the question asks.")
        if credit >= 1.0:
            return Outcome(passed=True, feedback=[note + " This question accepts that form.", done + ", up to that order."])
        return Outcome.fail("permuted_channels", note + f" This question gives {credit:.0%} of its points for that form.",
                            done + ", up to that order.", credit=credit)

    def _explain(self, ctx: Context, call: list[Any], x: torch.Tensor | None, got: np.ndarray | None,
                 outcome: Outcome) -> Outcome:
        """If the wrong output matches a known mistake, replace the generic sentence with its explanation."""
        if x is None or got is None:
            return outcome
        for mistake in self.spec.known_mistakes:
            if not mistake.reference:
                continue
            wrong = apply(conv_params(getattr(ctx.reference, mistake.reference)(*call), self.params["conv"]), x).numpy()
            if got.shape == wrong.shape and np.allclose(got, wrong, rtol=1e-5, atol=1e-5):
                return Outcome.from_mistake(mistake, *outcome.feedback)
        return outcome

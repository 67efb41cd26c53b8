"""Kind ``tensor_function``: call the student's function on generated inputs; compare values and gradients.

For each case the grader draws the inputs, the sandbox calls the student's
function, and the reference runs here on the same inputs. With
``grad_wrt``, both sides also return the gradient of ``sum(v * output)`` for
a random ``v`` (a random projection of the Jacobian, so one backward pass
tests the whole backward computation).

``nan_hint`` is a sentence added when the student's output has NaN where
the reference's has none (e.g. 0 log 0 computed as 0 * -inf).

Inputs: ``cases`` (a list of dicts of variables the ``args`` refer to; a
case may carry its own literal ``args`` and a ``label``) and/or ``grid``
(every combination of the listed values).

With ``select: [0]`` only those outputs of a tuple are compared (and sent
back from the sandbox): ``batchnorm_forward`` returns ``(out, cache)`` and
the cache is the student's own business.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, case_label, compare_arrays, grid_cases, make_args, reply_failure


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    return value


def _pick(out: Any, select: list[int] | None) -> Any:
    """The selected outputs of a tuple (one selected output stands alone)."""
    if select is None:
        return out
    picked = [out[i] for i in select]
    return picked[0] if len(picked) == 1 else picked


def _reference_call(fn: Any, args: list[Any], grad_wrt: list[int], weights: list[np.ndarray] | None,
                    select: list[int] | None = None) -> tuple[Any, list[Any]]:
    targs = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in args]
    for i in grad_wrt:
        targs[i] = targs[i].requires_grad_(True)
    out = _pick(fn(*targs), select)
    grads: list[Any] = []
    if grad_wrt:
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        total = sum((o * torch.from_numpy(w).to(o.dtype)).sum() for o, w in zip(outs, weights or []))
        grads = [g.detach().numpy() for g in torch.autograd.grad(total, [targs[i] for i in grad_wrt])]
    return _to_numpy(out), grads


def _has_nan(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    if isinstance(value, float):
        return value != value
    return isinstance(value, np.ndarray) and value.dtype.kind == "f" and bool(np.isnan(value).any())


def _scale_hint(got: Any, expected: np.ndarray) -> str:
    """A hint when the values are a constant multiple of the expected ones (a missing or extra factor)."""
    if not isinstance(got, np.ndarray) or got.shape != expected.shape or got.dtype.kind not in "biuf" or expected.size < 2:
        return ""
    g, e = got.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(e))) or np.abs(e).max() == 0:
        return ""
    ratio = float(g @ e / (e @ e))
    if abs(ratio) < 1e-12 or abs(ratio - 1) < 1e-6 or not np.allclose(g, ratio * e, rtol=1e-4, atol=1e-7 * np.abs(e).max()):
        return ""
    return f" (every value is {ratio:.6g} times the expected one: a factor is missing or extra)"


@register
class TensorFunctionCheck(Check):
    kind = "tensor_function"
    required_params = ("args",)

    def run(self, ctx: Context) -> Outcome:
        p = self.spec.params
        rng = ctx.rng(self.spec)
        rtol, atol = float(p.get("rtol", 1e-5)), float(p.get("atol", 1e-6))
        grad_wrt = [int(i) for i in p.get("grad_wrt", [])]
        names = p.get("outputs")
        select = [int(i) for i in p["select"]] if "select" in p else None
        reference = getattr(ctx.reference, self.spec.reference)
        cases = list(p.get("cases", [])) + grid_cases(p.get("grid")) or [{}]
        for case in cases:
            for _ in range(int(p.get("repeats", 1))):
                args = make_args(case.get("args", p["args"]), case, rng)
                expected, _ = _reference_call(reference, args, [], None, select)
                expected_list = expected if isinstance(expected, list) else [expected]
                weights = [rng.standard_normal(np.shape(e)).astype(np.float64) for e in expected_list] if grad_wrt else None
                request = {"op": "call", "target": self.spec.target, "args": args}
                if select is not None:
                    request |= {"op": "call_select", "select": select}
                if grad_wrt:
                    request |= {"grad_wrt": grad_wrt, "grad_weights": weights}
                reply = ctx.request(self.spec, request)
                where = f"{self.spec.target} with {case_label(case)}"
                if not reply.ok:
                    return reply_failure(reply, f"Calling {where}")
                got = reply.value["value"]
                problem = self._compare_outputs(got, expected, names, where, rtol, atol)
                if problem:
                    outcome = Outcome.fail(*problem)
                    if p.get("nan_hint") and _has_nan(got):
                        outcome.feedback.append(str(p["nan_hint"]))
                    return self._explain(ctx, args, got, outcome)
                if grad_wrt:
                    _, ref_grads = _reference_call(reference, args, grad_wrt, weights, select)
                    grads = reply.value.get("grads")
                    if isinstance(grads, str):
                        return Outcome.fail("incorrect", f"{where}: {grads}")
                    for i, g_ref, g in zip(grad_wrt, ref_grads, grads or []):
                        problem_g = compare_arrays(g, g_ref, rtol=rtol * 10, atol=atol * 10,
                                                   what=f"{where}: the gradient with respect to argument {i + 1}")
                        if problem_g:
                            return Outcome.fail("incorrect", problem_g + " (values are right, so the function is not "
                                                "differentiable the same way: check for detach(), numpy, or in-place ops)")
        what = "values and gradients" if grad_wrt else "values"
        return Outcome(passed=True, feedback=[f"Correct {what} on {len(cases)} case(s) with random inputs."])

    def _compare_outputs(self, got: Any, expected: Any, names: list[str] | None, where: str,
                         rtol: float, atol: float) -> tuple[str, str] | None:
        if isinstance(expected, list):
            if not isinstance(got, list) or len(got) != len(expected):
                n = len(got) if isinstance(got, list) else 1
                return ("wrong_type", f"{where} should return {len(expected)} values "
                        f"({', '.join(names or [])}), got {n}")
            for k, (g, e) in enumerate(zip(got, expected)):
                label = names[k] if names and k < len(names) else f"output {k + 1}"
                problem = compare_arrays(g, np.asarray(e), rtol=rtol, atol=atol, what=f"{where}: {label}")
                if problem:
                    return ("wrong_shape" if "shape" in problem and "differs" not in problem else "incorrect",
                            problem + _scale_hint(g, np.asarray(e)))
            return None
        if isinstance(expected, np.ndarray) and expected.shape == () and type(got) in (int, float):
            got = np.asarray(got, dtype=np.float64)  # a Python number where the reference returns a 0-d tensor
        if isinstance(expected, np.ndarray):
            label = names[0] if names and len(names) == 1 else "the result"
            problem = compare_arrays(got, expected, rtol=rtol, atol=atol, what=f"{where}: {label}")
            return ("wrong_shape" if "has shape" in problem else "incorrect", problem + _scale_hint(got, expected)) if problem else None
        if isinstance(got, np.ndarray) and got.shape == () and got.dtype.kind in "biuf":
            got = got.item()  # a 0-d tensor where the reference returns a Python number
        if isinstance(got, (int, float)) and not isinstance(got, bool) and isinstance(expected, (int, float)):
            return None if np.isclose(got, expected, rtol=rtol, atol=atol) else ("incorrect", f"{where}: got {got}, expected {expected}")
        return None if got == expected else ("incorrect", f"{where}: got {got!r}, expected {expected!r}")

    def _explain(self, ctx: Context, args: list[Any], got: Any, outcome: Outcome) -> Outcome:
        for mistake in self.spec.known_mistakes:
            if not mistake.reference:
                continue
            select = [int(i) for i in self.spec.params["select"]] if "select" in self.spec.params else None
            wrong, _ = _reference_call(getattr(ctx.reference, mistake.reference), args, [], None, select)
            if self._compare_outputs(got, wrong, None, "", 1e-5, 1e-6) is None:
                return Outcome.from_mistake(mistake, *outcome.feedback)
        return outcome

"""Kind ``tensor_function``: call the student's function on generated inputs; compare values and gradients.

For each case the grader draws the inputs, the sandbox calls the student's
function, and the reference runs here on the same inputs. With
``grad_wrt``, both sides also return the gradient of ``sum(v * output)`` for
a random ``v`` (a random projection of the Jacobian, so one backward pass
tests the whole backward computation).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, case_label, compare_arrays, make_args, reply_failure


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    return value


def _reference_call(fn: Any, args: list[Any], grad_wrt: list[int], weights: list[np.ndarray] | None) -> tuple[Any, list[Any]]:
    targs = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in args]
    for i in grad_wrt:
        targs[i] = targs[i].requires_grad_(True)
    out = fn(*targs)
    grads: list[Any] = []
    if grad_wrt:
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        total = sum((o * torch.from_numpy(w).to(o.dtype)).sum() for o, w in zip(outs, weights or []))
        grads = [g.detach().numpy() for g in torch.autograd.grad(total, [targs[i] for i in grad_wrt])]
    return _to_numpy(out), grads


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
        reference = getattr(ctx.reference, self.spec.reference)
        cases = p.get("cases", [{}])
        for case in cases:
            for _ in range(int(p.get("repeats", 1))):
                args = make_args(p["args"], case, rng)
                expected, _ = _reference_call(reference, args, [], None)
                expected_list = expected if isinstance(expected, list) else [expected]
                weights = [rng.standard_normal(np.shape(e)).astype(np.float64) for e in expected_list] if grad_wrt else None
                request = {"op": "call", "target": self.spec.target, "args": args}
                if grad_wrt:
                    request |= {"grad_wrt": grad_wrt, "grad_weights": weights}
                reply = ctx.request(self.spec, request)
                where = f"{self.spec.target} with {case_label(case)}"
                if not reply.ok:
                    return reply_failure(reply, f"Calling {where}")
                got = reply.value["value"]
                problem = self._compare_outputs(got, expected, names, where, rtol, atol)
                if problem:
                    return self._explain(ctx, args, got, Outcome.fail(*problem))
                if grad_wrt:
                    _, ref_grads = _reference_call(reference, args, grad_wrt, weights)
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
                    return ("wrong_shape" if "shape" in problem and "differs" not in problem else "incorrect", problem)
            return None
        if isinstance(expected, np.ndarray):
            problem = compare_arrays(got, expected, rtol=rtol, atol=atol, what=f"{where}: the result")
            return ("wrong_shape" if "has shape" in problem else "incorrect", problem) if problem else None
        if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
            return None if np.isclose(got, expected, rtol=rtol, atol=atol) else ("incorrect", f"{where}: got {got}, expected {expected}")
        return None if got == expected else ("incorrect", f"{where}: got {got!r}, expected {expected!r}")

    def _explain(self, ctx: Context, args: list[Any], got: Any, outcome: Outcome) -> Outcome:
        for mistake in self.spec.known_mistakes:
            if not mistake.reference:
                continue
            wrong, _ = _reference_call(getattr(ctx.reference, mistake.reference), args, [], None)
            if self._compare_outputs(got, wrong, None, "", 1e-5, 1e-6) is None:
                return Outcome(passed=False, feedback=[mistake.feedback] + outcome.feedback,
                               findings=[mistake.finding], credit=mistake.credit)
        return outcome

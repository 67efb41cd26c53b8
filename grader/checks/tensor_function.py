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

Equivalent forms (see `grader.checks.forms`): with ``accept.reduction`` a
function that returns the mean or sum over the batch of the reference's
per-sample values is compared by value in that form; with
``accept.constant_factor`` one positive factor, fitted on the first case and
held for every later case, values and gradients, is recognised and explained;
with ``array_api: [torch, numpy]`` a function that raises on tensors is called
again (in the sandbox) with float64 NumPy arrays and graded on those (such a
check cannot also check gradients: the rubric loader refuses ``grad_wrt``
there). Each form gets the rubric's credit and a sentence saying what was
recognised.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import (COMMON_FINDINGS, Check, Context, Outcome, case_label, compare_arrays, grid_cases,
                                make_args, reply_failure, shape_str)
from grader.checks.forms import (AcceptedForms, Candidate, candidates, credit_of, describe_reduction, reduce,
                                 validate_forms)
from grader.checks.options import (ARG_SPECS, CASES, INDICES, NONNEG, POS_INT, REQUIRED, Option, accept_option,
                                   array_api_option)
from grader.sandbox.client import Reply


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
                    select: list[int] | None = None, reduction: str = "none") -> tuple[Any, list[Any]]:
    targs = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in args]
    for i in grad_wrt:
        targs[i] = targs[i].requires_grad_(True)
    out = _pick(fn(*targs), select)
    if reduction != "none" and isinstance(out, torch.Tensor) and out.ndim > 0:  # an accepted reduced form
        out = out.mean(dim=0) if reduction == "mean" else out.sum(dim=0)
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
    findings = COMMON_FINDINGS + ("reduction", "constant_factor")
    accepted_forms = ("reduction", "constant_factor")
    array_apis = ("torch", "numpy")
    options = (
        Option("args", ARG_SPECS, "the arguments: {tensor: [dims], dist, scale, dtype}, {array: [...]}, {value: v} or "
               "{var: name}", REQUIRED),
        Option("cases", CASES, "the case variables the args refer to, one mapping per case (may carry args, label)", []),
        Option("grid", {"type": "object", "additionalProperties": {"type": "array", "minItems": 1}},
               "more cases: every combination of the listed values, e.g. {t: [0, 10], eta0: [0.1]}"),
        Option("repeats", POS_INT, "random inputs drawn per case", 1),
        Option("rtol", NONNEG, "relative tolerance on values and gradients", 1e-5),
        Option("atol", NONNEG, "absolute tolerance on values and gradients", 1e-6),
        Option("grad_wrt", {"type": "array", "items": {"type": "integer", "minimum": 0}},
               "positions of the arguments whose gradients are compared too", []),
        Option("outputs", {"type": "array", "items": {"type": "string"}}, "names of the outputs, for feedback"),
        Option("select", INDICES, "compare only these outputs of a returned tuple, e.g. [0]"),
        Option("nan_hint", {"type": "string"}, "a sentence added when the output has NaN where the reference has none"),
        accept_option(("reduction", "constant_factor")),
        array_api_option(),
    )

    @classmethod
    def validate_spec(cls, spec: Any) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        p = cls.params_of(spec)
        forms = p["accept"] or {}
        if "numpy" in (p["array_api"] or []) and p["grad_wrt"]:
            problems.append(("params.array_api", "a check with grad_wrt compares gradients by autograd, which NumPy "
                             "arrays do not have: accept numpy only on checks without grad_wrt"))
        if isinstance(forms, dict) and ({"reduction", "constant_factor"} & set(forms)) and len(p["outputs"] or []) > 1:
            problems.append(("params.accept", "reduction and constant_factor apply to a function with one output; "
                             f"this check names {len(p['outputs'])} outputs"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        rng = ctx.rng(self.spec)
        rtol, atol = float(p["rtol"]), float(p["atol"])
        grad_wrt = [int(i) for i in p["grad_wrt"]]
        names = p["outputs"]
        select = [int(i) for i in p["select"]] if p["select"] is not None else None
        reference = getattr(ctx.reference, self.spec.reference)
        forms = AcceptedForms.from_params(p)
        alive = candidates(forms)  # the forms the student's function may still have (the exact one first)
        with_forms = len(alive) > 1  # the rubric accepts more than the reference's own form
        numpy_note: str | None = None  # set once the function is graded on NumPy arrays
        cases = list(p["cases"]) + grid_cases(p["grid"]) or [{}]
        for case in cases:
            for _ in range(int(p["repeats"])):
                args = make_args(case.get("args", p["args"]), case, rng)
                expected, _ = _reference_call(reference, args, [], None, select)
                expected_list = expected if isinstance(expected, list) else [expected]
                weights = [rng.standard_normal(np.shape(e)).astype(np.float64) for e in expected_list] if grad_wrt else None
                where = f"{self.spec.target} with {case_label(case)}"
                if numpy_note is None:
                    request = {"op": "call", "target": self.spec.target, "args": args}
                    if select is not None:
                        request |= {"op": "call_select", "select": select}
                    if grad_wrt:
                        request |= {"grad_wrt": grad_wrt, "grad_weights": weights}
                    reply = ctx.request(self.spec, request)
                    if not reply.ok and reply.kind == "student" and forms.numpy_fallback:
                        reply, numpy_note = self._numpy_call(ctx, args, select, reply, where)
                        if numpy_note is None:
                            return reply_failure(reply, f"Calling {where}")
                else:
                    reply = self._numpy_request(ctx, args, select)
                if not reply.ok:
                    return reply_failure(reply, f"Calling {where}")
                got = reply.value["value"]
                if with_forms and isinstance(expected, np.ndarray):
                    outcome = self._match_forms(ctx, rng, alive, args, got, expected, reply, weights, grad_wrt, select,
                                                names, where, rtol, atol)
                    if outcome is not None:
                        return self._with_note(outcome, numpy_note)
                    continue
                problem = self._compare_outputs(got, expected, names, where, rtol, atol)
                if problem:
                    outcome = Outcome.fail(*problem)
                    if p["nan_hint"] and _has_nan(got):
                        outcome.feedback.append(str(p["nan_hint"]))
                    return self._with_note(self._explain(ctx, args, got, outcome), numpy_note)
                if grad_wrt:
                    _, ref_grads = _reference_call(reference, args, grad_wrt, weights, select)
                    grads = reply.value.get("grads")
                    if isinstance(grads, str):
                        return Outcome.fail("incorrect", f"{where}: {grads}")
                    if not isinstance(grads, list) or len(grads) != len(ref_grads):
                        # Fail closed: a gradient that did not come back is not a gradient that matched.
                        return Outcome.fail("incorrect", f"{where}: the grader could not obtain the gradients with "
                                            f"respect to argument(s) {', '.join(str(i + 1) for i in grad_wrt)} "
                                            "from your function, so they cannot be checked; return a tensor "
                                            "computed from the inputs with torch operations.")
                    for i, g_ref, g in zip(grad_wrt, ref_grads, grads):
                        problem_g = compare_arrays(g, g_ref, rtol=rtol * 10, atol=atol * 10,
                                                   what=f"{where}: the gradient with respect to argument {i + 1}")
                        if problem_g:
                            return Outcome.fail("incorrect", problem_g + " (values are right, so the function is not "
                                                "differentiable the same way: check for detach(), numpy, or in-place ops)")
        what = "values and gradients" if grad_wrt else "values"
        done = f"Correct {what} on {len(cases)} case(s) with random inputs."
        form = alive[0]
        if form.is_exact():
            return self._with_note(Outcome(passed=True, feedback=[done]), numpy_note)
        credit = credit_of(form, forms)
        note = form.note(self.spec.target)
        finding = "constant_factor" if form.has_factor() and form.reduction == "none" else "reduction"
        if form.has_factor() and form.reduction != "none" and credit_of(Candidate(form.reduction, False), forms) >= 1.0:
            finding = "constant_factor"  # the reduction costs nothing: the factor is what the credit is for
        if credit >= 1.0:
            return self._with_note(Outcome(passed=True, feedback=[note + " This question accepts that form.",
                                                                 f"{done[:-1]}, in that form."]), numpy_note)
        return self._with_note(Outcome.fail(finding, note + f" This question gives {credit:.0%} of its points for "
                                            "that form.", f"{done[:-1]}, in that form.", credit=credit), numpy_note)

    # --- equivalent forms ------------------------------------------------------------------------

    def _match_forms(self, ctx: Context, rng: np.random.Generator, alive: list[Candidate], args: list[Any], got: Any,
                     expected: np.ndarray, reply: Reply, weights: list[np.ndarray] | None, grad_wrt: list[int], select: list[int] | None,
                     names: list[str] | None, where: str, rtol: float, atol: float) -> Outcome | None:
        """Keep in `alive` the forms this case's values and gradients agree with; an Outcome when none is left."""
        if type(got) in (int, float):
            got = np.asarray(got, dtype=np.float64)  # a Python number is a 0-d value
        survivors = [c for c in alive if c.matches(got, expected, rtol=rtol, atol=atol)]
        if not survivors:
            return self._forms_failure(ctx, args, got, expected, alive, names, where, rtol, atol)
        if grad_wrt:
            reference = getattr(ctx.reference, self.spec.reference)
            grads_by_shape: dict[tuple[int, ...], Any] = {}
            kept = []
            for c in survivors:
                shape = tuple(np.shape(got))
                if shape == expected.shape:
                    w, grads = weights, reply.value.get("grads")
                else:  # a reduced output: project its gradient with weights of its own shape
                    if shape not in grads_by_shape:
                        w_own = [np.asarray(rng.standard_normal(shape), dtype=np.float64)]
                        again = ctx.request(self.spec, {"op": "call", "target": self.spec.target, "args": args,
                                                        "grad_wrt": grad_wrt, "grad_weights": w_own}
                                            | ({"op": "call_select", "select": select} if select is not None else {}))
                        if not again.ok:
                            return reply_failure(again, f"Calling {where}")
                        grads_by_shape[shape] = (w_own, again.value.get("grads"))
                    w, grads = grads_by_shape[shape]
                if isinstance(grads, str):
                    return Outcome.fail("incorrect", f"{where}: {grads}")
                _, ref_grads = _reference_call(reference, args, grad_wrt, w, select, reduction=c.reduction)
                if c.grads_match(grads, ref_grads, rtol=rtol * 10, atol=atol * 10):
                    kept.append(c)
            if not kept:
                return self._gradient_failure(ctx, survivors[0], args, got, expected, reply, weights, grads_by_shape,
                                              grad_wrt, select, names, where, rtol, atol)
            survivors = kept
        alive[:] = survivors
        return None

    def _gradient_failure(self, ctx: Context, c: Candidate, args: list[Any], got: Any, expected: np.ndarray,
                          reply: Reply, weights: list[np.ndarray] | None, grads_by_shape: dict[Any, Any],
                          grad_wrt: list[int], select: list[int] | None, names: list[str] | None, where: str,
                          rtol: float, atol: float) -> Outcome:
        """Values fit a form but gradients do not: say which, without claiming a form the gradients refute."""
        reference = getattr(ctx.reference, self.spec.reference)
        shape = tuple(np.shape(got))
        w, grads = (weights, reply.value.get("grads")) if shape == expected.shape else grads_by_shape[shape]
        _, ref_grads = _reference_call(reference, args, grad_wrt, w, select, reduction=c.reduction)
        factor = c.factor or 1.0
        problem = next((pr for i, g_ref, g in zip(grad_wrt, ref_grads, grads or [])
                        if (pr := compare_arrays(g, np.asarray(g_ref) * factor, rtol=rtol * 10, atol=atol * 10 * factor,
                                                 what=f"{where}: the gradient with respect to argument {i + 1}"))),
                       f"{where}: the gradients do not match")
        if c.is_exact():
            return Outcome.fail("incorrect", problem + " (values are right, so the function is not differentiable "
                                "the same way: check for detach(), numpy, or in-place ops)")
        value_problem = self._compare_outputs(got, expected, names, where, rtol, atol)
        sentence = value_problem[1] if value_problem else problem
        what = describe_reduction(c.reduction) if c.reduction != "none" else "the values"
        return Outcome.fail("incorrect", f"{sentence}. Here {what} are {factor:.6g} times the expected ones, but the "
                            "gradient is not scaled alike, so this is not the same function up to a constant factor.")

    def _forms_failure(self, ctx: Context, args: list[Any], got: Any, expected: np.ndarray, alive: list[Candidate],
                       names: list[str] | None, where: str, rtol: float, atol: float) -> Outcome:
        """No accepted form fits: the plain comparison's sentence, with what the accepted forms look like."""
        forms = AcceptedForms.from_params(self.params)
        fitted = [c for c in alive if c.has_factor()]
        if fitted:  # a factor was read from an earlier case and this case breaks it
            c = fitted[0]
            target = reduce(expected.astype(np.float64), c.reduction)
            if isinstance(got, np.ndarray) and got.shape == target.shape and np.all(target != 0):
                ratios = got.astype(np.float64) / target
                return Outcome.fail("incorrect", f"{where}: the values are not a constant multiple of the expected "
                                    f"ones: the earlier case(s) gave a factor of {c.factor:.6g}, this one gives "
                                    f"ratios from {ratios.min():.6g} to {ratios.max():.6g}.")
        problem = self._compare_outputs(got, expected, names, where, rtol, atol) or ("incorrect", f"{where}: wrong value")
        finding, sentence = problem
        shapes = {reduce(expected, r).shape for r in ("none", *forms.reductions)}
        if forms.reductions and (not isinstance(got, np.ndarray) or got.shape not in shapes):
            what = names[0] if names and len(names) == 1 else "value"
            options = " or ".join(f"{describe_reduction(r)} (shape {shape_str(reduce(expected, r).shape)})"
                                  for r in forms.reductions)
            sentence += f". Return one {what} per sample (shape {shape_str(expected.shape)}), or {options}"
        outcome = Outcome.fail(finding, sentence)
        if self.params["nan_hint"] and _has_nan(got):
            outcome.feedback.append(str(self.params["nan_hint"]))
        return self._explain(ctx, args, got, outcome)

    # --- NumPy instead of torch ------------------------------------------------------------------

    def _numpy_request(self, ctx: Context, args: list[Any], select: list[int] | None) -> Reply:
        request: dict[str, Any] = {"op": "call_numpy", "target": self.spec.target, "args": args}
        if select is not None:
            request["select"] = select
        return ctx.request(self.spec, request)

    def _numpy_call(self, ctx: Context, args: list[Any], select: list[int] | None, torch_reply: Reply,
                    where: str) -> tuple[Reply, str | None]:
        """After a failure on tensors: the same call on float64 NumPy arrays, and the note saying so."""
        reply = self._numpy_request(ctx, args, select)
        if not reply.ok:
            also = Reply(ok=False, kind=torch_reply.kind, where=reply.where,
                         message=f"{torch_reply.describe()}; called again with NumPy float64 arrays it failed too: "
                                 f"{reply.message}")
            return also, None
        return reply, (f"Your {self.spec.target} fails on torch tensors ({torch_reply.describe()}) but works on "
                       "NumPy float64 arrays; it was graded on NumPy arrays, which this question accepts.")

    @staticmethod
    def _with_note(outcome: Outcome, note: str | None) -> Outcome:
        if note:
            outcome.feedback.insert(0, note)
        return outcome

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
            select = [int(i) for i in self.params["select"]] if self.params["select"] is not None else None
            wrong, _ = _reference_call(getattr(ctx.reference, mistake.reference), args, [], None, select)
            if self._compare_outputs(got, wrong, None, "", 1e-5, 1e-6) is None:
                return Outcome.from_mistake(mistake, *outcome.feedback)
        return outcome

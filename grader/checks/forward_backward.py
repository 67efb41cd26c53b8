"""Kind ``forward_backward``: the student's backward pass, fed the student's own forward cache.

``out, cache = <params.forward>(*args)`` then ``grads = <target>(dout, cache)``
run in the sandbox (the cache never leaves it: its layout is the student's
choice). The grads are compared with autograd through the reference forward
pass, here, in float64: the gradient of ``sum(dout * out)`` with respect to
the arguments ``params.grad_wrt``, in that order (for batch norm: z, gamma,
beta -> dz, dgamma, dbeta).

With ``array_api: [torch, numpy]`` a forward/backward pair that raises on
tensors (a CS231n-style NumPy implementation) is run again in the sandbox
with float64 NumPy arrays; its output and gradients are compared by value
the same way, and the feedback says it was graded on arrays.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grader.checks import register
from grader.checks.options import (ARG_SPECS, CASES, INDICES, NAME, NONNEG, REQUIRED, Option,
                                   array_api_option)
from grader.checks.base import (COMMON_FINDINGS, Check, Context, Outcome, case_label, compare_arrays, make_args,
                                reply_failure)
from grader.checks.forms import AcceptedForms
from grader.sandbox.client import Reply

FINDINGS = ("forward_incorrect",)


def autograd_reference(fn: Any, args: list[Any], grad_wrt: list[int], dout: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output of the reference forward and the gradients of sum(dout * out) w.r.t. args[grad_wrt]."""
    targs = [torch.from_numpy(a.astype(np.float64)) if isinstance(a, np.ndarray) else a for a in args]
    for i in grad_wrt:
        targs[i] = targs[i].requires_grad_(True)
    result = fn(*targs)
    out = result[0] if isinstance(result, (tuple, list)) else result
    grads = torch.autograd.grad((out * torch.from_numpy(dout)).sum(), [targs[i] for i in grad_wrt])
    return out.detach().numpy(), [g.numpy() for g in grads]


@register
class ForwardBackwardCheck(Check):
    kind = "forward_backward"
    findings = COMMON_FINDINGS + FINDINGS
    array_apis = ("torch", "numpy")
    options = (
        Option("forward", NAME, "the student's forward function, called first: out, cache = forward(*args)", REQUIRED),
        Option("args", ARG_SPECS, "the forward's arguments: {tensor: [dims], dist, scale, dtype}, {value: v} or {var: name}",
               REQUIRED),
        Option("grad_wrt", INDICES, "positions of the forward's arguments whose gradients the target returns", REQUIRED),
        Option("outputs", {"type": "array", "items": {"type": "string"}}, "names of the gradients, for feedback"),
        Option("cases", CASES, "the case variables the args refer to, one mapping per case", [{}]),
        Option("rtol", NONNEG, "relative tolerance on the forward output and the gradients", 1e-6),
        Option("atol", NONNEG, "absolute tolerance on the forward output and the gradients", 1e-9),
        array_api_option(),
    )

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        rng = ctx.rng(self.spec)
        rtol, atol = float(p["rtol"]), float(p["atol"])
        grad_wrt = [int(i) for i in p["grad_wrt"]]
        names = p["outputs"] or [f"gradient {k + 1}" for k in range(len(grad_wrt))]
        reference = getattr(ctx.reference, self.spec.reference)
        cases = p["cases"]
        forward_wrong: str | None = None
        forms = AcceptedForms.from_params(p)
        numpy_note: str | None = None  # set once the pair is graded on NumPy arrays
        for case in cases:
            args = make_args(p["args"], case, rng)
            with torch.no_grad():  # the output's shape, for the upstream gradient dout
                result = reference(*[torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args])
            out_shape = tuple((result[0] if isinstance(result, (tuple, list)) else result).shape)
            dout = rng.standard_normal(out_shape)  # float64
            ref_out, ref_grads = autograd_reference(reference, args, grad_wrt, dout)
            where = f"{self.spec.target}(dout, cache) after {p['forward']}(...) with {case_label(case)}"
            request = {"op": "forward_backward", "forward": p["forward"], "target": self.spec.target,
                       "args": args, "dout": dout}
            if numpy_note is not None:
                request["array_api"] = "numpy"
            reply = ctx.request(self.spec, request)
            if not reply.ok and reply.kind == "student" and numpy_note is None and forms.numpy_fallback:
                again = ctx.request(self.spec, request | {"array_api": "numpy"})
                if not again.ok:
                    return reply_failure(Reply(ok=False, kind=reply.kind, where=again.where, message=(
                        f"{reply.describe()}; run again with NumPy float64 arrays it failed too: {again.message}")),
                        f"Running {where}")
                numpy_note = (f"Your {p['forward']} and {self.spec.target} fail on torch tensors ({reply.describe()}) "
                              "but work on NumPy float64 arrays; they were graded on NumPy arrays, which this "
                              "question accepts.")
                reply = again
            if not reply.ok:
                return reply_failure(reply, f"Running {where}")
            out, grads = reply.value.get("out"), reply.value.get("grads")
            if forward_wrong is None and compare_arrays(out, ref_out, rtol=1e-5, atol=1e-7, what="out") is not None:
                forward_wrong = (f"Note: your {p['forward']} output is not correct either (see its own check); the "
                                 "backward pass was run with its cache.")
            if not isinstance(grads, list) or len(grads) != len(grad_wrt):
                n = len(grads) if isinstance(grads, list) else 1
                return Outcome.fail("wrong_type", f"{where} should return {len(grad_wrt)} values ({', '.join(names)}), got {n}.")
            for name, g, g_ref in zip(names, grads, ref_grads):
                problem = compare_arrays(g, g_ref, rtol=rtol, atol=atol, what=f"{where}: {name}")
                if problem:
                    finding = "wrong_shape" if "has shape" in problem else "incorrect"
                    return Outcome(passed=False, findings=[finding],
                                   feedback=([numpy_note] if numpy_note else [])
                                   + [problem + " (compared with autograd of the forward pass in float64)"]
                                   + ([forward_wrong] if forward_wrong else []))
        return Outcome(passed=True, feedback=([numpy_note] if numpy_note else [])
                       + [f"Gradients equal autograd's on {len(cases)} case(s) "
                          f"(float64, relative tolerance {rtol:g}), using your own cache."])

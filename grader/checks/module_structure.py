"""Kind ``module_structure``: instantiate the student's nn.Module; check parameter count and output shape.

The count is of trainable parameters (``requires_grad``), as in the
assignments; the expected count and shape come from the reference class,
instantiated here with the same arguments. ``params.inits`` (a list of
keyword-argument dicts) checks several configurations, e.g. ``build_mlp``
for several (hidden_units, n_layers); ``params.init`` is one.
"""
from __future__ import annotations

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, reply_failure, shape_str
from grader.checks.judged import Judged, judge_model, with_method

FINDINGS = ("wrong_param_count", "wrong_output_shape", "not_log_probabilities", "refused_graph")


@register
class ModuleStructureCheck(Check):
    kind = "module_structure"
    findings = Check.findings + FINDINGS

    def run(self, ctx: Context) -> Outcome:
        inits = self.spec.params.get("inits") or [self.spec.params.get("init", {})]
        passed: list[str] = []
        self._judged = []
        for init in inits:
            outcome = self._run_one(ctx, init)
            if not outcome.passed:
                return self._method(outcome)
            passed += outcome.feedback
        return self._method(Outcome(passed=True, feedback=passed))

    def _method(self, outcome: Outcome) -> Outcome:
        """Say how the measurements were made: by the judge on the exported graph, or in the sandbox."""
        sandboxed = [j for j in self._judged if j.method != "judge"]
        return with_method(outcome, sandboxed[0] if sandboxed else self._judged[0]) if self._judged else outcome

    def _measure(self, ctx: Context, init: dict, x: np.ndarray | None):
        """The module's trainable count and output: from the judge when the model exports, else the sandbox."""
        request = {"op": "module_info", "target": self.spec.target, "init": init, "input": x}
        if x is None:
            self._judged.append(Judged("sandbox", note="the rubric gives no input to export the model on"))
            return None, ctx.request(self.spec, request)
        judged = judge_model(ctx, self.spec, {"job": "module_info", "input": x}, target=self.spec.target or "",
                             init=init, input_shape=list(x.shape))
        self._judged.append(judged)
        if judged.method == "refused":
            return judged.outcome, None
        return None, judged.reply if judged.method == "judge" else ctx.request(self.spec, request)

    def _run_one(self, ctx: Context, init: dict) -> Outcome:
        p = self.spec.params
        ref_model = getattr(ctx.reference, self.spec.reference)(**init)
        expected_params = sum(t.numel() for t in ref_model.parameters() if t.requires_grad)
        x = None
        if "input" in p:
            x = ctx.rng(self.spec).standard_normal(p["input"]).astype(np.float32)
        refused, reply = self._measure(ctx, init, x)
        if refused is not None:
            return refused
        call = f"{self.spec.target}({', '.join(f'{k}={v!r}' for k, v in init.items())})"
        if not reply.ok:
            return reply_failure(reply, f"Building {call}" + (f" and running it on an input of shape {shape_str(x.shape)}" if x is not None else ""))
        info = reply.value
        findings, feedback = [], []
        got = info.get("trainable")
        if type(got) is not int:
            return Outcome.fail("wrong_type", "could not count the module's parameters")
        if got != expected_params:
            findings.append("wrong_param_count")
            feedback.append(f"{call} has {got:,} trainable parameters; expected {expected_params:,} "
                            f"(difference {got - expected_params:+,}).")
        if x is not None:
            with torch.no_grad():
                ref_model.eval()
                expected_shape = tuple(ref_model(torch.from_numpy(x)).shape)
            out = info.get("output")
            if not isinstance(out, np.ndarray):
                findings.append("wrong_output_shape")
                feedback.append(f"{call} returned {type(out).__name__} for an input of shape {shape_str(x.shape)}; a tensor was expected.")
            elif out.shape != expected_shape and not (p.get("allow_squeeze") and out.squeeze().shape == tuple(s for s in expected_shape if s != 1)):
                findings.append("wrong_output_shape")
                feedback.append(f"{call} maps an input of shape {shape_str(x.shape)} to {shape_str(out.shape)}; expected {shape_str(expected_shape)}.")
            elif p.get("log_probabilities"):
                lse = np.log(np.exp(out.astype(np.float64)).sum(axis=1))
                if not np.allclose(lse, 0.0, atol=1e-4):
                    findings.append("not_log_probabilities")
                    feedback.append(f"the output rows should be log-probabilities (logsumexp = 0, e.g. from log_softmax); "
                                    f"got logsumexp {float(lse[0]):.4g} for the first row.")
        if findings:
            return Outcome(passed=False, feedback=feedback, findings=findings)
        done = [f"{expected_params:,} trainable parameters"] + ([f"output shape {shape_str(expected_shape)}"] if x is not None else [])
        return Outcome(passed=True, feedback=[f"{call}: " + ", ".join(done) + "."])

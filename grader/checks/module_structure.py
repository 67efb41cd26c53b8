"""Kind ``module_structure``: instantiate the student's nn.Module; check parameter count, input layout and output.

The count is of trainable parameters (``requires_grad``), as in the
assignments; the expected count and shape come from the reference class,
instantiated here with the same arguments. ``params.inits`` (a list of
keyword-argument dicts) checks several configurations, e.g. ``build_mlp``
for several (hidden_units, n_layers); ``params.init`` is one.

Each mistake is its own finding, and every finding that applies is reported
(for every configuration), so a rubric can deduct per finding instead of
all-or-nothing:

- ``wrong_param_count``: a different number of trainable parameters;
- ``wrong_output_shape``: not a tensor of the reference's output shape;
- ``flat_input``: the module fails on the image input ``params.input``
  (e.g. (N, 1, 28, 28)) but works on the same images flattened to (N, 784):
  the handout's loader gives images, so the model should flatten them itself.
  The rest is then judged on the flattened run;
- with ``params.log_probabilities: true``, ``returns_logits`` (rows are
  unnormalised scores, e.g. for ``CrossEntropyLoss``) or
  ``returns_probabilities`` (rows are softmax probabilities): the handout
  asks for log-probabilities (logsumexp of every row = 0).

A finding without a rubric item costs all the check's points (see
`grader.checks.base.finish`); give each a rubric item ("-3 pts Returns
logits, not log-probabilities") to deduct only that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, reply_failure, shape_str
from grader.rubric.model import CheckSpec
from grader.sandbox.client import Reply
from grader.checks.judged import Judged, judge_model, with_method
from grader.checks.options import BOOL, INIT, SHAPE, Option

FINDINGS = ("wrong_param_count", "wrong_output_shape", "flat_input", "returns_logits", "returns_probabilities",
            "refused_graph")
LSE_ATOL = 1e-4  # |logsumexp| of a row of float32 log-probabilities stays far below this


@dataclass
class Findings:
    """Every finding of one check, in order and without repeats, with one sentence each."""

    findings: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)

    def add(self, finding: str, sentence: str) -> None:
        if finding not in self.findings:
            self.findings.append(finding)
        self.feedback.append(sentence)


def output_kind(out: np.ndarray) -> tuple[str, float]:
    """("log_probabilities" | "probabilities" | "logits", logsumexp of the first row) of (N, C) outputs."""
    x = out.astype(np.float64)
    top = x.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]  # stable logsumexp per row
    if np.all(np.isfinite(lse)) and np.allclose(lse, 0.0, atol=LSE_ATOL):
        return "log_probabilities", float(lse[0])
    if np.all(x >= 0) and np.allclose(x.sum(axis=1), 1.0, atol=LSE_ATOL):
        return "probabilities", float(lse[0])
    return "logits", float(lse[0])


def judge_output(call: str, out: Any, expected_shape: tuple[int, ...], x_shape: tuple[int, ...], p: Mapping[str, Any],
                 found: Findings) -> None:
    """Findings about the output of ``call`` on an input of shape ``x_shape`` (the module's own input layout)."""
    if not isinstance(out, np.ndarray):
        found.add("wrong_output_shape", f"{call} returned {type(out).__name__} for an input of shape "
                                        f"{shape_str(x_shape)}; a tensor was expected.")
        return
    squeezed = tuple(s for s in expected_shape if s != 1)
    if out.shape != expected_shape and not (p["allow_squeeze"] and out.squeeze().shape == squeezed):
        found.add("wrong_output_shape", f"{call} maps an input of shape {shape_str(x_shape)} to {shape_str(out.shape)}; "
                                        f"expected {shape_str(expected_shape)}.")
        return
    if not p["log_probabilities"] or out.ndim != 2 or out.dtype.kind != "f":
        return
    kind, lse = output_kind(out)
    if kind == "logits":
        found.add("returns_logits", f"{call} returns raw scores (logits): the logsumexp of its first output row is "
                                    f"{lse:.4g}, not 0. The handout asks for log-probabilities: end forward with "
                                    "F.log_softmax(x, dim=1) (nn.CrossEntropyLoss takes logits; F.nll_loss, used "
                                    "with this model, takes log-probabilities).")
    elif kind == "probabilities":
        found.add("returns_probabilities", f"{call} returns probabilities (each row sums to 1, e.g. from softmax); the "
                                           "handout asks for log-probabilities: use F.log_softmax(x, dim=1) instead "
                                           "of softmax.")


@register
class ModuleStructureCheck(Check):
    kind = "module_structure"
    findings = Check.findings + FINDINGS
    options = (
        Option("input", SHAPE, "shape of a random input to run the module on (output shape, input layout)"),
        Option("init", INIT, "keyword arguments the target and the reference are built with", {}),
        Option("inits", {"type": "array", "items": INIT, "minItems": 1},
               "several constructor argument sets, each checked (instead of init)"),
        Option("allow_squeeze", BOOL, "accept the expected output shape with its size-1 dimensions squeezed", False),
        Option("log_probabilities", BOOL, "the output rows must be log-probabilities (reports returns_logits / "
               "returns_probabilities)", False),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        if cls.params_of(spec)["log_probabilities"] and "input" not in spec.params:
            # Without an input nothing is run, and the output could never be judged.
            problems.append(("params.log_probabilities", "log_probabilities needs params.input to run the module on"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        inits = self.params["inits"] or [self.params["init"]]
        found = Findings()
        passed: list[str] = []
        self._judged = []
        for init in inits:
            failed = self._run_one(ctx, init, found, passed)
            if failed is not None:  # the module could not be built or run: nothing else to judge
                return self._method(failed)
        if found.findings:
            return self._method(Outcome(passed=False, feedback=found.feedback, findings=found.findings))
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

    def _run_one(self, ctx: Context, init: dict, found: Findings, passed: list[str]) -> Outcome | None:
        p = self.params
        ref_model = getattr(ctx.reference, self.spec.reference)(**init)
        expected_params = sum(t.numel() for t in ref_model.parameters() if t.requires_grad)
        x = None
        if p["input"] is not None:
            x = ctx.rng(self.spec).standard_normal(p["input"]).astype(np.float32)
        refused, reply = self._measure(ctx, init, x)
        if refused is not None:
            return refused
        call = f"{self.spec.target}({', '.join(f'{k}={v!r}' for k, v in init.items())})"
        used = x
        if not reply.ok and reply.kind == "student" and x is not None and x.ndim >= 3:
            # A model written for flattened input (N, 784) fails on images (N, 1, 28, 28): a recognised form.
            flat = x.reshape(x.shape[0], -1)
            _, retry = self._measure(ctx, init, flat)
            if retry is not None and retry.ok:
                found.add("flat_input", f"{call} fails on images of shape {shape_str(x.shape)} ({reply.describe()}) but "
                                        f"works on the same images flattened to {shape_str(flat.shape)}. The loader gives "
                                        "images: flatten them inside forward, e.g. x = x.view(x.size(0), -1) or "
                                        "nn.Flatten().")
                reply, used = retry, flat
        if not reply.ok:
            return reply_failure(reply, f"Building {call}" + (f" and running it on an input of shape {shape_str(x.shape)}" if x is not None else ""))
        info = reply.value
        got = info.get("trainable") if isinstance(info, dict) else None
        if type(got) is not int:
            return Outcome.fail("wrong_type", "could not count the module's parameters")
        if got != expected_params:
            found.add("wrong_param_count", f"{call} has {got:,} trainable parameters; expected {expected_params:,} "
                                           f"(difference {got - expected_params:+,}).")
        expected_shape: tuple[int, ...] = ()
        if x is not None:
            with torch.no_grad():
                ref_model.eval()
                expected_shape = tuple(ref_model(torch.from_numpy(x)).shape)
            judge_output(call, info.get("output"), expected_shape, tuple(used.shape), p, found)
        done = [f"{expected_params:,} trainable parameters"] + ([f"output shape {shape_str(expected_shape)}"] if x is not None else [])
        passed.append(f"{call}: " + ", ".join(done) + ".")
        return None

"""Kind ``train_eval_modes``: dropout is active in ``train()`` and off in ``eval()``.

The sandbox builds the student's module (``target(**init)`` for each of
``params.inits``), runs it twice in train mode and twice in eval mode on the
same input. With a dropout probability above 0, the two train-mode outputs
must differ and the two eval-mode outputs must be identical.

How often a correct module fails: the two train passes agree only if both
dropout masks give the same output; with hidden width h and drop
probability p >= 0.2 the first layer alone has h independent units, each
matching with probability at most 1 - 2p(1-p) <= 0.68, so at h = 64 the
chance is below 0.68**64 ~ 2e-11.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from grader.checks import register
from grader.checks.options import INIT, NAME, REQUIRED, SHAPE, Option
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome, reply_failure, shape_str
from grader.rubric.model import CheckSpec

FINDINGS = ("dropout_off_in_train", "random_in_eval")


def _call(target: str, init: dict[str, Any]) -> str:
    return f"{target}({', '.join(f'{k}={v!r}' for k, v in init.items())})"


@register
class TrainEvalModesCheck(Check):
    kind = "train_eval_modes"
    findings = COMMON_FINDINGS + FINDINGS
    options = (
        Option("inits", {"type": "array", "items": INIT, "minItems": 1},
               "constructor argument sets; one at least with a dropout probability above 0", REQUIRED),
        Option("input", SHAPE, "shape of the random input, e.g. [4, 1, 28, 28]", REQUIRED),
        Option("dropout_arg", NAME, "the constructor argument that holds the dropout probability", "dropout"),
    )
    needs_reference = False

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        inits, arg = spec.params.get("inits"), cls.params_of(spec)["dropout_arg"]
        if "inits" not in spec.params:
            return problems
        if not isinstance(inits, list) or not inits or not all(isinstance(i, dict) for i in inits):
            problems.append(("params.inits", "inits is a non-empty list of keyword-argument mappings"))
        elif not any(isinstance(i.get(arg), (int, float)) and i.get(arg, 0) > 0 for i in inits):
            # Without a dropout probability above 0, "dropout is active in train()" is never tested.
            problems.append(("params.inits", f"at least one configuration needs {arg} > 0 (params.dropout_arg names "
                                             "the argument), or dropout in train() mode is never tested"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        x = ctx.rng(self.spec).standard_normal(p["input"]).astype(np.float32)
        findings: list[str] = []
        feedback: list[str] = []
        for init in p["inits"]:
            call = _call(self.spec.target or "", init)
            reply = ctx.request(self.spec, {"op": "train_eval_outputs", "target": self.spec.target, "init": init, "input": x})
            if not reply.ok:
                return reply_failure(reply, f"Building {call} and running it in train and eval mode")
            outs = reply.value
            arrays = outs.get("train", []) + outs.get("eval", [])
            if len(arrays) != 4 or not all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays):
                return Outcome.fail("wrong_type", f"{call} should return a tensor of logits for an input of shape {shape_str(x.shape)}.")
            train1, train2, eval1, eval2 = arrays
            dropout = float(init.get(p["dropout_arg"], 0.0))
            if dropout > 0 and np.array_equal(train1, train2):
                findings.append("dropout_off_in_train")
                feedback.append(f"{call}: two forward passes in train() mode gave identical outputs, so dropout "
                                f"(p={dropout:g}) is not active in training. Use nn.Dropout layers, which follow "
                                "model.train() and model.eval().")
            if not np.array_equal(eval1, eval2):
                findings.append("random_in_eval")
                feedback.append(f"{call}: two forward passes in eval() mode gave different outputs, so dropout is "
                                "still active at evaluation. nn.Dropout turns itself off in eval(); F.dropout(x, p) does "
                                "not unless you pass training=self.training.")
        if findings:
            return Outcome(passed=False, findings=sorted(set(findings)), feedback=feedback)
        return Outcome(passed=True, feedback=[f"Dropout is active in train() and off in eval() for {len(p['inits'])} configuration(s)."])

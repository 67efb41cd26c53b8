"""Kind ``connectivity``: which output maps each input map reaches, found by perturbing one input map at a time.

This tests a layer's wiring functionally (LeNet's sparse C3), whatever the
implementation: masks, groups, a loop of small convolutions. Both sides use
the same probe (`grader.probes.channel_connectivity`).
"""
from __future__ import annotations

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, reply_failure
from grader.checks.judged import judge_model, with_method
from grader.checks.options import DIMS, INIT, REQUIRED, Option
from grader.probes import channel_connectivity


def _fmt(maps: list[int]) -> str:
    return "{" + ", ".join(map(str, maps)) + "}"


@register
class ConnectivityCheck(Check):
    kind = "connectivity"
    findings = Check.findings + ("wrong_connections", "refused_graph")
    options = (
        Option("input", DIMS, "shape of the random input the layer is probed with, e.g. [2, 6, 14, 14]", REQUIRED),
        Option("init", INIT, "keyword arguments the target (and the reference) are built with", {}),
    )

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        x = ctx.rng(self.spec).standard_normal(p["input"]).astype(np.float32)
        judged = judge_model(ctx, self.spec, {"job": "connectivity", "input": x}, target=self.spec.target or "",
                             init=p["init"], input_shape=list(x.shape))
        if judged.method == "refused" and judged.outcome is not None:
            return judged.outcome
        return with_method(self._compare(ctx, x, judged.reply if judged.method == "judge" else None), judged)

    def _compare(self, ctx: Context, x: np.ndarray, reply) -> Outcome:
        init = self.params["init"]
        ref = channel_connectivity(getattr(ctx.reference, self.spec.reference)(**init), torch.from_numpy(x))
        if reply is None:  # not exported: measured in the sandbox, as before the judge
            reply = ctx.request(self.spec, {"op": "connectivity", "target": self.spec.target, "init": init, "input": x})
        if not reply.ok:
            return reply_failure(reply, f"Running {self.spec.target} on an input of shape {tuple(x.shape)}")
        got = reply.value.get("matrix")
        expected = np.array(ref, dtype=bool)  # (C_in, C_out)
        try:
            actual = np.array(got, dtype=bool)
        except (TypeError, ValueError):
            actual = None
        if actual is None or actual.shape != expected.shape:
            shape = None if actual is None else actual.shape
            mixed = self._mixes_batch(reply.value.get("output_shape"), x)
            if mixed:
                return Outcome.fail("wrong_shape", mixed)
            return Outcome.fail("wrong_shape", f"{self.spec.target} should map {expected.shape[0]} input maps to "
                                f"{expected.shape[1]} output maps; its connection table has shape {shape}")
        if (actual == expected).all():
            return Outcome(passed=True, feedback=[f"All {expected.shape[1]} output maps see exactly the right input maps."])
        wrong = [j for j in range(expected.shape[1]) if (actual[:, j] != expected[:, j]).any()]
        if actual.all():
            lead = (f"every output map of {self.spec.target} sees all {expected.shape[0]} input maps: that is a full "
                    "convolution, not the sparse connection table.")
        else:
            lead = f"{len(wrong)} of {expected.shape[1]} output maps are connected to the wrong input maps."
        details = [f"output map {j} sees {_fmt(list(np.flatnonzero(actual[:, j])))}, "
                   f"expected {_fmt(list(np.flatnonzero(expected[:, j])))}" for j in wrong[:4]]
        more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
        return Outcome.fail("wrong_connections", lead + " E.g. " + "; ".join(details) + more + ".")

    def _mixes_batch(self, output_shape: object, x: np.ndarray) -> str | None:
        """A sentence when the output's batch axis is not the input's: maps stacked along dim 0 mix the samples."""
        if not (isinstance(output_shape, list) and 2 <= len(output_shape) <= 8
                and all(type(s) is int and 0 <= s < 1 << 40 for s in output_shape)):
            return None
        n = int(x.shape[0])
        if output_shape[0] == n:
            return None
        shown = "(" + ", ".join(map(str, output_shape)) + ")"
        return (f"{self.spec.target} maps a batch of {n} inputs of shape {tuple(x.shape)} to an output of shape "
                f"{shown}: its first axis has {output_shape[0]} entries instead of {n}, so it mixes the samples "
                "of the batch (e.g. torch.cat of the output maps along dim 0). Keep the batch axis first and "
                "concatenate the output maps along the channel axis: torch.cat(maps, dim=1).")

"""Kind ``dropout``: a dropout function judged statistically, since its masks are random.

For each keep probability p of ``params.keep_probs`` the sandbox calls
``target(x, p, True)`` on N = ``params.size`` positive inputs (x in [0.5, 1.5])
and the parent checks:

* structure (deterministic): every output is 0 or x/p (inverted dropout);
  kept units left unscaled is the non-inverted mistake;
* the keep rate K/N is within t_rate of p;
* the mean of y is within t_mean of the mean of x (E[y] = x);
* a second call draws a fresh mask;
* ``target(x, p, False)`` is x itself (evaluation is the identity);
* two calls with generators seeded alike give the same output (the
  ``generator`` argument is used).

Probability that a correct implementation fails (stated, and bounded):
K/N is a mean of N independent indicators in [0, 1], and the mean of y one of
N independent terms y_i in [0, x_i/p]; Hoeffding's inequality gives
P(|mean - E| >= t) <= 2 exp(-2 N^2 t^2 / sum_i (b_i - a_i)^2). Each
tolerance is set so that this bound equals delta / m, where m is the number of
such tests (two per p < 1) and delta = ``params.delta`` (default 1e-6), so by
the union bound all of them pass together with probability at least
1 - delta. The fresh-mask test fails for a correct implementation only if two
independent masks coincide, with probability (p^2 + (1-p)^2)^N <= 0.68^N for
p in [0.2, 0.8], below 1e-16000 at N = 100,000. The structural, evaluation
and generator tests are deterministic. So a correct implementation fails
this check with probability at most delta (+ 1e-16000), i.e. at most 1e-6.

Known mistakes (``reference`` functions, e.g. ``dropout_forward_non_inverted``)
are recognised by behaviour, not by values (the masks are random): the scale
of kept units in training and the scale applied in evaluation.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from grader.checks import register
from grader.checks.options import REQUIRED, SHAPE, Option
from grader.checks.base import COMMON_FINDINGS, Check, Context, Outcome, reply_failure, shape_str
from grader.protocol import generator_arg
from grader.rubric.model import CheckSpec

FINDINGS = ("not_inverted", "wrong_scale", "wrong_rate", "biased_mean", "same_mask", "eval_not_identity", "ignores_generator")
DEFAULT_DELTA = 1e-6


def hoeffding_tolerance(range_sq_sum: float, n: int, delta: float) -> float:
    """t with 2 exp(-2 n^2 t^2 / range_sq_sum) = delta: deviation of a mean of n bounded terms."""
    return math.sqrt(range_sq_sum * math.log(2.0 / delta) / (2.0 * n * n))


def scale_of(y: np.ndarray, x: np.ndarray, rtol: float = 1e-4) -> float | None:
    """The common ratio y/x over the nonzero outputs, or None when there is no single one."""
    kept = y != 0
    if not kept.any():
        return None
    ratios = y[kept].astype(np.float64) / x[kept].astype(np.float64)
    s = float(np.median(ratios))
    return s if np.allclose(ratios, s, rtol=rtol, atol=0.0) else None


def behaviour(train_scale: float | None, eval_scale: float | None, p: float) -> tuple[str, str]:
    """A coarse signature: how kept units are scaled in training and how evaluation scales x."""
    def name(s: float | None, options: dict[str, float]) -> str:
        if s is None:
            return "other"
        for label, v in options.items():
            if math.isclose(s, v, rel_tol=1e-4):
                return label
        return "other"
    return name(train_scale, {"1/p": 1 / p, "1": 1.0}), name(eval_scale, {"1": 1.0, "p": p})


def _local(fn: Any, x: np.ndarray, p: float, train: bool) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    return fn(torch.from_numpy(x.copy()), p, train, gen).numpy()


@register
class DropoutCheck(Check):
    kind = "dropout"
    findings = COMMON_FINDINGS + FINDINGS
    options = (
        Option("keep_probs", {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                              "minItems": 1}, "keep probabilities p the target is called with, one below 1 at least",
               REQUIRED),
        Option("shape", SHAPE, "shape of the positive input x (its size is the sample size of the tests)", [500, 200]),
        Option("delta", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
               "probability bound of failing a correct implementation, over all tests", DEFAULT_DELTA),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec)
        probs = spec.params.get("keep_probs")
        if "keep_probs" not in spec.params:
            return problems
        if not isinstance(probs, list) or not probs or not all(
                isinstance(k, (int, float)) and not isinstance(k, bool) and 0 < k <= 1 for k in probs):
            problems.append(("params.keep_probs", "keep_probs is a list of keep probabilities in (0, 1]"))
        elif not any(k < 1 for k in probs):
            # With keep_prob = 1 only, the rate, the mean, fresh masks and the generator are never tested.
            problems.append(("params.keep_probs", "at least one keep probability must be below 1, or the random "
                                                  "behaviour of dropout is never tested"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        p_ = self.params
        rng = ctx.rng(self.spec)
        shape = tuple(p_["shape"])  # N = 100,000 units
        n = int(np.prod(shape))
        keep_probs = [float(k) for k in p_["keep_probs"]]
        delta = float(p_["delta"])
        m = 2 * sum(1 for k in keep_probs if k < 1)
        findings: list[str] = []
        feedback: list[str] = []
        signature: tuple[str, str] | None = None
        target = self.spec.target

        def call(x: np.ndarray, p: float, train: bool, *extra: Any) -> tuple[np.ndarray | None, Outcome | None]:
            reply = ctx.request(self.spec, {"op": "call", "target": target, "args": [x, p, train, *extra]})
            if not reply.ok:
                return None, reply_failure(reply, f"Calling {target}(x, {p:g}, {train})" + (", generator)" if extra else ""))
            y = reply.value["value"]
            if not isinstance(y, np.ndarray) or y.dtype.kind not in "biuf" or y.shape != x.shape:
                got = shape_str(y.shape) if isinstance(y, np.ndarray) else type(y).__name__
                return None, Outcome.fail("wrong_shape", f"{target}(x, {p:g}, {train}) should return a tensor shaped like x "
                                          f"{shape_str(x.shape)}; got {got}.")
            return y.astype(np.float64), None

        for p in keep_probs:
            x = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            x64 = x.astype(np.float64)
            y, failed = call(x, p, True)
            if failed:
                return failed
            y2, failed = call(x, p, True)
            if failed:
                return failed
            y_eval, failed = call(x, p, False)
            if failed:
                return failed
            train_scale = scale_of(y, x64)
            eval_scale = scale_of(y_eval, x64) if np.all(y_eval != 0) else None
            if p < 1 and signature is None:
                signature = behaviour(train_scale, eval_scale, p)
            kept = int(np.count_nonzero(y))
            rate = kept / n
            # structure: kept units scaled by 1/p
            if train_scale is None and kept > 0:
                findings.append("wrong_scale")
                feedback.append(f"keep_prob={p:g}, training: the nonzero outputs are not one constant multiple of the "
                                "inputs; each output should be 0 (dropped) or x/keep_prob (kept).")
            elif train_scale is not None and not math.isclose(train_scale, 1 / p, rel_tol=1e-4):
                if p < 1 and math.isclose(train_scale, 1.0, rel_tol=1e-4):
                    findings.append("not_inverted")
                    feedback.append(f"keep_prob={p:g}, training: kept units are passed through unscaled, so E[y] = "
                                    f"{p:g}·x instead of x. Inverted dropout divides the kept units by keep_prob.")
                else:
                    findings.append("wrong_scale")
                    feedback.append(f"keep_prob={p:g}, training: kept units are multiplied by {train_scale:.6g}; "
                                    f"inverted dropout multiplies them by 1/keep_prob = {1 / p:.6g}.")
            if p >= 1 and kept < n:
                # keep_prob = 1 keeps every unit: deterministic, so judged exactly (no statistical test below).
                findings.append("wrong_rate")
                feedback.append(f"keep_prob={p:g}, training: {n - kept:,} of {n:,} units were dropped; with "
                                "keep_prob = 1 every unit is kept and y = x.")
            if p < 1:
                t_rate = hoeffding_tolerance(n, n, delta / m)
                if abs(rate - p) > t_rate:
                    findings.append("wrong_rate")
                    hint = (" It looks like you keep units with probability 1 - keep_prob: keep_prob is the "
                            "probability of KEEPING a unit.") if abs(rate - (1 - p)) <= t_rate else ""
                    feedback.append(f"keep_prob={p:g}, training: {rate:.4f} of the units were kept, expected {p:g} "
                                    f"± {t_rate:.4f} (a margin a correct implementation exceeds with probability "
                                    f"below {delta / m:.1g}).{hint}")
                t_mean = hoeffding_tolerance(float(np.sum((x64 / p) ** 2)), n, delta / m)
                if abs(y.mean() - x64.mean()) > t_mean and not {"wrong_rate", "wrong_scale", "not_inverted"} & set(findings):
                    findings.append("biased_mean")
                    feedback.append(f"keep_prob={p:g}, training: the mean output is {y.mean():.5f} but the mean input is "
                                    f"{x64.mean():.5f}; inverted dropout keeps E[y] = x (margin {t_mean:.4f}).")
                if np.array_equal(y != 0, y2 != 0):
                    findings.append("same_mask")
                    feedback.append(f"keep_prob={p:g}: two calls in training mode dropped exactly the same units; "
                                    "draw a new random mask on every call.")
            if not np.allclose(y_eval, x64, rtol=1e-6, atol=0.0):
                findings.append("eval_not_identity")
                scaled = (f" (it multiplies x by {eval_scale:.6g}: that is classic dropout's test-time scaling, which "
                          "inverted dropout does not need)") if eval_scale is not None else ""
                feedback.append(f"keep_prob={p:g}, evaluation (train=False): the output should be x unchanged{scaled}.")

        generator_problem = self._generator_problem(ctx, rng, shape, [k for k in keep_probs if k < 1][:1])
        if isinstance(generator_problem, Outcome):
            return generator_problem
        if generator_problem:
            findings.append("ignores_generator")
            feedback.append(generator_problem)

        mistake = self._known_mistake(ctx, signature, keep_probs)
        if mistake is not None and findings:
            return Outcome.from_mistake(mistake, *feedback)
        if findings:
            return Outcome(passed=False, findings=list(dict.fromkeys(findings)), feedback=feedback)
        probs = ", ".join(f"{k:g}" for k in keep_probs)
        return Outcome(passed=True, feedback=[
            f"Inverted dropout behaves as it should for keep_prob in {{{probs}}} on {n:,} units: kept units are "
            "scaled by 1/keep_prob, the keep rate and the mean match (a correct implementation fails these tests "
            f"with probability below {delta:g}), masks are fresh on each call, evaluation is the identity, and the "
            "generator makes results reproducible."])

    def _generator_problem(self, ctx: Context, rng: np.random.Generator, shape: tuple[int, ...],
                           probs: list[float]) -> str | Outcome | None:
        """A sentence if two calls with identically seeded generators differ (or the argument is refused)."""
        if not probs:
            return None
        p = probs[0]
        x = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        seed = int(rng.integers(2**31))
        outs = []
        for _ in range(2):
            reply = ctx.request(self.spec, {"op": "call", "target": self.spec.target,
                                            "args": [x, p, True, generator_arg(seed)]})
            if not reply.ok:
                if reply.kind == "student":
                    return (f"Calling {self.spec.target}(x, {p:g}, True, generator) failed: {reply.describe()}. "
                            "Accept a torch.Generator as the fourth argument and draw the mask with it.")
                return reply_failure(reply, f"Calling {self.spec.target}(x, {p:g}, True, generator)")
            outs.append(reply.value["value"])
        if not (isinstance(outs[0], np.ndarray) and isinstance(outs[1], np.ndarray) and np.array_equal(outs[0], outs[1])):
            return ("Two calls with generators seeded alike gave different masks: draw the mask with the generator "
                    "argument (e.g. torch.rand(x.shape, generator=generator)), so that results can be reproduced.")
        return None

    def _known_mistake(self, ctx: Context, signature: tuple[str, str] | None, keep_probs: list[float]):
        """The rubric's known mistake whose behaviour (train scale, eval scale) the submission shares, if any."""
        probs = [k for k in keep_probs if k < 1]
        if signature is None or not probs:
            return None
        p = probs[0]
        x = np.random.default_rng(0).uniform(0.5, 1.5, (50, 40)).astype(np.float32)
        for mistake in self.spec.known_mistakes:
            if not mistake.reference:
                continue
            fn = getattr(ctx.reference, mistake.reference)
            y, y_eval = _local(fn, x, p, True), _local(fn, x, p, False)
            expected = behaviour(scale_of(y, x.astype(np.float64)), scale_of(y_eval, x.astype(np.float64)), p)
            if expected == signature:
                return mistake
        return None

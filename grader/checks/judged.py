"""Judge a student's model on its exported graph: the one function the model checks call.

`judge_model` asks the sandbox child to export ``target(*args, **init)``
(op ``export_model``), validates the graph here (`grader.judge.graph`), and
sends the job to the judge process (`grader.judge.server`), which holds no
student code. It returns one of three things:

- ``Judged(method="judge", reply=...)``: the judge's answer, with the same
  fields as the sandbox operation it replaces;
- ``Judged(method="refused", outcome=...)``: the graph holds an operation or
  a constant that a classifier has no use for (a lookup): the check fails
  with a sentence saying so;
- ``Judged(method="sandbox", note=...)``: the model could not be exported
  (or uses an operation outside the allow-list that is no evidence of
  anything); the caller measures in the sandbox as before, and adds
  `SANDBOX_NOTE` so instructors can review it.

Exports are cached per sandbox (a model exported for the structure check is
reused by the training check with the same arguments and seed).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from grader.checks.base import Context, Outcome
from grader.judge import graph as judge_graph
from grader.judge.server import get_judge
from grader.rubric.model import CheckSpec
from grader.sandbox.client import Reply

SANDBOX_NOTE = "Judged in the sandbox: {why}. The course staff may review this result."
METHOD_JUDGE, METHOD_SANDBOX = "judge", "sandbox"
EXPORT_TIMEOUT_S = 60.0
_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


@dataclass
class Judged:
    method: str  # judge | refused | sandbox
    reply: Reply | None = None
    outcome: Outcome | None = None
    note: str = ""


def _key(target: str, init: dict[str, Any], args: list[Any], seed: int, shape: list[int], loss: str | None) -> str:
    import json

    return json.dumps([target, init, args, seed, shape, loss], sort_keys=True, default=str)


def export(ctx: Context, spec: CheckSpec, *, target: str, init: dict[str, Any], args: list[Any], seed: int,
           input_shape: list[int], loss: str | None = None) -> Reply:
    """The child's ``export_model`` reply for this model (cached per sandbox)."""
    cache = _CACHE.setdefault(ctx.sandbox, {}) if ctx.sandbox is not None else {}
    key = _key(target, init, args, seed, input_shape, loss)
    if key not in cache:
        cache[key] = ctx.request(spec, {"op": "export_model", "target": target, "init": init, "args": args,
                                        "seed": seed, "input": input_shape, "loss": loss},
                                 timeout=max(EXPORT_TIMEOUT_S, ctx.timeout(spec)))
    return cache[key]


def judge_model(ctx: Context, spec: CheckSpec, job: dict[str, Any], *, target: str, init: dict[str, Any],
                input_shape: list[int], args: list[Any] | None = None, seed: int = 0, loss: str | None = None,
                timeout: float | None = None) -> Judged:
    """Export the model, validate its graph, run ``job`` (module_info | connectivity | train) in the judge."""
    if ctx.sandbox is None:
        return Judged(METHOD_SANDBOX, note="no code was loaded")
    exported = export(ctx, spec, target=target, init=init, args=args or [], seed=seed, input_shape=input_shape, loss=loss)
    if not exported.ok:
        # Building the model failed: the sandbox request that follows reports it as before.
        return Judged(METHOD_SANDBOX, note="the model could not be built for export")
    value = exported.value if isinstance(exported.value, dict) else {}
    graph = value.get("graph")
    if graph is None:
        error = value.get("error") if isinstance(value.get("error"), str) else "unknown error"
        return Judged(METHOD_SANDBOX, note=f"torch.export could not export {target} ({error[:200]})")
    graphs = {"graph": graph}
    if loss:
        if value.get("loss_graph") is None:
            error = value.get("loss_error") if isinstance(value.get("loss_error"), str) else "unknown error"
            return Judged(METHOD_SANDBOX, note=f"torch.export could not export the loss {loss} ({error[:200]})")
        graphs["loss_graph"] = value["loss_graph"]
    for name, g in graphs.items():
        verdict = judge_graph.validate(g)
        if not verdict.ok:
            what = f"the loss function {loss}" if name == "loss_graph" else target
            if verdict.evidence:
                return Judged("refused", outcome=Outcome(passed=False, findings=["refused_graph"], method=METHOD_JUDGE,
                                                         feedback=[f"The grader did not run {what}: {verdict.reason}."]))
            return Judged(METHOD_SANDBOX, note=verdict.reason)
    reply = get_judge().request({**job, **graphs, "threads": ctx.sandbox.limits.threads,
                                 "memory_mb": ctx.sandbox.limits.memory_mb},
                                timeout=timeout or ctx.timeout(spec))
    if reply.ok:
        return Judged(METHOD_JUDGE, reply=Reply(ok=True, value=reply.value))
    if reply.kind == "refused":
        return Judged("refused", outcome=Outcome(passed=False, findings=["refused_graph"], method=METHOD_JUDGE,
                                                 feedback=[f"The grader did not run {target}: {reply.message}."]))
    if reply.kind in ("unavailable", "internal"):
        return Judged(METHOD_SANDBOX, note=f"the judge process was not available ({reply.message})")
    kind = {"student": "student", "timeout": "timeout", "died": "died"}.get(reply.kind, "student")
    return Judged(METHOD_JUDGE, reply=Reply(ok=False, kind=kind, message=reply.message))


def sandbox_note(judged: Judged) -> str:
    return SANDBOX_NOTE.format(why=judged.note)


def with_method(outcome: Outcome, judged: Judged) -> Outcome:
    """Mark how the outcome was reached; a sandbox verdict says so in its feedback."""
    if judged.method == METHOD_SANDBOX:
        outcome.feedback.append(sandbox_note(judged))
        outcome.method = METHOD_SANDBOX
        # Measured where student code runs, so it could have been faked: an instructor should look.
        outcome.review = outcome.review or f"judged in the sandbox: {judged.note}"
    else:
        outcome.method = outcome.method or METHOD_JUDGE
    return outcome

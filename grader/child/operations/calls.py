"""Calls that keep part of the student's result inside the sandbox.

``call_select`` returns only some outputs of a tuple (``batchnorm_forward``
returns ``(out, cache)``; the cache can be any object and never needs to
cross the boundary). ``forward_backward`` runs the student's forward pass,
then the student's backward pass with the student's own cache, and returns
the output and the gradients: the cache stays here, whatever it is.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from grader.child.ops import Namespace, StudentError, from_plain, operation, student_error, to_plain

_tuple_like = (tuple, list)
_detach = torch.Tensor.detach  # captured before student code runs (see grader.child.ops)


def _call(fn: Any, args: list[Any]) -> Any:
    try:
        return fn(*args)
    except BaseException as exc:  # the student's exception is feedback
        raise student_error(exc) from None


def _as_tuple(value: Any, target: str, expected: str) -> tuple[Any, ...]:
    # isinstance, not type(): a NamedTuple of the student's is a tuple too.
    if not isinstance(value, _tuple_like):
        raise StudentError(f"TypeError: {target} should return {expected}, but it returned one {type(value).__name__}", None)
    return tuple(value)


@operation("call_select")
def call_select(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """Call ``target(*args)`` and return outputs ``select`` of its tuple (one selected output alone)."""
    fn = ns.lookup(r["target"])
    args = [from_plain(a) for a in r.get("args", [])]
    grad_wrt = r.get("grad_wrt") or []
    for i in grad_wrt:
        args[i] = _detach(args[i]).requires_grad_(True)
    select = [int(i) for i in r["select"]]
    started = time.perf_counter()
    out = _as_tuple(_call(fn, args), r["target"], f"a tuple of at least {max(select) + 1} values")
    if len(out) <= max(select):
        raise StudentError(f"TypeError: {r['target']} should return at least {max(select) + 1} values, it returned {len(out)}", None)
    picked = [out[i] for i in select]
    value = picked[0] if len(picked) == 1 else picked
    reply: dict[str, Any] = {"value": to_plain(value), "seconds": time.perf_counter() - started}
    if grad_wrt:
        reply["grads"] = ns._grads(value, [args[i] for i in grad_wrt], r.get("grad_weights") or [])
    return reply


@operation("forward_backward")
def forward_backward(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """``out, cache = forward(*args)``; ``grads = target(dout, cache)``; returns out and grads."""
    forward, backward = ns.lookup(r["forward"]), ns.lookup(r["target"])
    args = [from_plain(a) for a in r.get("args", [])]
    result = _as_tuple(_call(forward, args), r["forward"], "a pair (out, cache)")
    if len(result) < 2:
        raise StudentError(f"TypeError: {r['forward']} should return (out, cache), it returned {len(result)} value(s)", None)
    out, cache = result[0], result[1]
    grads = _call(backward, [from_plain(r["dout"]), cache])
    return {"out": to_plain(out), "grads": to_plain(grads)}

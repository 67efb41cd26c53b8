"""Calls that keep part of the student's result inside the sandbox.

``call_select`` returns only some outputs of a tuple (``batchnorm_forward``
returns ``(out, cache)``; the cache can be any object and never needs to
cross the boundary). ``forward_backward`` runs the student's forward pass,
then the student's backward pass with the student's own cache, and returns
the output and the gradients: the cache stays here, whatever it is.

``call_numpy`` (and ``forward_backward`` with ``array_api: numpy``) call the
student's function with float64 NumPy arrays instead of tensors, for a
rubric that accepts NumPy code (``array_api: [torch, numpy]``): the parent
asks for it after the same call on tensors raised. The arrays are fresh
copies, so the student's code cannot reach the request's buffers.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from grader.child.ops import Namespace, StudentError, from_plain, operation, student_error, to_plain

_tuple_like = (tuple, list)
_detach = torch.Tensor.detach  # captured before student code runs (see grader.child.ops)
_np_array = np.array
_ndarray = np.ndarray
_float64 = np.float64


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


def _as_numpy(arg: Any) -> Any:
    """Request argument -> what a NumPy implementation receives: float arrays as float64 copies."""
    if isinstance(arg, _ndarray):
        return _np_array(arg, dtype=_float64 if arg.dtype.kind == "f" else arg.dtype, copy=True)
    if isinstance(arg, list):
        return [_as_numpy(a) for a in arg]
    return from_plain(arg)  # scalars, strings, generators: as for tensors


def _select(value: Any, target: str, select: list[int]) -> Any:
    out = _as_tuple(value, target, f"a tuple of at least {max(select) + 1} values")
    if len(out) <= max(select):
        raise StudentError(f"TypeError: {target} should return at least {max(select) + 1} values, it returned {len(out)}", None)
    picked = [out[i] for i in select]
    return picked[0] if len(picked) == 1 else picked


@operation("call_numpy")
def call_numpy(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """Call ``target(*args)`` with float64 NumPy arrays; outputs ``select`` of a tuple when given."""
    fn = ns.lookup(r["target"])
    args = [_as_numpy(a) for a in r.get("args", [])]
    started = time.perf_counter()
    value = _call(fn, args)
    if r.get("select") is not None:
        value = _select(value, r["target"], [int(i) for i in r["select"]])
    return {"value": to_plain(value), "seconds": time.perf_counter() - started, "array_api": "numpy"}


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
    value = _select(_call(fn, args), r["target"], select)
    reply: dict[str, Any] = {"value": to_plain(value), "seconds": time.perf_counter() - started}
    if grad_wrt:
        reply["grads"] = ns._grads(value, [args[i] for i in grad_wrt], r.get("grad_weights") or [])
    return reply


@operation("forward_backward")
def forward_backward(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """``out, cache = forward(*args)``; ``grads = target(dout, cache)``; returns out and grads."""
    forward, backward = ns.lookup(r["forward"]), ns.lookup(r["target"])
    convert = _as_numpy if r.get("array_api") == "numpy" else from_plain
    args = [convert(a) for a in r.get("args", [])]
    result = _as_tuple(_call(forward, args), r["forward"], "a pair (out, cache)")
    if len(result) < 2:
        raise StudentError(f"TypeError: {r['forward']} should return (out, cache), it returned {len(result)} value(s)", None)
    out, cache = result[0], result[1]
    grads = _call(backward, [convert(r["dout"]), cache])
    return {"out": to_plain(out), "grads": to_plain(grads)}

"""Objects with state: build one from the student's class, feed it a sequence, record every answer.

``PerformanceScheduler.step(val_loss)`` and ``EarlyStopping.step(val_loss)``
are judged on whole sequences of losses, so one request runs a whole
sequence on a fresh instance and returns the list of results.
"""
from __future__ import annotations

from typing import Any

from grader.child.ops import Namespace, StudentError, from_plain, operation, student_error, to_plain

_getattr = getattr


@operation("method_sequence")
def method_sequence(ns: Namespace, r: dict[str, Any]) -> dict[str, Any]:
    """``obj = target(**init)``; then ``obj.<method>(x)`` for each x of ``inputs``; returns the results."""
    obj = ns.instantiate(r["target"], from_plain(r.get("init", {})))
    method = r["method"]
    try:
        bound = _getattr(obj, method)
    except BaseException as exc:
        raise StudentError(f"AttributeError: {r['target']} has no method '{method}'", student_error(exc).where) from None
    results = []
    for k, x in enumerate(r["inputs"]):
        try:
            value = bound(from_plain(x))
        except BaseException as exc:
            err = student_error(exc)
            raise StudentError(f"at call {k + 1} of {method}(): {err.summary}", err.where) from None
        results.append(to_plain(value))
    return {"results": results}

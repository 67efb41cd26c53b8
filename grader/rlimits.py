"""Lowering a process's own resource limits: shared by the sandbox child and the judge's workers."""
from __future__ import annotations

import resource


def cap(which: int, value: int) -> None:
    """Set soft and hard limit `which` to `value`, never above the hard limit already in force.

    A limit the platform refuses is left as it is: the caller reports what it could not apply.
    """
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass

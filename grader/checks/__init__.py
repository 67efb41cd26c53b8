"""Check kinds, one module each, registered under the name rubrics use in ``kind:``.

Built-in kinds are registered exactly as any added kind would be: by
`register` when their module is imported below.
"""
from __future__ import annotations

from grader.checks.base import Check, Context, Outcome, finish, timed_run

REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    if not cls.kind or cls.kind in REGISTRY:
        raise ValueError(f"check kind {cls.kind!r} is empty or registered twice")
    REGISTRY[cls.kind] = cls
    return cls


from grader.checks import conv_filter, tensor_function, module_structure, connectivity, manual  # noqa: E402,F401

__all__ = ["Check", "Context", "Outcome", "REGISTRY", "finish", "register", "timed_run"]

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


def _load_kinds() -> None:
    """Import every module in this package: each registers its kind (added kinds need no edit here)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"grader.checks.{info.name}")


_load_kinds()

__all__ = ["Check", "Context", "Outcome", "REGISTRY", "finish", "register", "timed_run"]

"""Student self-test kits: `grader kit build` writes one, `grader check --kit` and `check()` use it.

- `grader.kit.build`: the kit folder (public rubric, frozen fixtures, wheel, README);
- `grader.kit.freeze`: recording the reference's values and replaying them without it;
- `grader.kit.selftest`: grading a folder against a kit;
- `grader.kit.notebook`: ``check("p1")`` from a notebook.
"""
from __future__ import annotations

from typing import Any


def check(*check_ids: str, **options: Any) -> Any:
    """``check("p1")`` in a notebook: see `grader.kit.notebook.check` (imported late: it pulls in torch)."""
    from grader.kit.notebook import check as run_check

    return run_check(*check_ids, **options)


__all__ = ["check"]
